"""Instruction tuning baseline: LoRA on a causal LM, prompt -> label text, loss on the answer only."""
from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from lsllm.data.encode import length_grouped_batches
from lsllm.evaluate import autocast, autocast_dtype
from lsllm.model.lora import apply_lora, resolve_lora
from lsllm.prompting import build_answers, build_prompts, collate_instruct, instruct_features
from lsllm.files import write_json_atomic


def instruction_tune(model, tokenizer, config, splits, prompt, work):
    """Train `model` (AutoModelForCausalLM) in place with LoRA; return the LoRA-wrapped model in eval mode
    and the number of optimizer steps taken."""
    m, t = config.model, config.train
    torch.manual_seed(t.seed)
    settings = resolve_lora(model.get_decoder() if hasattr(model, "get_decoder") else model, m.lora, m.lora_rank,
                            m.lora_alpha, m.lora_dropout, m.lora_targets)
    model = apply_lora(model, settings)
    if not settings:  # full fine-tuning: every weight trains
        model.requires_grad_(True)
    prompts = build_prompts(splits.train, splits.labels, prompt, tokenizer)
    answers = build_answers(splits.train, splits.labels, prompt)
    features = [instruct_features(tokenizer, p, a, prompt.max_length + 64) for p, a in zip(prompts, answers)]
    steps_per_epoch = max(1, len(features) // (t.batch_size * t.grad_accum))
    total = t.max_steps or max(1, math.ceil(steps_per_epoch * t.epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate(), weight_decay=t.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total), total)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    dtype = autocast_dtype(t.precision, device)
    step, epoch, log, start = 0, 0, [], time.perf_counter()
    bar = tqdm(total=total, desc="instruct", unit="step", dynamic_ncols=True)
    while step < total:
        batches = length_grouped_batches([len(f["input_ids"]) for f in features], t.batch_size, seed=t.seed + epoch)
        for i in range(0, len(batches) - t.grad_accum + 1, t.grad_accum):
            loss_sum = 0.0
            for ids in batches[i:i + t.grad_accum]:
                batch = {k: v.to(device) for k, v in collate_instruct([features[j] for j in ids],
                                                                      tokenizer.pad_token_id).items()}
                with autocast(device, dtype):
                    loss = model(**batch).loss / t.grad_accum  # transformers shifts labels; -100 = prompt
                loss.backward()
                loss_sum += loss.item()
            torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.4f}")
            log.append({"type": "train", "step": step, "loss": round(loss_sum, 5), "lr": scheduler.get_last_lr()[0]})
            if step >= total:
                break
        epoch += 1
    bar.close()
    write_json_atomic(work / "instruct_log.json", {"steps": step, "train_time_s": round(time.perf_counter() - start, 1),
                                                   "lora": settings, "log": log})
    if settings:
        model.save_pretrained(work / "model" / "adapter")
    return model.eval(), step
