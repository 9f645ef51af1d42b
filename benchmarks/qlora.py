"""QLoRA vs LoRA side by side: peak memory, training speed and accuracy of `lsllm train --quantize` on the same
examples, steps and seed, one `lsllm train` process per cell (so each peak RSS is that run's alone).

    python benchmarks/qlora.py --train train.tsv --validation dev.tsv \\
        --models smollm2-135m gemma3-270m --quantize none 4bit 8bit --steps 100 --output /tmp/qlora

Per cell it prints peak RSS of the whole run (model load, training, validation, reloading the best model),
the median training tokens/s (log.jsonl, first record skipped as warm-up), wall time, and validation
accuracy at the end; then each quantized cell's ratios to the `none` cell of its model, measured in this run.
Results: benchmarks/RESULTS.md, section 8.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m"])
    parser.add_argument("--quantize", nargs="+", default=["none", "4bit", "8bit"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--output", required=True, help="A new folder for the runs and results.json.")
    parser.add_argument("extra", nargs="*", help="More `lsllm train` options, after --.")
    args = parser.parse_args()
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
