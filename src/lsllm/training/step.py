"""One optimizer step, the same for every trained method and for the throughput benchmark: forward under
autocast and backward over the step's micro-batches (DDP syncs gradients on the last one only), clip,
AdamW, schedule."""
from __future__ import annotations

from contextlib import nullcontext

import torch
from transformers import get_linear_schedule_with_warmup

from lsllm.inference.precision import autocast


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, warmup_ratio: float, total_steps: int):
    """AdamW over the trainable parameters and a linear schedule with warm-up: (optimizer, scheduler, params)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler, params


class TrainStep:
    """Callable on a step's micro-batches (dicts of CPU tensors, `labels` included); returns (loss, real tokens).

    `accelerator` is optional: without one the step runs on `device` in this process (the benchmark)."""

    def __init__(self, model, optimizer, scheduler, params, dtype: torch.dtype | None, max_grad_norm: float,
                 device: torch.device, accelerator=None, ddp_model=None):
        self.model, self.ddp_model = model, ddp_model or model
        self.optimizer, self.scheduler, self.params = optimizer, scheduler, params
        self.dtype, self.max_grad_norm, self.device, self.accelerator = dtype, max_grad_norm, device, accelerator

    def __call__(self, batches: list[dict[str, torch.Tensor]]) -> tuple[float, int]:
        loss_sum, tokens = 0.0, 0
        for i, batch in enumerate(batches):
            batch = {k: v.to(self.device) for k, v in batch.items()}
            last = i == len(batches) - 1
            no_sync = nullcontext() if last or self.accelerator is None else self.accelerator.no_sync(self.ddp_model)
            with no_sync, autocast(self.device, self.dtype):
                loss = self.ddp_model(**batch).loss / len(batches)
            if self.accelerator is None:
                loss.backward()
            else:
                self.accelerator.backward(loss)
            loss_sum += loss.item()
            tokens += int(batch["attention_mask"].sum())
        if self.max_grad_norm:
            if self.accelerator is None:
                torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
            else:
                self.accelerator.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, tokens
