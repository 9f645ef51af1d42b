"""A real `lsllm tune` study on a shared set (issue 17; benchmarks/RESULTS.md section 7).

Draws seeded samples from ../shared/data (never copied into the repo), runs the study with the median pruner
(its first trial is the config as written, lsllm's defaults), then trains both the best settings and that first
trial's on train + validation, and scores each once on the test split: the gain of tuning on test.

    python benchmarks/tune_study.py wnut17 --trials 12 --work /tmp/tune-wnut17 --out benchmarks/results/tune_wnut17
    python benchmarks/tune_study.py tfns --trials 12 --work /tmp/tune-tfns --out benchmarks/results/tune_tfns

Run again with the same --work after a kill: the study continues (lsllm tune resumes).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import time
from pathlib import Path

import yaml

from lsllm.tune import gain_line, retrain_best, tune

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# name: task, training file (samples drawn from it), validation file (None: drawn from the training file, disjoint),
# test file
SETS = {
    "wnut17": ("token", "wnut17/wnut17train.conll", "wnut17/emerging.dev.conll", "wnut17/emerging.test.annotated"),
    "tfns": ("seq", "tfns/sent_train.csv", None, "tfns/sent_valid.csv"),
}
AS_WRITTEN = "retrained-as-written"


def conll_sentences(path: Path) -> list[str]:
    """Sentence blocks (blank lines may hold spaces or tabs, as in WNUT-17's files)."""
    blocks, lines = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip():
            lines.append(line)
        elif lines:
            blocks.append("\n".join(lines))
            lines = []
    return blocks


def draw(name: str, data: Path, work: Path, train_size: int, validation_size: int | None, seed: int) -> dict:
    """Seeded samples written into `work`; returns the data section of the tune YAML."""
    task, train_file, validation_file, test_file = SETS[name]
    rng = random.Random(seed)
    if task == "token":
        sentences = conll_sentences(data / train_file)
        (work / "train.conll").write_text("\n\n".join(rng.sample(sentences, train_size)) + "\n", encoding="utf-8")
        paths = {"train": work / "train.conll", "validation": data / validation_file}
        if validation_size:
            dev = conll_sentences(data / validation_file)
            (work / "validation.conll").write_text("\n\n".join(rng.sample(dev, validation_size)) + "\n",
                                                   encoding="utf-8")
            paths["validation"] = work / "validation.conll"
    else:
        with open(data / train_file, newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
        picked = rng.sample(rows, train_size + (validation_size or 0))
        paths = {}
        for split, part in (("train", picked[:train_size]), ("validation", picked[train_size:])):
            paths[split] = work / f"{split}.csv"
            with open(paths[split], "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows([header, *part])
    return {k: str(v) for k, v in paths.items()} | {"test": str(data / test_file)}


def summary(study, study_dir: Path, wall_s: float) -> dict:
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               "seconds": t.duration.total_seconds() if t.duration else None,
               "as_written": bool(t.user_attrs.get("as_written"))} for t in study.trials]
    done = [t for t in trials if t["state"] == "COMPLETE" and t["seconds"]]
    pruned = [t for t in trials if t["state"] == "PRUNED" and t["seconds"]]
    full = sum(t["seconds"] for t in done) / len(done) if done else None
    saved = sum(full - t["seconds"] for t in pruned) if full else 0.0
    tests = {}
    for label, folder in (("best", "retrained"), ("as_written", AS_WRITTEN)):
        metrics = json.loads((study_dir / folder / "metrics.json").read_text())
        tests[label] = {"test": metrics.get("test"), "steps": metrics.get("steps"),
                        "train_time_s": metrics.get("train_time_s")}
    return {"trials": trials, "best_trial": study.best_trial.number, "best_params": study.best_trial.params,
            "gain_on_validation": gain_line(study), "retrained": tests, "study_wall_s": round(wall_s, 1),
            "mean_complete_trial_s": full, "pruning_saved_s": round(saved, 1),
            "pruning_saved_share": round(saved / (saved + sum(t["seconds"] for t in done + pruned)), 3)
            if done or pruned else None}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=sorted(SETS))
    ap.add_argument("--work", type=Path, required=True, help="Samples and the tuning folder (study/).")
    ap.add_argument("--out", type=Path, help="Copy the YAML, trials table, best config and summary.json here.")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--validation-size", type=int, help="Draw this many validation examples (tfns: 500; "
                                                         "wnut17: all of emerging.dev)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, help="Cap each trial (quick checks); default: one epoch")
    args = ap.parse_args(argv)
    task = SETS[args.set][0]
    validation_size = args.validation_size or (500 if task == "seq" else None)
    args.work.mkdir(parents=True, exist_ok=True)
    config = args.work / f"{args.set}.yaml"
    if not config.exists():  # a continued study keeps its samples
        raw = {"data": draw(args.set, args.data, args.work, args.train_size, validation_size, args.seed),
               "model": {"model": args.model, "task": task},
               "train": {"seed": args.seed, **({"max_steps": args.max_steps, "eval_every": max(1, args.max_steps // 2)}
                                                if args.max_steps else {"evals_per_epoch": 2})}}
        config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    study_dir = args.work / "study"
    start = time.perf_counter()
    study = tune(config, study_dir, args.trials)
    wall = time.perf_counter() - start
    test = yaml.safe_load(config.read_text())["data"]["test"]
    retrain_best(study, study_dir, test=test)
    as_written = next(t.number for t in study.trials if t.user_attrs.get("as_written"))
    if as_written == study.best_trial.number:  # the same settings: its retrained run is the best's
        shutil.copytree(study_dir / "retrained", study_dir / AS_WRITTEN, dirs_exist_ok=True)
    retrain_best(study, study_dir, number=as_written, name=AS_WRITTEN, test=test)
    result = {"set": args.set, "config": yaml.safe_load(config.read_text()), **summary(study, study_dir, wall)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(config, args.out / config.name)
        for name in ("trials.md", "trials.csv", "best.yaml"):
            shutil.copy(study_dir / name, args.out / name)
        (args.out / "summary.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
