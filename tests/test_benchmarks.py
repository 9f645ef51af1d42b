"""The quick variant of the reproduction suite: runner, resume-by-skipping and report keep working."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_quick_suite_runs_resumes_and_reports(smollm2, shared_data, tmp_path):
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), str(ROOT / "benchmarks" / "experiments" / "quick.yaml"),
           "--runs-dir", str(runs)]
    first = subprocess.run(cmd + ["--jobs", "2"], env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    cells = sorted(p.parent.name for p in runs.glob("*/cell.json"))
    assert cells == ["tfns__ls-last__s0", "tfns__lsun-max__s0", "wnut17__ls-last__s0", "wnut17__lsun-max__s0"]
    record = json.loads((runs / "tfns__ls-last__s0" / "cell.json").read_text())
    assert record["train_examples"] == 24 and record["steps"] == 3 and "lsllm.cli train" in record["command"]
    assert record["threads"] == max(1, (os.cpu_count() or 1) // 2)  # --jobs 2 splits the cores
    ner = json.loads((runs / "wnut17__lsun-max__s0" / "cell.json").read_text())
    assert ner["metrics"]["test"]["n"] == 16  # test_subset: a fixed sample of the test split
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "lsllm.cli train" not in again.stdout  # finished cells are skipped
    out = tmp_path / "report" / "quick.md"
    out.parent.mkdir()
    report = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"),
                             str(ROOT / "benchmarks" / "experiments" / "quick.yaml"), "--runs-dir", str(runs),
                             "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    text = out.read_text()
    assert "| tfns | ls-last | accuracy |" in text and "| wnut17 | lsun-max | f1 |" in text
    assert (out.parent / "curves_tfns.png").is_file()


def test_throughput_quick_prints_the_length_and_time_to_accuracy_tables(smollm2, shared_data, tmp_path):
    """`throughput.py --lengths --time-to-accuracy` on tiny samples: every table is printed and recorded, each
    time-to-accuracy run is a real `lsllm train` whose validation curve and peak RSS come back."""
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--workloads", "sst2-causal",
           "--variants", "lsllm", "--no-predict", "--lengths", "--out", str(out), "--time-to-accuracy",
           "--workloads sst2-causal --train-examples 48 --eval-examples 16 --variants batch8 default"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(r["length"], r["kernel"]) for r in report["lengths"]] == [(64, "eager"), (64, "sdpa"),
                                                                       (256, "eager"), (256, "sdpa")]
    assert all(r["tokens_per_s"] > 0 and r["peak_rss_mib"] > 0 for r in report["lengths"])
    runs = report["time_to_accuracy"]
    assert [r["variant"] for r in runs] == ["batch8", "default"]
    for r in runs:
        assert r["curve"] and r["curve"][-1]["examples"] <= 48 and r["peak_rss_mib"] > 500
        assert all(c["train_seconds"] > 0 for c in r["curve"])
    assert "| length | attention |" in result.stdout and "| workload | variant | flags | seconds to target |" in result.stdout


def test_serve_load_test_runs_every_level_without_errors(tiny_runs, shared_data, tmp_path):
    """benchmarks/serve_load.py end to end on the tiny runs (the numbers in RESULTS.md come from SmolLM2)."""
    out = tmp_path / "serve_load.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), str(tiny_runs["seq"]), "--token-run",
           str(tiny_runs["token"]), "--requests", "64", "--soak", "20", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| run | clients |" in result.stdout
    for run in json.loads(out.read_text()):
        assert [level["concurrency"] for level in run["levels"]] == [1, 8, 32, 128]
        assert all(level["errors"] == 0 for level in run["levels"])
        mixed = run["mixed"]
        assert mixed["good_ok"] == mixed["good"] and mixed["bad_4xx"] == mixed["bad"] and mixed["5xx"] == 0, mixed
        assert run["server_exit"] == 0
        assert [r["requests"] for r in run["soak"]["rounds"]] == list(range(2, 21, 2)) and run["soak"]["errors"] == 0
        assert run["batching_ceiling"] > 0


def test_fused_lora_benchmark_checks_its_fusion_is_exact_before_timing(smollm2, shared_data):
    """benchmarks/fused_lora.py (issue 13's fused-LoRA-A lever, measured and not kept): every q/k/v and gate/up
    group of SmolLM2's 30 blocks is fused, and the fused step's loss and gradients equal PEFT's."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fused_lora.py"), "--rows", "2", "--batches", "1", "--rounds", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    fused = next(line for line in result.stdout.splitlines() if "groups fused" in line)
    assert fused.startswith("60 groups fused"), fused
    loss, grads = (float(part.split()[-1]) for part in fused.split(";")[1].split(","))
    assert loss < 1e-5 and grads < 1e-5, fused
    assert "fused LoRA A" in result.stdout and "stacked" in result.stdout


@pytest.mark.parametrize("name", ["tfns", "wnut17"])
def test_tune_study_compares_the_retrained_best_with_the_config_as_written_on_test(tiny_models, shared_data, tmp_path,
                                                                                  name):
    import csv

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import tune_study

    # 100 WNUT-17 sentences hold all 13 tags (40 lack B-/I-product, which the validation draw has)
    result = tune_study.main([name, "--work", str(tmp_path / "w"), "--out", str(tmp_path / "out"), "--trials", "2",
                              "--train-size", "100", "--validation-size", "20", "--max-steps", "2",
                              "--model", str(tiny_models["llama"]), "--data", str(shared_data)])
    assert [t["as_written"] for t in result["trials"]] == [True, False]
    for run in ("retrained", tune_study.AS_WRITTEN):  # both scored once on the whole test split
        metrics = json.loads((tmp_path / "w" / "study" / run / "metrics.json").read_text())
        assert metrics["test"]["n"] == {"tfns": 2388, "wnut17": 1287}[name]
    if name == "tfns":  # validation drawn from the training file, disjoint from the training sample
        rows = [{tuple(r) for r in csv.reader(open(tmp_path / "w" / f"{s}.csv"))} for s in ("train", "validation")]
        assert len(rows[0]) == 101 and len(rows[1]) == 21 and len(rows[0] & rows[1]) == 1  # the header
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["best_trial"] == result["best_trial"]
