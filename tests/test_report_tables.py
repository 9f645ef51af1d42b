"""benchmarks/report.py: paper-style tables from cell records and splicing into RESULTS.md."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec_ = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(report)


def cell(dataset, variant, seed, test, n=100, val=None):
    metrics = {"test": {"accuracy": test, "n": n}}
    if val is not None:
        metrics["validation"] = {"accuracy": val, "n": 50}
    return {"name": f"{dataset}__{variant}__s{seed}", "dataset": dataset, "variant": variant, "seed": seed,
            "main_metric": "accuracy", "metrics": metrics, "train_examples": 80, "steps": 10, "wall_time_s": 5.0}


SPEC = {"variants": {"ls": {}, "zs": {}}, "report": {"labels": {"ls": "LS"}}}
LAYOUT = {"title": "T", "datasets": ["a", "b"], "variants": ["zs", "ls"],
          "reference": {"rows": {"paper": {"a": "93.2"}}}}


def test_paper_table_means_seeds_marks_sampled_tests_and_keeps_reference_rows():
    cells = [cell("a", "ls", 0, 0.80), cell("a", "ls", 1, 0.90), cell("a", "zs", 0, 0.5, n=40)]
    text = report.paper_table(LAYOUT, SPEC, cells)
    rows = {line.split("|")[1].strip(): [x.strip() for x in line.split("|")[2:-1]] for line in text.splitlines()
            if line.startswith("| ") and "variant" not in line}
    assert rows["LS"] == ["85.0 ± 5.0 (n=2)", "-"]  # label from the spec; missing cells show "-"
    assert rows["zs"] == ["50.0 †", "-"]  # scored on fewer test examples than the dataset's other cells
    assert rows["*paper*"] == ["93.2", "n/a"] and "† scored on a fixed seeded" in text


def test_splice_replaces_only_the_marked_block(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\nhand-written intro\n")
    report.splice(results, "paper", "first\n")
    report.splice(results, "paper", "second\n")
    results.write_text(results.read_text() + "hand-written reading\n")
    report.splice(results, "paper", "third\n")
    text = results.read_text()
    assert text.startswith("# Results\nhand-written intro\n") and text.endswith("hand-written reading\n")
    assert "third" in text and "first" not in text and "second" not in text
    assert text.count("<!-- report:paper begin -->") == 1


def test_build_report_writes_pooling_chart_and_every_cell_table(tmp_path):
    spec = {"variants": {"ls-last": {}, "ls-max": {}, "un-max": {}}, "report": {
        "pooling": {"datasets": ["a"], "poolings": ["last", "max"], "causal": {"last": "ls-last", "max": "ls-max"},
                    "bidirectional": {"max": "un-max"}}}}
    cells = [cell("a", "ls-last", 0, 0.8, val=0.7), cell("a", "ls-max", 0, 0.7), cell("a", "un-max", 0, 0.9)]
    for c in cells:  # a run log with two evaluations, for the curves
        log = tmp_path / "runs" / c["name"] / "run" / "log.jsonl"
        log.parent.mkdir(parents=True)
        log.write_text("\n".join(json.dumps({"type": "eval", "step": s, "metrics": {"accuracy": a}})
                                 for s, a in ((5, 0.6), (10, 0.7))))
    text = report.build_report(spec, cells, tmp_path / "runs", tmp_path, "img/")
    assert (tmp_path / "pooling.png").is_file() and "![pooling](img/pooling.png)" in text
    assert (tmp_path / "curves_a.png").is_file()
    assert "| a | ls-last | accuracy | 70.0 | 80.0 | 100 | 80 | 10 | 5 |" in text


def test_whole_test_cells_are_rescored_on_the_prompting_sample(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run import test_sample

    full, k = 50, 20
    gold = [str(i % 2) for i in range(full)]
    right = set(test_sample(full, k)[:15])  # the LS cell is right on 15 of the sampled 20, wrong elsewhere
    path = tmp_path / "a__ls__s0" / "run" / "test_predictions.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(json.dumps({"label": g if i in right else "x", "gold": g}) for i, g in enumerate(gold)))
    cells = [cell("a", "ls", 0, 15 / full, n=full), cell("a", "zs", 0, 0.6, n=k)]
    text = report.same_sample_table(LAYOUT, SPEC, cells, tmp_path)
    assert "a, the same 20 of 50 test examples: zs 60.0; LS 75.0" in text


def test_data_size_curves_join_a_dataset_and_its_subsets_and_bold_the_best_per_size(tmp_path):
    spec = {"datasets": {"a": {"path": "x"}, "a_n100": {"like": "a", "train_subset": 100}, "b": {"path": "y"}},
            "variants": {"ls": {}, "enc": {}}, "report": {"labels": {"ls": "LS"},
                                                          "data_curves": [{"dataset": "a", "variants": ["ls", "enc"]}]}}

    def sized(dataset, variant, seed, test, n):
        return cell(dataset, variant, seed, test) | {"train_examples": n}

    cells = [sized("a_n100", "ls", 0, 0.60, 100), sized("a_n100", "enc", 0, 0.70, 100),
             sized("a", "ls", 0, 0.90, 1000), sized("a", "ls", 1, 0.92, 1000), sized("a", "enc", 0, 0.85, 1000),
             sized("b", "ls", 0, 0.10, 100)]  # another dataset: not on a's curve
    text = report.build_report(spec, cells, tmp_path / "runs", tmp_path, "img/")
    assert "| variant | 100 | 1,000 |" in text
    assert "| LS | 60.0 | **91.0 ± 1.0 (n=2)** |" in text  # the encoder leads at 100, LS at 1,000: the crossover
    assert "| enc | **70.0** | 85.0 |" in text
    assert (tmp_path / "data_size_a.png").is_file() and "![data_size_a](img/data_size_a.png)" in text
