"""benchmarks/run.py (fast tier): cells expand from the grid, learning-curve subsets inherit their base set,
and every sample a cell trains or selects on is fixed and seeded."""
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec_ = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
run = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(run)


def _tsv(path: Path, n: int) -> str:
    path.write_text("".join(f"sentence number {i}\t{i % 2}\n" for i in range(n)))
    return str(path)


def test_learning_curve_subset_inherits_its_base_and_samples_validation_and_epochs(tmp_path):
    base = {"task": "seq", "train": _tsv(tmp_path / "train.tsv", 300), "validation": _tsv(tmp_path / "dev.tsv", 120),
            "test": _tsv(tmp_path / "test.tsv", 50), "evals_per_epoch": 2}
    spec = {"defaults": {"train": {"epochs": 1}},
            "datasets": {"s": base, "s_n40": {"like": "s", "train_subset": 40, "validation_subset": 30,
                                              "evals_per_epoch": 1, "overrides": {"train": {"epochs": 16}}}},
            "variants": {"ls": {"model": {"bidirectional": False}}},
            "grid": [{"datasets": ["s", "s_n40"], "variants": ["ls"]}]}
    whole, small = run.cells(spec)
    assert whole["config"]["train"] == {"epochs": 1, "seed": 0, "evals_per_epoch": 2}
    assert small["config"]["train"] == {"epochs": 16, "seed": 0, "evals_per_epoch": 1}
    files, n_train, labels = run.split_files(run.dataset_spec(spec, "s_n40"), tmp_path / "cell")
    rows = {split: [json.loads(line) for line in Path(path).read_text().splitlines()] for split, path in files.items()}
    assert n_train == 40 and len(rows["train"]) == 40 and labels == ["0", "1"]
    assert len(rows["validation"]) == 30 and len(rows["test"]) == 50  # the test split stays whole
    dev = [line.split("\t")[0] for line in (tmp_path / "dev.tsv").read_text().splitlines()]
    assert [r["text"] for r in rows["validation"]] == [dev[i] for i in run.test_sample(120, 30)]  # fixed, seeded
    again, _, _ = run.split_files(run.dataset_spec(spec, "s_n40"), tmp_path / "again")
    assert Path(again["validation"]).read_text() == Path(files["validation"]).read_text()
    whole_files, n_whole, _ = run.split_files(run.dataset_spec(spec, "s"), tmp_path / "whole")
    assert n_whole == 300 and len(Path(whole_files["validation"]).read_text().splitlines()) == 120
    assert run.estimate(small, spec | {"estimate": {"smollm2-135m": {"train": 100, "predict": 100}}},
                        files)["evals"] == 16  # one validation per epoch
