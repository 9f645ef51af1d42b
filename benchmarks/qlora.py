"""QLoRA vs LoRA side by side: peak memory, training speed and accuracy of `lsllm train --quantize` on the same
examples, steps and seed, one `lsllm train` process per cell (so each peak RSS is that run's alone).

    python benchmarks/qlora.py --train train.tsv --validation dev.tsv \\
        --models smollm2-135m gemma3-270m --quantize none 4bit 8bit --steps 100 --output /tmp/qlora

Per cell it prints peak RSS of the whole run (model load, training, validation, reloading the best model),
the median training tokens/s (log.jsonl, first record skipped as warm-up), wall time, and validation
accuracy at the end; then each quantized cell's ratios to the `none` cell of its model, measured in this run.
`--steps-only` measures the training step alone instead, robust to a busy machine (cells: none = float32 frozen
weights, bf16 = bf16 frozen weights under bf16 autocast, 4bit, 8bit): per cell a child process
builds the model, runs 2 warm-up and `--timed` timed steps (batch 8 x 32 random tokens, LoRA all-linear) on ONE
thread, and reports process CPU seconds per step and its peak RSS; ratios against `none` as above.

Results: benchmarks/RESULTS.md, section 9.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_cell(model: str, quantize: str, args, folder: Path) -> dict:
    lsllm = Path(sys.executable).with_name("lsllm")
    command = [str(lsllm), "train", "--model", model, "--train", args.train, "--validation", args.validation,
               "--max-steps", str(args.steps), "--eval-every", str(args.steps), "--quantize", quantize,
               "--seed", "0", "--output", str(folder), *args.extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS alone
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{model} --quantize {quantize} failed:\n{child.stderr.read()[-3000:]}")
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in log if r["type"] == "train"][1:]
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"model": model, "quantize": quantize, "peak_rss_mib": usage.ru_maxrss // 1024,
            "tokens_per_s": statistics.median(speeds) if speeds else None, "wall_s": round(wall, 1),
            "accuracy": metrics["validation"]["accuracy"], "loss": metrics["validation"]["loss"]}


def step_cell(model: str, quantize: str, timed: int) -> dict:
    """In a child process: CPU seconds per training step on one thread (process time is what one thread used,
    whatever else the machine runs), and the child's peak RSS."""
    import resource

    import torch

    from lsllm.config import ModelConfig
    from lsllm.model.build import build_model

    from lsllm.memory import limit_malloc_arenas, release_freed_memory

    torch.set_num_threads(1)
    limit_malloc_arenas()  # as `lsllm train` does
    # "bf16": LoRA over bf16 frozen weights under bf16 autocast, the default where a CPU or GPU has bf16 units.
    bf16 = quantize == "bf16"
    net, _ = build_model(ModelConfig(model=model, quantize="none" if bf16 else quantize), ["a", "b"], max_length=64,
                         frozen_dtype=torch.bfloat16 if bf16 else None)
    net.train()
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 20000, (8, 32), generator=generator)
    mask, labels = torch.ones_like(ids), torch.tensor([0, 1] * 4)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = net(ids, mask, labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    started = time.process_time()
    for _ in range(timed):
        step()
    per_step = (time.process_time() - started) / timed
    weights = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()]) // 2**20
    release_freed_memory()  # as `lsllm train` does between phases: freed loading buffers go back to the OS
    with open("/proc/self/status") as status:  # what training holds now, after the loading peak has passed
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) // 1024
    return {"model": model, "quantize": quantize, "cpu_s_per_step": round(per_step, 3),
            "tokens_per_cpu_s": round(256 / per_step, 1), "weights_mib": weights, "training_rss_mib": rss,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def steps_only(args) -> None:
    rows = []
    for model in args.models:
        for quantize in args.quantize:
            out = subprocess.run([sys.executable, __file__, "--_step", model, quantize, str(args.timed)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| model | base | CPU s / step (1 thread) | tokens / CPU s | weights MiB | training RSS MiB | peak RSS MiB | "
          "step cost vs none | training RSS vs none |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ref = next((r for r in rows if r["model"] == row["model"] and r["quantize"] == "none"), None)
        print(f"| {row['model']} | {row['quantize']} | {row['cpu_s_per_step']} | {row['tokens_per_cpu_s']} | "
              f"{row['weights_mib']} | {row['training_rss_mib']} | {row['peak_rss_mib']} | "
              + (f"{row['cpu_s_per_step'] / ref['cpu_s_per_step']:.2f}x | "
                 f"{row['training_rss_mib'] / ref['training_rss_mib']:.2f}x |" if ref else " | |"))


def main() -> None:
    if sys.argv[1:2] == ["--_step"]:
        print(json.dumps(step_cell(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train")
    parser.add_argument("--validation")
    parser.add_argument("--models", nargs="+", default=["smollm2-135m"])
    parser.add_argument("--quantize", nargs="+", default=["none", "4bit", "8bit"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--output", help="A new folder for the runs and results.json.")
    parser.add_argument("--steps-only", action="store_true", help="Time the training step alone (see above).")
    parser.add_argument("--timed", type=int, default=5, help="--steps-only: timed steps per cell.")
    parser.add_argument("extra", nargs="*", help="More `lsllm train` options, after --.")
    args = parser.parse_args()
    if args.steps_only:
        return steps_only(args)
    if not args.output:
        parser.error("--output is required (except with --steps-only)")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=False)
    rows = []
    for model in args.models:
        for quantize in args.quantize:
            row = run_cell(model, quantize, args, out / f"{model}-{quantize}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| model | base | peak RSS MiB | tokens/s | wall s | val accuracy | RSS vs none | speed vs none |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ref = next((r for r in rows if r["model"] == row["model"] and r["quantize"] == "none"), None)
        rss = f"{row['peak_rss_mib'] / ref['peak_rss_mib']:.2f}x" if ref else ""
        speed = f"{row['tokens_per_s'] / ref['tokens_per_s']:.2f}x" if ref and row["tokens_per_s"] else ""
        print(f"| {row['model']} | {row['quantize']} | {row['peak_rss_mib']} | {row['tokens_per_s'] or 0:.0f} | "
              f"{row['wall_s']} | {row['accuracy']:.4f} | {rss} | {speed} |")


if __name__ == "__main__":
    main()
