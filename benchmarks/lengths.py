"""Training speed and memory by sequence length (64 to 2048 tokens: up to long-document classification),
per attention kernel: `throughput.py --lengths` calls `measure_lengths`.

Each (length, kernel) cell is a spawned worker (its peak RSS is its own) that builds lsllm's default
sequence model (causal, last pooling) with `max_length` = the length and trains on rows of exactly that
many real tokens of SST-2 dev text (sentences joined until long enough), as many rows per step as fit the
token budget (at least one): 1 untimed step that counts FLOPs, then timed steps.
"""
from __future__ import annotations

import time

import torch

from throughput import (BATCH_TOKENS, MODEL, count_flops, in_subprocess, lsllm_recipe, make_train_step, sync,
                        worker_memory, worker_setup)

LENGTHS = (64, 256, 1024, 2048)
KERNELS = ("eager", "sdpa")


def length_worker(job: dict) -> dict:
    from lsllm.config import ModelConfig
    from lsllm.inference.precision import autocast_dtype
    from lsllm.model.build import build_model, resolve_attention

    device = worker_setup()
    recipe, length = lsllm_recipe(), job["length"]
    dtype = autocast_dtype(recipe["precision"], device)
    config = ModelConfig(model=MODEL, task="seq", bidirectional=False, attn_implementation=job["kernel"])
    model, tokenizer = build_model(config, ["0", "1"], max_length=length, frozen_dtype=dtype)
    model = model.to(device).train()
    rows = max(1, BATCH_TOKENS // length)
    ids = tokenizer(" ".join(job["texts"]), add_special_tokens=False)["input_ids"]
    need = rows * length
    ids = (ids * (need // len(ids) + 1))[:need]  # enough real text: repeat the joined sentences if short
    batch = {"input_ids": torch.tensor(ids).view(rows, length), "attention_mask": torch.ones(rows, length, dtype=torch.long),
             "labels": torch.arange(rows) % 2}
    steps = job["steps"]
    step = make_train_step(model, recipe, steps + 1, device, dtype)
    flops, tokens = count_flops(step, lambda _: batch, [[0]])
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)
    seconds = time.perf_counter() - start
    return {"length": length, "kernel": job["kernel"], "default_kernel": resolve_attention("auto", length),
            "rows": rows, "steps": steps, "seconds": seconds, "tokens_per_s": rows * length * steps / seconds,
            "flops_per_token": flops / tokens, "compute_dtype": str(dtype or torch.float32)} | worker_memory(device)


def measure_lengths(args, peaks: dict) -> list[dict]:
    from lsllm.data.readers import read_examples

    dev = args.data / "sst2" / "dev.tsv"
    if not dev.is_file():
        print(f"skipping the length table: {dev} not found")
        return []
    texts = [e.text for e in read_examples(dev, "seq")]
    rows = []
    lengths = LENGTHS[:2] if args.quick else LENGTHS
    for length in lengths:
        for kernel in KERNELS:
            steps = 1 if args.quick else 3
            r = in_subprocess(length_worker, {"length": length, "kernel": kernel, "texts": texts, "steps": steps})
            peak = peaks["bfloat16" if "bfloat16" in r["compute_dtype"] else "float32"]
            r["mfu"] = r["flops_per_token"] * r["tokens_per_s"] / peak
            default = " (default)" if r["kernel"] == r["default_kernel"] else ""
            print(f"length {length:5} {kernel:6}{default:10} {r['tokens_per_s']:7.0f} tok/s  {r['rows']} rows/step, "
                  f"MFU {r['mfu']:.1%}, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
            rows.append(r)
    return rows


def length_table(rows: list[dict]) -> str:
    lines = ["| length | attention | rows/step | tokens/s | MFU % | peak RSS MiB |", "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        mark = " **(default)**" if r["kernel"] == r["default_kernel"] else ""
        gpu = f" (GPU {r['cuda_peak_mib']:.0f})" if "cuda_peak_mib" in r else ""
        lines.append(f"| {r['length']} | {r['kernel']}{mark} | {r['rows']} | {r['tokens_per_s']:.0f} | "
                     f"{r['mfu']:.1%} | {r['peak_rss_mib']:.0f}{gpu} |")
    return "\n".join(lines)
