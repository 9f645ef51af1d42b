#!/usr/bin/env python
"""Issue 13's "fewer, larger LoRA matmuls" lever, measured: fuse the LoRA A projections of layers that read the
same input (q/k/v, gate/up), and, for scale, the frozen base projections they sit on.

    python benchmarks/fused_lora.py [--model smollm2-135m] [--train train.tsv] [--rows 20] [--batches 8] [--rounds 3]

1. LoRA A fused (what a change to lsllm would do; exact with the all-linear default's dropout 0): the first layer
   of a group to see an input multiplies it by its siblings' A matrices stacked ([A_q; A_k; A_v]) and keeps the
   product; the siblings take their slices. Checked first: loss and every gradient equal to PEFT's. Then
   training steps (forward + backward, real SST-2 batches of `--rows` sentences: ~700 tokens, what 256-token
   budget batches hold after padding on a 2-core CPU ~ 1 s per step) alternate between PEFT's layers and the
   fused ones, `--rounds` times, each timed in process CPU seconds.
2. The matmuls themselves: q/k/v and gate/up as three/two matmuls (forward and the backward through the input)
   against one over the stacked weights, at the same rows.
Prints the ratios; results in benchmarks/RESULTS.md (section 2f). Not in lsllm: it didn't pay here.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SHARED_INPUT = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class Group:
    """Sibling LoRA layers and the product of their last shared input with their stacked A matrices."""

    def __init__(self, members: list[nn.Module]):
        self.members, self.input, self.product, self.unread = members, None, None, set()
        self.slices, start = {}, 0
        for m in members:
            rank = m.lora_A["default"].weight.shape[0]
            self.slices[id(m)], start = slice(start, start + rank), start + rank

    def project(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.input is not x or id(layer) not in self.unread:
            weights = torch.cat([m.lora_A["default"].weight for m in self.members])
            self.input, self.product, self.unread = x, nn.functional.linear(x, weights), set(self.slices)
        self.unread.discard(id(layer))
        product = self.product[..., self.slices[id(layer)]]
        if not self.unread:
            self.input = self.product = None
        return product


def fuse(model: nn.Module) -> int:
    from peft.tuners.lora import Linear as LoraLinear

    groups = 0
    for parent in model.modules():
        for names in SHARED_INPUT:
            members = [getattr(parent, n, None) for n in names]
            if all(isinstance(m, LoraLinear) and isinstance(m.lora_dropout["default"], nn.Identity) for m in members):
                group = Group(members)
                for m in members:
                    m.forward = (lambda layer, g: lambda x: layer.base_layer(x) + layer.lora_B["default"](
                        g.project(layer, x)) * layer.scaling["default"])(m, group)
                groups += 1
    return groups


def unfuse(model: nn.Module) -> None:
    for m in model.modules():
        if "forward" in vars(m):
            del m.forward


def training_steps(args) -> None:
    from lsllm.config import ModelConfig
    from lsllm.model.build import build_model

    model, tok = build_model(ModelConfig(model=args.model, task="seq"), ["0", "1"], max_length=64)
    lines = Path(args.train).read_text().splitlines()[1:]
    texts = [line.split("\t")[0] for line in lines]
    batches = []
    for start in range(0, args.rows * args.batches, args.rows):
        enc = tok(texts[start:start + args.rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
        batches.append((enc["input_ids"], enc["attention_mask"], torch.randint(0, 2, (len(enc["input_ids"]),))))
    params = [p for p in model.parameters() if p.requires_grad]

    def step(batch):
        out = model(*batch[:2], labels=batch[2])
        out.loss.backward()
        grads = [p.grad.clone() for p in params]
        model.zero_grad()
        return out.loss.detach(), grads

    model.eval()  # no dropout: the equality check compares two exact computations
    loss, grads = step(batches[0])
    groups = fuse(model)
    fused_loss, fused_grads = step(batches[0])
    unfuse(model)
    worst = max((a - b).abs().max().item() for a, b in zip(grads, fused_grads))
    print(f"{groups} groups fused; loss difference {abs(loss - fused_loss).item():.2g}, largest gradient "
          f"difference {worst:.2g}")
    model.train()
    seconds = {"peft": 0.0, "fused": 0.0}
    for _ in range(args.rounds):
        for name in seconds:
            if name == "fused":
                fuse(model)
            started = time.process_time()
            for batch in batches:
                step(batch)
            seconds[name] += time.process_time() - started
            unfuse(model)
    steps = args.rounds * len(batches)
    tokens = sum(b[0].numel() for b in batches) / len(batches)
    print(f"training step, {tokens:.0f} padded tokens: PEFT {seconds['peft'] / steps:.3f} s, fused LoRA A "
          f"{seconds['fused'] / steps:.3f} s (CPU seconds): x{seconds['peft'] / seconds['fused']:.3f}")


def matmuls(rows: int, reps: int = 30) -> None:
    x = torch.randn(rows, 576)

    def timed(weights):
        for _ in range(3):
            [x @ w.T for w in weights]
        started = time.process_time()
        for _ in range(reps):
            outs = [x @ w.T for w in weights]
            [o @ w for o, w in zip(outs, weights)]
        return (time.process_time() - started) / reps

    for name, outs in (("q/k/v (SmolLM2: 576, 192, 192)", [576, 192, 192]), ("gate/up (1536, 1536)", [1536, 1536])):
        weights = [torch.randn(n, 576) for n in outs]
        apart, stacked = timed(weights), timed([torch.cat(weights)])
        print(f"base {name}, {rows} rows: apart {apart * 1e3:.2f} ms, stacked {stacked * 1e3:.2f} ms: "
              f"x{apart / stacked:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--train", default=str(ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"))
    p.add_argument("--rows", type=int, default=20, help="sentences per batch")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# fused LoRA, {args.model}, {args.threads} threads, torch {torch.__version__}")
    training_steps(args)
    matmuls(700)


if __name__ == "__main__":
    main()
