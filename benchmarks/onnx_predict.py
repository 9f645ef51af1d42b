"""CPU prediction: PyTorch (`Predictor`, precision auto) against ONNX Runtime float32 and int8 exports of the same
run: rows/s, peak RSS and SST-2 dev accuracy, each backend in its own fresh process, side by side in one run.

    python benchmarks/onnx_predict.py --work /tmp/onnx_bench --out benchmarks/results/onnx_predict.json

Trains (once; reused from --work) a SmolLM2-135M LS run (causal, last pooling, LoRA all-linear, lr 5e-4, batch 8)
and a MiniLM-L6 encoder run on a seeded --train-rows subset of SST-2 train, exports each with
`lsllm export --format onnx [--int8]`, then per backend in a fresh process: load the folder, predict 32 rows
(warm-up), then time predicting and scoring the whole 872-row dev split (batch 32). Threads: torch's default (one
per core) or --threads for both runtimes (onnxruntime takes torch's count); the load average before and after
each measurement is recorded, since a busy machine skews rows/s.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
CHILD = """
import json, resource, sys, time
import torch
from lsllm.data.readers import read_examples
from lsllm.predict import Predictor
folder, dev = sys.argv[1:3]
start = time.perf_counter()
predictor = Predictor(folder)
load_s = time.perf_counter() - start
examples = read_examples(dev, "seq")
predictor.evaluate(examples[:32])  # warm-up
start = time.perf_counter()
metrics = predictor.evaluate(examples).metrics
seconds = time.perf_counter() - start
print(json.dumps({"load_s": load_s, "rows": len(examples), "rows_per_s": len(examples) / seconds,
                  "accuracy": metrics["accuracy"], "threads": torch.get_num_threads(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
MODELS = {"smollm2-135m": [], "minilm-l6": []}


def lsllm(*args: str, threads: int | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads:  # training beside other jobs on a small machine: oversubscribed threads spin and crawl
        env["OMP_NUM_THREADS"] = str(threads)
    subprocess.run([sys.executable, "-m", "lsllm.cli", *args], check=True, env=env)


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["sentence", "label"])
        writer.writerows(rows)
    return path


def read_tsv(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["sentence"].strip(), r["label"]) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def prepare(work: Path, train_rows: int, steps: int, train_threads: int | None = None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    train = read_tsv(SST2 / "train.tsv")
    dev = read_tsv(SST2 / "dev.tsv")
    files = {"train": write_tsv(work / "train.tsv", random.Random(0).sample(train, train_rows)),
             "dev": write_tsv(work / "dev.tsv", dev)}
    folders = {}
    for model in MODELS:
        run = work / f"run-{model}"
        if not (run / "metrics.json").is_file():
            started = time.perf_counter()
            lsllm("train", "--model", model, "--train", str(files["train"]), "--validation", str(files["dev"]),
                  "--max-steps", str(steps), "--batch-size", "8", "--lr", "5e-4", "--eval-every", str(steps),
                  "--output", str(run), threads=train_threads)
            (work / f"train-{model}.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))
        folders[(model, "pytorch")] = run
        for kind, extra in (("onnx-fp32", []), ("onnx-int8", ["--int8"])):
            out = work / f"{model}-{kind}"
            if not (out / "export.json").is_file():
                started = time.perf_counter()
                lsllm("export", str(run), "--format", "onnx", *extra, "--output", str(out), "--overwrite")
                (work / f"export-{model}-{kind}.json").write_text(
                    json.dumps({"seconds": time.perf_counter() - started}))
            folders[(model, kind)] = out
    return {"files": files, "folders": folders}


def measure(folder: Path, dev: Path, threads: int | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's threads, and so onnxruntime's (it takes torch's count)
    before = os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(dev)], check=True,
                          capture_output=True, text=True, env=env)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load_avg_before": before,
            "load_avg_after": os.getloadavg()[0]}


def size_mib(folder: Path) -> float:
    weights = [p for p in folder.rglob("*") if p.suffix in (".onnx", ".data", ".safetensors") and "checkpoint" not in
               str(p)]
    return sum(p.stat().st_size for p in weights) / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/onnx_bench"))
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--threads", type=int, help="Threads for each measured process (default: torch's).")
    parser.add_argument("--train-threads", type=int, help="Threads for the training runs (default: torch's).")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    setup = prepare(args.work, args.train_rows, args.steps, args.train_threads)
    from lsllm.inference.precision import cpu_matrix_flags, cpu_name

    results = []
    for model in MODELS:
        base = None
        for kind in ("pytorch", "onnx-fp32", "onnx-int8"):
            folder = setup["folders"][(model, kind)]
            row = {"model": model, "backend": kind, **measure(folder, setup["files"]["dev"], args.threads),
                   "weights_mib": size_mib(folder / "model" if kind == "pytorch" else folder)}
            base = base or row
            row["speedup"] = row["rows_per_s"] / base["rows_per_s"]
            row["rss_ratio"] = row["peak_rss_mib"] / base["peak_rss_mib"]
            results.append(row)
            print(f"{model:13} {kind:9} {row['rows_per_s']:7.1f} rows/s ({row['speedup']:.2f}x)  peak RSS "
                  f"{row['peak_rss_mib']:6.0f} MiB ({row['rss_ratio']:.2f}x)  accuracy {100 * row['accuracy']:.1f}  "
                  f"weights {row['weights_mib']:.0f} MiB  load {row['load_s']:.1f} s", flush=True)
    report = {"cpu": cpu_name(), "flags": sorted(cpu_matrix_flags()), "cores": os.cpu_count(), "threads": args.threads,
              "train_rows": args.train_rows, "steps": args.steps, "results": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
