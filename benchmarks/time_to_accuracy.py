#!/usr/bin/env python
"""Time to accuracy: wall-clock training time until validation reaches a target, per training recipe.

    python benchmarks/time_to_accuracy.py [--workloads NAME ...] [--variants NAME ...] [--train-examples N]
                                          [--jobs N] [--out FILE.json]

Each run is a real `lsllm train` command (a child process, so its peak RSS is the whole command's) on a
fixed seeded training sample and a fixed seeded validation sample, with `--target-metric`: it stops at the
first validation that reaches the target. Validation runs about every `--eval-examples` training examples;
its time is not counted (log.jsonl's validation lines carry the training seconds and examples seen so far).
Every variant reads the same examples; the batches differ only as each variant's batching makes them.

Variants (RunConfig overrides; `default` is `lsllm train` with no flags):
  batch8       the default before issue 13: 8 length-grouped sentences per batch, lr 5e-4, eager
  default      `lsllm train` as it is now
  anything in --variant NAME=FLAGS, e.g. --variant "tok512=--batch-tokens 512 --lr 1e-3"

Targets (issue 13): SST-2 accuracy 0.85, CoNLL-2003 entity F1 0.70. With `--jobs 2` two runs share the
cores (one thread each): use it to compare accuracy per example, not time.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import _write_jsonl  # noqa: E402  (the paper study's JSONL writer)

from lsllm.data.readers import read_examples  # noqa: E402


@dataclass(frozen=True)
class Target:
    name: str
    task: str
    bidirectional: bool
    train: str
    validation: str
    metric: str
    target: float


TARGETS = [
    Target("sst2-causal", "seq", False, "sst2/train.tsv", "sst2/dev.tsv", "accuracy", 0.85),
    Target("conll-bidir", "token", True, "conll2003/train.txt", "conll2003/valid.txt", "f1", 0.70),
]
VARIANTS = {
    "batch8": "--batch-size 8 --lr 5e-4",
    "default": "",
}
VALIDATION_EXAMPLES = 500


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", nargs="*", choices=[t.name for t in TARGETS], help="default: all")
    p.add_argument("--variants", nargs="*", default=["batch8", "default"],
                   help="variant names to run, in order (the first is the ratios' baseline)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="define a variant by `lsllm train` flags (repeatable)")
    p.add_argument("--train-examples", type=int, default=4000, help="training sample size (default 4000)")
    p.add_argument("--eval-examples", type=int, default=400,
                   help="validate about every N training examples (default 400)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each with cores/jobs threads")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, help="keep the run folders under this folder")
    p.add_argument("--out", type=Path, help="write every number to this JSON file")
    args = p.parse_args(argv)
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        VARIANTS[name.strip()] = flags
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; define them with --variant NAME=FLAGS")
    return args


def samples(args, target: Target, folder: Path) -> dict | None:
    """The fixed seeded train and validation samples as JSONL files; None when the data is missing."""
    paths = [args.data / target.train, args.data / target.validation]
    if not all(p.is_file() for p in paths):
        print(f"skipping {target.name}: {paths} not found (benchmark data lives in ../shared/data)")
        return None
    train, valid = (read_examples(p, target.task) for p in paths)
    train = random.Random(args.seed + 1).sample(train, min(args.train_examples, len(train)))
    valid = random.Random(args.seed + 2).sample(valid, min(VALIDATION_EXAMPLES, len(valid)))
    folder.mkdir(parents=True, exist_ok=True)
    return {"train": _write_jsonl(train, folder / "train.jsonl"),
            "validation": _write_jsonl(valid, folder / "validation.jsonl"), "n_train": len(train)}


def examples_per_step(flags: list[str], files: dict, task: str) -> float:
    """Mean examples per optimizer step of a variant's epoch plan (to validate every ~N examples)."""
    from lsllm.config import RunConfig

    if "--batch-tokens" in flags:
        budget = int(flags[flags.index("--batch-tokens") + 1])
    elif "--batch-size" in flags:
        return float(flags[flags.index("--batch-size") + 1])
    else:
        unit, budget = RunConfig().batching()  # the variant runs with `lsllm train`'s default batching
        if unit == "examples":
            return float(budget)
    from lsllm.data.encode import encode, training_batches
    from lsllm.data.readers import read_examples as read
    from lsllm.model.sources import resolve_source
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_source("smollm2-135m"))
    examples = read(files["train"], task)
    max_length = (int(flags[flags.index("--max-length") + 1]) if "--max-length" in flags
                  else RunConfig().data.max_length)
    lengths = [len(f.input_ids) for f in encode(examples, task, tokenizer, None if task == "seq" else _labels(examples),
                                                 max_length)]
    return len(examples) / len(training_batches(lengths, "tokens", budget, seed=0))


