"""Experiment runner: a grid of dataset x variant x seed, each cell a normal `lsllm train` run.

    python benchmarks/run.py benchmarks/experiments/defaults.yaml [--only SUBSTRING] [--jobs N] [--dry-run]
                                                                   [--estimate]

Cells whose run folder is complete are skipped, so a killed sweep resumes where it stopped (an
interrupted cell restarts from its own checkpoint with --resume). Each cell records its command,
seed, train size, steps, wall time and metrics in `<runs_dir>/<cell>/cell.json`.
Subsets are fixed and seeded: `train_subset: N` samples N training examples with seed 0;
`validation_from_train: N` holds out N other training examples as the validation split (for sets whose
official dev split is the test split, as in the paper); validation and test files are used whole unless a
grid block sets `test_subset: N` (a fixed seeded sample, for costly baselines; the report shows test sizes) or a
dataset sets `validation_subset: N` (a fixed seeded sample of its validation file: checkpoint selection for cells
that validate often, such as many epochs over a small learning-curve subset).
`--jobs N` runs N cells at once with cores/N threads each: small-batch CPU training is overhead-bound, so
two 1-thread cells finish ~1.5x sooner on 2 cores than one 2-thread cell at a time (their logs go to
`<cell>/train.log`).
A dataset may be `like: OTHER` with keys of its own (a learning-curve subset of the same splits), and may set
`evals_per_epoch` (validation cadence that follows its size). With `records_dir` in the experiments file each
finished cell's record, with its validation curve, is also kept there (committed, unlike run folders), and a
cell recorded there is not run again: a sweep longer than one machine's life goes on where it stopped.
`--estimate` prints each cell's expected time from the words it trains on and the `estimate:` speeds of the
experiments file (also printed as each cell starts), and the total, without running anything.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from lsllm.data.labels import build_label_set
from lsllm.data.readers import read_examples
from lsllm.data.records import SeqExample
from lsllm.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]


def cells(spec: dict) -> list[dict]:
    """Expand the grid into cells: name, dataset, variant, seed and the merged config sections."""
    out = []
    for block in spec["grid"]:
        for ds_name in block["datasets"]:
            for var_name in block["variants"]:
                for seed in block.get("seeds", [0]):
                    dataset, variant = dataset_spec(spec, ds_name), spec["variants"][var_name]
                    config = copy.deepcopy(spec.get("defaults", {}))
                    for section, values in variant.items():
                        if isinstance(values, dict):
                            config.setdefault(section, {}).update(values)
                        else:  # a top-level key such as `method`
                            config[section] = values
                    config.setdefault("model", {})["task"] = dataset["task"]
                    config.setdefault("train", {})["seed"] = seed
                    for section, values in dataset.get("overrides", {}).items():
                        config.setdefault(section, {}).update(values)
                    if dataset.get("evals_per_epoch") and "eval_every" not in config["train"]:
                        config["train"]["evals_per_epoch"] = dataset["evals_per_epoch"]
                    out.append({"name": f"{ds_name}__{var_name}__s{seed}", "dataset": ds_name, "variant": var_name,
                                "seed": seed, "config": config, "test_subset": block.get("test_subset")})
    return out


def dataset_spec(spec: dict, name: str) -> dict:
    """A dataset entry, with `like: OTHER` resolved (its own keys win)."""
    entry = dict(spec["datasets"][name])
    if "like" in entry:
        entry = {**dataset_spec(spec, entry.pop("like")), **entry}
    return entry


def _path(name: str) -> str:
    return name if Path(name).is_absolute() else str(ROOT / name)


def _read(dataset: dict, split: str) -> list:
    """A split as records. A split is a path, or {path, columns, label_map} for files laid out differently."""
    entry = dataset[split]
    entry = entry if isinstance(entry, dict) else {"path": entry}
    columns = entry.get("columns", dataset.get("columns", {}))
    examples = read_examples(_path(entry["path"]), dataset["task"], **columns)
    for e in examples if entry.get("label_map") else []:
        e.label = entry["label_map"][e.label]
    return examples


def split_files(dataset: dict, folder: Path, test_subset: int | None = None) -> tuple[dict[str, str], int, list[str]]:
    """Every split of a cell as normalised JSONL (text/label or tokens/tags): the fixed seeded train
    subset, validation held out from train where asked, and the whole validation/test files; plus the
    label list of the *whole* training split (a subset may miss a rare label that test has)."""
    folder.mkdir(parents=True, exist_ok=True)
    examples = _read(dataset, "train")
    labels = build_label_set(dataset["task"], examples).names
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    held_out = dataset.get("validation_from_train", 0)
    rest = [examples[i] for i in order[held_out:]]
    train = rest[:dataset["train_subset"]] if dataset.get("train_subset") else rest
    files = {"train": _write_jsonl(train, folder / "train.jsonl")}
    if held_out:
        files["validation"] = _write_jsonl([examples[i] for i in order[:held_out]], folder / "validation.jsonl")
    for split in ("validation", "test"):
        if dataset.get(split) and split not in files:
            rows = _read(dataset, split)
            k = test_subset if split == "test" else dataset.get("validation_subset")
            if k and k < len(rows):
                rows = [rows[i] for i in test_sample(len(rows), k)]
            files[split] = _write_jsonl(rows, folder / f"{split}.jsonl")
    return files, len(train), labels


def test_sample(n: int, k: int) -> list[int]:
    """Indexes of the fixed seeded k-example test sample (report.py re-scores other cells on it)."""
    return random.Random(0).sample(range(n), k)


def _write_jsonl(examples, target: Path) -> str:
    with open(target, "w", encoding="utf-8") as f:
        for e in examples:
            row = ({"text": e.text, "label": e.label} | ({"text_pair": e.text_pair} if e.text_pair else {})
                   if isinstance(e, SeqExample) else {"tokens": e.tokens, "tags": e.tags})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(target)


def run_cell(cell: dict, spec: dict, runs_dir: Path, dry_run: bool, threads: int | None = None) -> dict | None:
    folder = runs_dir / cell["name"]
    record_path = folder / "cell.json"
    kept = records_dir(spec)
    if kept is not None and (kept / f"{cell['name']}.json").is_file():
        return json.loads((kept / f"{cell['name']}.json").read_text())
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        keep_record(spec, record)
        return record
    dataset = dataset_spec(spec, cell["dataset"])
    files, n_train, labels = split_files(dataset, folder / "data", cell.get("test_subset"))
    config = copy.deepcopy(cell["config"])
    config.setdefault("data", {}).update(files, labels=labels)
    config_path = folder / "config.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    run = folder / "run"
    command = [sys.executable, "-m", "lsllm.cli", "train", str(config_path), "--output", str(run)]
    incomplete = folder / "run.incomplete"
    if (incomplete / "checkpoint").is_dir():
        command.append("--resume")
    elif incomplete.is_dir() and not dry_run:  # killed before its first checkpoint: nothing to resume
        shutil.rmtree(incomplete)
    print(f"[{cell['name']}] {' '.join(command)}", flush=True)
    if "estimate" in spec:
        print(f"[{cell['name']}] {describe_estimate(estimate(cell, spec, files))}", flush=True)
    if dry_run:
        return None
    if (run / "metrics.json").is_file():  # finished after its runner was killed: record it, don't retrain
        wall = (run / "metrics.json").stat().st_mtime - (run / "config.yaml").stat().st_mtime  # start -> end
        return keep_record(spec, record_cell(cell, command, n_train, run, record_path, round(wall, 1)))
    start = time.time()
    if threads:  # parallel cells: split the cores, keep each cell's output in its own log
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with open(folder / "train.log", "a", encoding="utf-8") as log:
            proc = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    else:
        proc = subprocess.run(command, cwd=ROOT)
    if proc.returncode != 0:
        print(f"[{cell['name']}] failed with exit code {proc.returncode}", flush=True)
        return None
    return keep_record(spec, record_cell(cell, command, n_train, run, record_path, round(time.time() - start, 1),
                                         threads))


def record_cell(cell: dict, command: list[str], n_train: int, run: Path, record_path: Path, wall: float | None,
                threads: int | None = None) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    log = run / "log.jsonl"
    evals = [{k: r.get(k) for k in ("step", "examples", "train_seconds", "metrics")}
             for r in map(json.loads, log.read_text().splitlines() if log.is_file() else []) if r["type"] == "eval"]
    record = {**{k: cell[k] for k in ("name", "dataset", "variant", "seed")}, "command": " ".join(command),
              "threads": threads or os.cpu_count(), "train_examples": n_train, "steps": metrics.get("steps", 0),
              "wall_time_s": wall, "main_metric": metrics["main_metric"], "metrics": metrics, "evals": evals}
    record_path.write_text(json.dumps(record, indent=2))
    print(f"[{cell['name']}] done in {wall or 0:.0f} s", flush=True)
    return record


def records_dir(spec: dict) -> Path | None:
    return Path(_path(spec["records_dir"])) if spec.get("records_dir") else None


def keep_record(spec: dict, record: dict) -> dict:
    """Copy a finished cell's record into the experiments' committed records_dir (when it has one)."""
    kept = records_dir(spec)
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        write_text_atomic(kept / f"{record['name']}.json", json.dumps(record, indent=2) + "\n")
    return record


def _words(path: str) -> tuple[int, int]:
    """(examples, words) of a normalised split file."""
    n = words = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            n += 1
            words += len(row["tokens"]) if "tokens" in row else len((row["text"] + " " + row.get("text_pair", "")).split())
    return n, words


def estimate(cell: dict, spec: dict, files: dict[str, str]) -> dict:
    """Expected seconds of a cell: words trained on over the model's training speed, plus its validations
    and the test pass over its prediction speed (the `estimate:` section, words/s)."""
    model = cell["config"].get("model", {}).get("model", "smollm2-135m")
    speed = spec["estimate"].get(model)
    if speed is None:
        return {"model": model}
    train = cell["config"].get("train", {})
    epochs = float(train.get("epochs", 1))
    n_train, train_words = _words(files["train"])
    val_words = _words(files["validation"])[1] if "validation" in files else 0
    test_words = _words(files["test"])[1] if "test" in files else 0
    evals = epochs * train.get("evals_per_epoch", 1)
    train_s = train_words * epochs / speed["train"]
    eval_s = (evals * val_words + test_words) / speed["predict"]
    return {"model": model, "train_s": train_s, "eval_s": eval_s, "total_s": train_s + eval_s,
            "train_words": train_words, "epochs": epochs, "evals": evals}


def describe_estimate(e: dict) -> str:
    if "total_s" not in e:
        return f"no estimate (no speed for {e['model']} in the estimate: section)"
    return (f"estimate: ~{e['total_s'] / 60:.0f} min on 2 idle cores (training ~{e['train_s'] / 60:.0f} min over "
            f"{e['train_words']:,} words x {e['epochs']:g} epochs, {e['evals']:g} validations + test "
            f"~{e['eval_s'] / 60:.0f} min)")


def print_estimates(spec: dict, selected: list[dict], runs_dir: Path) -> None:
    total, left = 0.0, 0.0
    for cell in selected:
        done = (records_dir(spec) is not None and (records_dir(spec) / f"{cell['name']}.json").is_file()) or (
            runs_dir / cell["name"] / "cell.json").is_file()
        files = split_files(dataset_spec(spec, cell["dataset"]), runs_dir / cell["name"] / "data",
                            cell.get("test_subset"))[0]
        e = estimate(cell, spec, files)
        total += e.get("total_s", 0)
        left += 0 if done else e.get("total_s", 0)
        print(f"{'done' if done else 'todo'}  {cell['name']:<40} {describe_estimate(e)}", flush=True)
    print(f"{len(selected)} cells: ~{total / 3600:.1f} h in all, ~{left / 3600:.1f} h still to run", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", type=Path)
    parser.add_argument("--only", action="append", default=[], help="run cells whose name contains this (repeatable)")
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="cells run at once, each with cores/jobs threads")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--estimate", action="store_true", help="print each cell's expected time and the total")
    args = parser.parse_args()
    spec = yaml.safe_load(args.experiments.read_text())
    runs_dir = args.runs_dir or ROOT / spec.get("runs_dir", "benchmarks/runs")
    selected = [c for c in cells(spec) if not args.only or any(s in c["name"] for s in args.only)]
    print(f"{len(selected)} cells; runs in {runs_dir}", flush=True)
    if args.estimate:
        print_estimates(spec, selected, runs_dir)
        return
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        records = list(pool.map(lambda c: run_cell(c, spec, runs_dir, args.dry_run, threads), selected))
    failed = sum(r is None for r in records) if not args.dry_run else 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
