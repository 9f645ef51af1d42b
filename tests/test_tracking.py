"""--report-to: TensorBoard event files and an MLflow run hold log.jsonl's records and metrics.json's numbers."""
import json
import re

import pytest

from lsllm.cli import main
from test_workflow import _train_args, seq_data  # noqa: F401  (fixture)


def train_reporting(tiny_models, data, run, kind):
    train_path, dev, test = data
    assert main(_train_args(tiny_models["llama"], train_path, dev, test, run, "--report-to", kind)) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return metrics, log


def test_tensorboard_event_files_hold_the_log_and_final_metrics(tiny_models, seq_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    metrics, log = train_reporting(tiny_models, seq_data, run, "tensorboard")
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    train = [(r["step"], r["loss"]) for r in log if r["type"] == "train"]
    assert [s for s, _ in scalars["train/loss"]] == [s for s, _ in train]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([v for _, v in train], rel=1e-6)
    evals = [(r["step"], r["metrics"]["accuracy"]) for r in log if r["type"] == "eval"]
    assert [s for s, _ in scalars["validation/accuracy"]] == [s for s, _ in evals]
    assert [v for _, v in scalars["validation/accuracy"]] == pytest.approx([v for _, v in evals])
    for split in ("validation", "test"):
        assert scalars[f"final/{split}/accuracy"] == [(12, pytest.approx(metrics[split]["accuracy"]))]
    assert not list(tmp_path.glob("*.incomplete"))


def test_mlflow_run_in_a_local_store_beside_the_run(tiny_models, seq_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "run"
    metrics, log = train_reporting(tiny_models, seq_data, run, "mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "lsllm"]
    [found] = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert found.data.params["train.lr"] == "0.003" and found.data.params["model.task"] == "seq"
    assert found.data.metrics["final/test/accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    history = client.get_metric_history(found.info.run_id, "validation/accuracy")
    evals = [(r["step"], r["metrics"]["accuracy"]) for r in log if r["type"] == "eval"]
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [s for s, _ in evals]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([v for _, v in evals])


def wandb_items(raw: bytes) -> list[tuple[str, object]]:
    """(key, value) of every item in a .wandb file, in order. wandb 0.31 has no Python reader for these files (its Go
    core writes them); an item is a protobuf message whose key (field 2) and value_json (field 16) are
    length-prefixed text, which is all this reads."""
    items = []
    for match in re.finditer(rb"\x12([\x01-\x7f])", raw):
        end = match.end() + match.group(1)[0]
        if raw[end:end + 2] == b"\x82\x01" and raw[end + 2] < 0x80:
            try:
                items.append((raw[match.end():end].decode(), json.loads(raw[end + 3:end + 3 + raw[end + 2]])))
            except (UnicodeDecodeError, ValueError):
                continue
    return items


def test_wandb_offline_run_holds_the_log_and_final_metrics(tiny_models, seq_data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    metrics, log = train_reporting(tiny_models, seq_data, run, "wandb")
    [data] = (run / "wandb").glob("offline-run-*/run-*.wandb")  # inside the run folder: it moves with the run
    items = wandb_items(data.read_bytes())
    logged = {}
    for key, value in items:
        logged.setdefault(key, []).append(value)
    train = [r["loss"] for r in log if r["type"] == "train"]
    evals = [r["metrics"]["accuracy"] for r in log if r["type"] == "eval"]
    # Each value stands twice (the history row, then the summary's update): compare them in order, once each.
    assert list(dict.fromkeys(logged["train/loss"])) == pytest.approx(list(dict.fromkeys(train)))
    assert all(v in logged["validation/accuracy"] for v in evals)
    assert set(logged["final/test/accuracy"]) == {metrics["test"]["accuracy"]}
    assert set(logged["final/validation/accuracy"]) == {metrics["validation"]["accuracy"]}
    assert b"train.lr" in data.read_bytes()  # the config, as hyper-parameters


def test_a_missing_tracker_package_is_one_clear_error_before_anything_is_written(tiny_models, seq_data, tmp_path,
                                                                                  capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    train_path, dev, test = seq_data
    code = main(_train_args(tiny_models["llama"], train_path, dev, test, tmp_path / "run", "--report-to", "wandb"))
    err = capsys.readouterr().err
    assert code == 2 and "--report-to wandb needs the wandb package" in err and "lsllm[tracking]" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.incomplete").exists()


def test_an_unknown_tracker_is_refused(tiny_models, seq_data, tmp_path, capsys):
    train_path, dev, test = seq_data
    code = main(_train_args(tiny_models["llama"], train_path, dev, test, tmp_path / "run", "--report-to", "comet"))
    assert code == 2 and "report_to 'comet' must be one of" in capsys.readouterr().err
