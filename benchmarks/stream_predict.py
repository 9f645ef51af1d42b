"""Bulk prediction at growing input sizes: rows/s and peak RSS of `lsllm predict --input --output` (chunk by
chunk) against predicting the whole file in memory (`lsllm.predict.predict`), each in a fresh process.

    python benchmarks/stream_predict.py RUN --rows 1000 10000 --out benchmarks/results/stream_predict.json
    python benchmarks/stream_predict.py --tiny --rows 10000 100000 1000000   # the pipeline alone: a tiny model
    python benchmarks/stream_predict.py RUN --rows 2000 --ray 1 2   # also Ray Data with 1 and 2 worker actors

Inputs are CSV files of real sentences (SST-2 train by default) repeated with a row id, so texts have real
lengths. `--tiny` trains a 2-layer random Llama run (the tests' tiny model) so the reading, batching and
writing machinery can be measured at a million rows in minutes; with a real run the model's time dominates.
Peak RSS must not grow with rows for the chunked path; it does for the in-memory one. With `--ray`, each worker
count predicts the same file on a fresh local Ray cluster (started and stopped inside the timed call, as
`lsllm predict --engine ray` does; the workers' memory is in their own processes, not in the RSS shown).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
from lsllm.predict import predict
from lsllm.streaming import predict_to_file
mode, run, data, out = sys.argv[1:5]
start = time.perf_counter()
if mode == "stream":
    rows = predict_to_file(run, data, out).rows
elif mode.startswith("ray"):  # ray1, ray2: Ray Data on a local cluster with that many predictor actors
    from lsllm.ray_predict import predict_on_ray
    rows = predict_on_ray(run, data, out, workers=int(mode[3:])).rows
else:
    rows = len(predict(run, input=data, output=out))
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def sentences(path: Path, limit: int = 20000) -> list[str]:
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    return [r[0] for r in rows[1:limit + 1] if r and r[0].strip()]


def write_input(path: Path, texts: list[str], n: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i in range(n):
            w.writerow([i, texts[i % len(texts)]])


def tiny_run(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from lsllm.cli import main
    from tests.conftest import make_tiny_model
    from tests.test_workflow import write_seq_csv

    model = make_tiny_model(folder / "tiny-llama", "llama")
    data = write_seq_csv(folder / "train.csv", 64, 0)
    run = folder / "tiny-run"
    assert main(["train", "--model", str(model), "--train", str(data), "--max-steps", "4", "--batch-size", "8",
                 "--output", str(run)]) == 0
    return run


def measure(mode: str, run: Path, data: Path, out: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, mode, str(run), str(data), str(out)], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--tiny", action="store_true", help="measure with a tiny random model (the pipeline alone)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--in-memory-up-to", type=int, default=100000, help="largest size also predicted in memory")
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "sst2" / "train.tsv")
    parser.add_argument("--ray", type=int, nargs="*", default=[],
                        help="also predict on a local Ray cluster with these worker counts (e.g. --ray 1 2)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if (args.run is None) == (not args.tiny):
        parser.error("pass a RUN folder or --tiny")
    texts = sentences(args.source)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tiny_run(tmp) if args.tiny else args.run
        for n in args.rows:
            data = tmp / f"in-{n}.csv"
            write_input(data, texts, n)
            for mode in ("stream", "memory", *(f"ray{w}" for w in args.ray)):
                if mode == "memory" and n > args.in_memory_up_to:
                    continue
                out = tmp / (f"out-{mode}-{n}" + ("" if mode.startswith("ray") else ".jsonl"))
                r = measure(mode, run, data, out)
                r.update(mode=mode, input_rows=n, rows_per_s=r["rows"] / r["seconds"])
                results.append(r)
                print(f"{mode:>6} {n:>9,} rows: {r['rows_per_s']:8.0f} rows/s, peak RSS {r['peak_rss_mib']:6.0f} MiB",
                      flush=True)
    lines = ["| rows | chunked rows/s | chunked peak RSS MiB | in-memory rows/s | in-memory peak RSS MiB |",
             "|---:|---:|---:|---:|---:|"]
    for n in args.rows:
        s = next(r for r in results if r["input_rows"] == n and r["mode"] == "stream")
        m = next((r for r in results if r["input_rows"] == n and r["mode"] == "memory"), None)
        memory = f"{m['rows_per_s']:.0f} | {m['peak_rss_mib']:.0f}" if m else "- | -"
        lines.append(f"| {n:,} | {s['rows_per_s']:.0f} | {s['peak_rss_mib']:.0f} | {memory} |")
    for w in args.ray:
        lines.append(f"\nRay, {w} worker(s): " + ", ".join(
            f"{r['input_rows']:,} rows {r['rows_per_s']:.0f} rows/s (driver peak RSS {r['peak_rss_mib']:.0f} MiB)"
            for r in results if r["mode"] == f"ray{w}"))
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps({"model": "tiny" if args.tiny else str(args.run), "results": results},
                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