def _labels(examples):
    from lsllm.data.labels import build_label_set

    return build_label_set("token", examples)


def run_variant(job: dict) -> dict:
    """One `lsllm train` command; returns the validation curve, time to target and the command's peak RSS."""
    target, name, flags, files = job["target"], job["variant"], job["flags"], job["files"]
    run = Path(job["runs"]) / f"{target.name}-{name}"
    per_step = examples_per_step(flags, files, target.task)
    eval_every = max(1, round(job["eval_examples"] / per_step))
    command = [sys.executable, "-m", "lsllm.cli", "train", "--train", files["train"], "--validation",
               files["validation"], "--task", target.task, "--output", str(run), "--seed", str(job["seed"]),
               "--eval-every", str(eval_every), "--target-metric", str(target.target), *flags]
    if target.bidirectional:
        command.append("--bidirectional")
    env = os.environ | ({"OMP_NUM_THREADS": str(job["threads"])} if job["threads"] else {})
    run.parent.mkdir(parents=True, exist_ok=True)
    log = run.parent / f"{run.name}.out"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # wait4, not Popen.wait: it also returns the child's peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{log.read_text()[-3000:]}")
    evals = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "eval"]
    curve = [{"step": r["step"], "examples": r.get("examples", 0), "train_seconds": r.get("train_seconds", 0.0),
              "metric": r["metrics"][target.metric]} for r in evals]
    hit = next((c for c in curve if c["metric"] >= target.target), None)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"workload": target.name, "variant": name, "flags": shlex.join(flags), "eval_every": eval_every,
            "examples_per_step": per_step, "curve": curve, "reached": hit is not None,
            "seconds_to_target": hit["train_seconds"] if hit else None,
            "examples_to_target": hit["examples"] if hit else None,
            "best_metric": max(c["metric"] for c in curve), "train_seconds": metrics.get("train_time_s"),
            "train_tokens": metrics.get("train_tokens"), "wall_seconds": wall,
            "peak_rss_mib": usage.ru_maxrss / 1024}


def measure(args) -> list[dict]:
    """Run every (workload, variant) of args; `throughput.py --time-to-accuracy` calls this too."""
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    print(f"# time to accuracy\n\n- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n"
          f"- cores: {os.cpu_count()}, jobs: {args.jobs}, load: {os.getloadavg()[0]:.2f}\n"
          f"- train sample {args.train_examples}, validation sample {VALIDATION_EXAMPLES}, validate every "
          f"~{args.eval_examples} examples\n", flush=True)
    targets = [t for t in TARGETS if not args.workloads or t.name in args.workloads]
    rows = []
    with tempfile.TemporaryDirectory(prefix="lsllm-tta-") as tmp:
        runs = args.keep or Path(tmp) / "runs"
        jobs = []
        for target in targets:
            files = samples(args, target, Path(tmp) / target.name)
            if files:
                jobs += [{"target": target, "variant": v, "flags": shlex.split(VARIANTS[v]), "files": files,
                          "runs": str(runs), "seed": args.seed, "eval_examples": args.eval_examples,
                          "threads": threads} for v in args.variants]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for r in pool.map(run_variant, jobs):
                reached = (f"{r['seconds_to_target']:.0f} s, {r['examples_to_target']} examples" if r["reached"]
                           else f"not reached (best {r['best_metric']:.4f})")
                print(f"{r['workload']:12} {r['variant']:10} {reached}, RSS {r['peak_rss_mib']:.0f} MiB; curve "
                      + " ".join(f"{c['examples']}:{c['metric']:.3f}" for c in r["curve"]), flush=True)
                rows.append(r)
    return rows


def main() -> None:
    args = parse_args()
    rows = measure(args)
    print("\n" + table(rows))
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                       indent=2, default=str) + "\n")


def table(rows: list[dict]) -> str:
    lines = ["| workload | variant | flags | seconds to target | examples to target | x sooner | best | peak RSS MiB |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    base = {}
    for r in rows:
        base.setdefault(r["workload"], r["seconds_to_target"])
        b = base[r["workload"]]
        ratio = f"{b / r['seconds_to_target']:.2f}" if b and r["seconds_to_target"] else "-"
        secs = f"{r['seconds_to_target']:.0f}" if r["reached"] else "not reached"
        lines.append(f"| {r['workload']} | {r['variant']} | `{r['flags']}` | {secs} | "
                     f"{r['examples_to_target'] or '-'} | {ratio} | {r['best_metric']:.4f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
