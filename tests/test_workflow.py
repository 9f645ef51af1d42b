"""End to end on tiny in-process models: train -> eval -> predict -> export -> reload, from the CLI."""
import copy
import csv
import json
import os
import random
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lsllm.cli import app
from lsllm.config import RunConfig
from lsllm.errors import RunFolderError
from lsllm.predict import Predictor
from lsllm.training.loop import train

runner = CliRunner()
POS = "good great love fun fine".split()
NEG = "bad awful hate boring dull".split()
FILLER = "the a movie film plot actor was is".split()


def write_seq_csv(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            words = rng.sample(FILLER, 3) + [rng.choice(POS if label == "pos" else NEG)] + rng.sample(FILLER, 2)
            w.writerow([" ".join(words), label])
    return path


def write_conll(path, n, seed):
    rng = random.Random(seed)
    names, places = ["john", "mary"], ["paris", "london"]
    with open(path, "w") as f:
        for _ in range(n):
            sent = [(rng.choice(FILLER), "O"), (rng.choice(names), "B-PER"), ("in", "O"), (rng.choice(places), "B-LOC"),
                    (rng.choice(FILLER), "O")]
            f.write("\n".join(f"{w}\t{t}" for w, t in sent) + "\n\n")
    return path


@pytest.fixture
def seq_data(tmp_path):
    return (write_seq_csv(tmp_path / "train.csv", 64, 0), write_seq_csv(tmp_path / "dev.csv", 16, 1),
            write_seq_csv(tmp_path / "test.csv", 16, 2))


def _train_args(model, train_path, dev, test, out, *extra):
    return ["train", "--model", str(model), "--train", str(train_path), "--validation", str(dev), "--test", str(test),
            "--max-steps", "12", "--batch-size", "8", "--lr", "3e-3", "--eval-every", "4", "--output", str(out),
            *extra]


def test_seq_train_eval_predict_export_reload(tiny_models, seq_data, tmp_path):
    train_path, dev, test = seq_data
    run = tmp_path / "run"
    result = runner.invoke(app, _train_args(tiny_models["llama"], train_path, dev, test, run))
    assert result.exit_code == 0, result.output
    assert "validation: accuracy" in result.output
    assert sorted(p.name for p in run.iterdir()) == sorted([
        "config.yaml", "model", "metrics.json", "report.txt", "log.jsonl", "curves.png", "confusion.png",
        "labels.txt", "best_validation.json", "validation_predictions.jsonl", "test_predictions.jsonl",
        "run_inputs.json"])
    assert not (tmp_path / "run.incomplete").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["validation"]) >= {"accuracy", "macro_f1", "per_class", "loss"}
    assert metrics["best_step"] in (4, 8, 12) and metrics["steps"] == 12
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "eval"] == [4, 8, 12]
    assert all({"loss", "lr", "tokens_per_s"} <= set(r) for r in log if r["type"] == "train")
    resolved = RunConfig.from_yaml(run / "config.yaml")
    assert resolved.train.max_steps == 12 and resolved.model.model == str(tiny_models["llama"])

    # eval re-scores test exactly as training did
    result = runner.invoke(app, ["eval", str(run), "--data", str(test)])
    assert result.exit_code == 0, result.output
    again = json.loads((run / "eval_test.json").read_text())
    assert again["accuracy"] == metrics["test"]["accuracy"]

    # predictions from the run, the CLI and a merged export all agree with the end of training
    trained = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    out = tmp_path / "pred.jsonl"
    assert runner.invoke(app, ["predict", str(run), "--input", str(test), "--output", str(out)]).exit_code == 0
    predicted = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["label"] for p in predicted] == [t["label"] for t in trained]
    assert all(abs(sum(p["probs"].values()) - 1) < 1e-4 for p in predicted)
    result = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "merged"), "--merge"])
    assert result.exit_code == 0, result.output
    merged = Predictor(tmp_path / "merged").predict([t["text"] for t in trained])
    assert merged == [t["label"] for t in trained]
    csv_out = tmp_path / "pred.csv"
    assert runner.invoke(app, ["predict", str(run), "--text", "a good movie", "--output", str(csv_out)]).exit_code == 0
    assert csv_out.read_text().splitlines()[0].split(",")[:2] == ["text", "label"]


def test_token_task_from_conll(tiny_models, tmp_path):
    train_path, dev = write_conll(tmp_path / "train.conll", 48, 0), write_conll(tmp_path / "dev.conll", 8, 1)
    run = tmp_path / "ner"
    result = runner.invoke(app, _train_args(tiny_models["qwen2"], train_path, dev, dev, run, "--task", "token"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"precision", "recall", "f1", "per_type"} <= set(metrics["validation"])
    assert not (run / "confusion.png").exists()
    result = runner.invoke(app, ["predict", str(run), "--text", "john in paris ."])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["tokens"] == ["john", "in", "paris", "."] and len(row["tags"]) == 4
    for e in row["entities"]:
        assert row["text"][e["start"]:e["end"]] == e["text"]


@contextmanager
def killed_after_checkpoint(monkeypatch, step: int):
    """The training process dies (KeyboardInterrupt) right after writing the checkpoint of `step`."""
    import lsllm.training.loop as loop

    real = loop.save_checkpoint

    def save_then_die(work, model, optimizer, scheduler, state):
        real(work, model, optimizer, scheduler, state)
        if state["step"] == step:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    try:
        yield
    finally:
        monkeypatch.setattr(loop, "save_checkpoint", real)


def test_same_seed_same_metrics_and_resume_matches(tiny_models, seq_data, tmp_path, monkeypatch):
    train_path, dev, test = seq_data

    def config(out):
        c = RunConfig()
        c.data.train, c.data.validation, c.data.test = str(train_path), str(dev), str(test)
        c.model.model = str(tiny_models["llama"])
        c.train.max_steps, c.train.eval_every, c.train.lr, c.train.log_every = 12, 4, 3e-3, 2
        c.output = str(out)
        return c

    a = train(config(tmp_path / "a"), progress=False).metrics
    b = train(config(tmp_path / "b"), progress=False).metrics
    assert a["validation"] == b["validation"] and a["test"] == b["test"]

    # Kill the run right after the checkpoint at step 8, then resume it.
    with killed_after_checkpoint(monkeypatch, 8), pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "c"), progress=False)
    assert (tmp_path / "c.incomplete" / "checkpoint").is_dir() and not (tmp_path / "c").exists()
    with pytest.raises(RunFolderError, match="--resume"):  # never silently thrown away
        train(config(tmp_path / "c"), progress=False)
    c = train(config(tmp_path / "c"), resume=True, progress=False).metrics
    assert c["test"]["accuracy"] == pytest.approx(a["test"]["accuracy"], abs=1e-6)
    assert c["validation"]["loss"] == pytest.approx(a["validation"]["loss"], rel=1e-4)
    steps = [json.loads(line)["step"] for line in (tmp_path / "c" / "log.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("content,problem", [
    ("text,label\n,pos\n", "empty text"),
    ("txt,label\nhello,pos\n", "column 'text'"),
    ("", "empty"),
])
def test_bad_input_fails_before_anything_is_written(tiny_models, tmp_path, content, problem):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    good = write_seq_csv(tmp_path / "good.csv", 8, 0)
    run = tmp_path / "run"
    result = runner.invoke(app, _train_args(tiny_models["llama"], bad, good, good, run))
    assert result.exit_code == 2
    assert "bad.csv" in result.output
    assert not run.exists() and not (tmp_path / "run.incomplete").exists()


def test_unseen_test_label_and_existing_run_are_refused(tiny_models, seq_data, tmp_path):
    train_path, dev, _ = seq_data
    odd = tmp_path / "odd.csv"
    odd.write_text("text,label\na good movie,neutral\n")
    result = runner.invoke(app, _train_args(tiny_models["llama"], train_path, dev, odd, tmp_path / "r"))
    assert result.exit_code == 2 and "neutral" in result.output and "odd.csv" in result.output
    (tmp_path / "exists").mkdir()
    result = runner.invoke(app, _train_args(tiny_models["llama"], train_path, dev, dev, tmp_path / "exists"))
    assert result.exit_code == 2 and "already exists" in result.output


def test_yaml_config_with_flag_overrides(tiny_models, seq_data, tmp_path):
    train_path, dev, test = seq_data
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data:\n  train: {train_path}\n  validation: {dev}\nmodel:\n  model: {tiny_models['mistral']}\n"
                   f"  bidirectional: false\ntrain:\n  max_steps: 50\n  batch_size: 4\n")
    result = runner.invoke(app, ["train", str(cfg), "--max-steps", "3", "--pooling", "mean", "-o", str(tmp_path / "y")])
    assert result.exit_code == 0, result.output
    resolved = RunConfig.from_yaml(tmp_path / "y" / "config.yaml")
    assert resolved.train.max_steps == 3 and resolved.train.batch_size == 4 and resolved.model.pooling == "mean"
    spec = json.loads((tmp_path / "y" / "model" / "lsllm.json").read_text())
    assert spec["bidirectional"] is False and spec["pooling"] == "mean"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  modle: x\n")
    result = runner.invoke(app, ["train", str(bad), "--train", str(train_path), "-o", str(tmp_path / "z")])
    assert result.exit_code == 2 and "model.modle" in result.output


@pytest.mark.parametrize("method", ["zero-shot", "few-shot"])
def test_prompting_baselines_share_the_harness(tiny_models, seq_data, tmp_path, method):
    train_path, dev, test = seq_data
    run = tmp_path / method
    result = runner.invoke(app, ["train", "--method", method, "--k-shot", "2", "--model", str(tiny_models["llama"]),
                                 "--train", str(train_path), "--validation", str(dev), "--test", str(test),
                                 "--label-names", "neg=negative,pos=positive", "--output", str(run)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["k_shot"] == (2 if method == "few-shot" else 0)
    assert {"accuracy", "macro_f1", "invalid"} <= set(metrics["test"]) and metrics["test"]["invalid"] == 0
    rows = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(abs(sum(r["probs"].values()) - 1) < 1e-4 for r in rows)
    assert (run / "confusion.png").is_file() and (run / "report.txt").is_file()
    # The run folder predicts on its own (saved prompt and shots, no training data needed) and agrees
    # with the run's test predictions; `eval` scores it like any run.
    texts = [r["text"] for r in rows]
    again = runner.invoke(app, ["predict", str(run), *sum((["--text", t] for t in texts[:4]), [])])
    assert again.exit_code == 0, again.output
    predicted = [json.loads(line) for line in again.output.splitlines() if line.startswith("{")]
    assert [r["label"] for r in predicted] == [r["label"] for r in rows[:4]]
    assert all(abs(a["probs"][k] - b["probs"][k]) < 1e-4 for a, b in zip(predicted, rows) for k in a["probs"])
    scored = runner.invoke(app, ["eval", str(run), "--data", str(test)])
    assert scored.exit_code == 0, scored.output
    assert json.loads((run / "eval_test.json").read_text())["accuracy"] == metrics["test"]["accuracy"]


def test_early_stopping_grad_accum_and_class_weights(tiny_models, seq_data, tmp_path):
    train_path, dev, _ = seq_data
    c = RunConfig()
    c.data.train, c.data.validation = str(train_path), str(dev)
    c.model.model = str(tiny_models["llama"])
    c.train.max_steps, c.train.eval_every, c.train.early_stopping = 40, 1, 2
    c.train.lr, c.train.batch_size, c.train.grad_accum, c.train.class_weights = 1e-9, 4, 2, True
    c.output = str(tmp_path / "es")
    metrics = train(c, progress=False).metrics
    # A learning rate of 1e-9 can't improve on the first evaluation: stop after 1 + 2 evaluations.
    assert metrics["steps"] == 3 and metrics["best_step"] == 1
    log = [json.loads(line) for line in (tmp_path / "es" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "eval"] == [1, 2, 3]



def test_evals_per_epoch_spreads_validation_evenly_over_each_epoch(tiny_models, seq_data, tmp_path):
    train_path, dev, _ = seq_data
    c = RunConfig()
    c.data.train, c.data.validation = str(train_path), str(dev)
    c.model.model = str(tiny_models["llama"])
    c.train.epochs, c.train.batch_size, c.train.evals_per_epoch, c.train.lr = 2, 8, 4, 1e-9  # 64 rows: 8 steps/epoch
    c.output = str(tmp_path / "quarters")
    train(c, progress=False)
    log = [json.loads(line) for line in (tmp_path / "quarters" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "eval"] == [2, 4, 6, 8, 10, 12, 14, 16]
    c.train.evals_per_epoch, c.output = 3, str(tmp_path / "thirds")  # 8 steps an epoch: every 3rd, and its end
    train(c, progress=False)
    log = [json.loads(line) for line in (tmp_path / "thirds" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "eval"] == [3, 6, 8, 11, 14, 16]


def test_target_metric_stops_at_the_first_validation_that_reaches_it(tiny_models, seq_data, tmp_path):
    """Time to accuracy: the run stops once validation reaches --target-metric, and each validation line of
    log.jsonl says how many training seconds (evaluation excluded) and examples it took to get there."""
    train_path, dev, _ = seq_data
    c = RunConfig()
    c.data.train, c.data.validation = str(train_path), str(dev)
    c.model.model = str(tiny_models["llama"])
    c.train.max_steps, c.train.eval_every, c.train.batch_size, c.train.target_metric = 40, 2, 4, 1e-9
    c.output = str(tmp_path / "tta")
    metrics = train(c, progress=False).metrics
    assert metrics["steps"] == 2  # any accuracy reaches 1e-9: the first validation stops the run
    evals = [r for r in map(json.loads, (tmp_path / "tta" / "log.jsonl").read_text().splitlines())
             if r["type"] == "eval"]
    assert [(r["step"], r["examples"]) for r in evals] == [(2, 8)]
    assert 0 < evals[0]["train_seconds"] <= metrics["train_time_s"] + 0.01
    c.train.target_metric, c.output = 1.0, str(tmp_path / "never")
    c.train.max_steps = 4
    assert train(c, progress=False).metrics["steps"] == 4  # unreached: the run goes on to its end

def _instruct_config(model, seq_data, out):
    train_path, dev, test = seq_data
    c = RunConfig()
    c.method = "instruct"
    c.data.train, c.data.validation, c.data.test = str(train_path), str(dev), str(test)
    c.model.model = str(model)
    c.train.max_steps, c.train.eval_every, c.train.lr, c.train.log_every = 6, 2, 3e-3, 1
    c.output = str(out)
    return c


def test_instruct_baseline_trains_in_the_one_loop_and_resumes(tiny_models, seq_data, tmp_path, monkeypatch):
    """Instruction tuning goes through the LS training loop: validation picks the best step, log.jsonl
    records it, the adapter predicts from the run folder, and a killed run resumes to the same result."""
    test = seq_data[2]
    run = tmp_path / "instruct"
    a = train(_instruct_config(tiny_models["llama"], seq_data, run), progress=False).metrics
    assert a["method"] == "instruct" and {"accuracy", "invalid"} <= set(a["test"])
    assert a["steps"] == 6 and a["lora"]["preset"] == "all-linear" and a["best_step"] in (2, 4, 6)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "eval"] == [2, 4, 6]
    assert [r["step"] for r in log if r["type"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert (run / "model" / "adapter" / "adapter_config.json").is_file()
    # predict loads base model + adapter from the run folder and reproduces the run's test predictions
    from lsllm.predict import predict

    rows = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    again = predict(run, input=str(test))
    assert [r["label"] for r in again] == [r["label"] for r in rows]
    assert [r["gold"] for r in again] == [r["gold"] for r in rows]

    with killed_after_checkpoint(monkeypatch, 4), pytest.raises(KeyboardInterrupt):
        train(_instruct_config(tiny_models["llama"], seq_data, tmp_path / "b"), progress=False)
    b = train(_instruct_config(tiny_models["llama"], seq_data, tmp_path / "b"), resume=True, progress=False).metrics
    resumed = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in resumed] == [(r["type"], r["step"]) for r in log]
    assert [r["loss"] for r in resumed if r["type"] == "train"] == pytest.approx(
        [r["loss"] for r in log if r["type"] == "train"], rel=1e-4)
    assert b["test"]["accuracy"] == a["test"]["accuracy"] and b["best_step"] == a["best_step"]


def test_every_method_writes_the_same_run_folder(tiny_models, seq_data, tmp_path):
    """LS, zero-shot and instruct runs hold the same files (the model itself aside) and the same rows."""
    train_path, dev, test = seq_data
    ls = RunConfig()
    ls.data.train, ls.data.validation, ls.data.test = str(train_path), str(dev), str(test)
    ls.model.model, ls.train.max_steps, ls.output = str(tiny_models["llama"]), 2, str(tmp_path / "ls")
    zero = copy.deepcopy(ls)
    zero.method, zero.output = "zero-shot", str(tmp_path / "zero")
    instruct = _instruct_config(tiny_models["llama"], seq_data, tmp_path / "instruct")
    common = {"config.yaml", "run_inputs.json", "log.jsonl", "metrics.json", "report.txt", "labels.txt",
              "curves.png", "confusion.png", "best_validation.json", "validation_predictions.jsonl",
              "test_predictions.jsonl"}
    for config, own in ((ls, {"model"}), (zero, {"prompt.json"}), (instruct, {"prompt.json", "model"})):
        train(config, progress=False)
        run = Path(config.output)
        assert {p.name for p in run.iterdir()} == common | own, config.method
        row = json.loads((run / "test_predictions.jsonl").read_text().splitlines()[0])
        assert {"text", "label", "gold"} <= set(row), config.method
        metrics = json.loads((run / "metrics.json").read_text())
        assert {"task", "method", "main_metric", "best_step", "steps", "labels", "device"} <= set(metrics)


def test_zero_shot_ner_run_predicts_tags_from_its_folder(tiny_models, tmp_path):
    train_path, dev = write_conll(tmp_path / "train.conll", 8, 0), write_conll(tmp_path / "dev.conll", 4, 1)
    run = tmp_path / "ner0"
    result = runner.invoke(app, ["train", "--method", "zero-shot", "--task", "token", "--model",
                                 str(tiny_models["llama"]), "--train", str(train_path), "--validation", str(dev),
                                 "--output", str(run)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"f1", "invalid"} <= set(metrics["validation"])  # a random tiny model's outputs: mostly unparsable
    result = runner.invoke(app, ["predict", str(run), "--text", "john in paris ."])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["tokens"] == ["john", "in", "paris", "."] and len(row["tags"]) == 4 and "raw" in row


def test_compiled_training_follows_the_eager_run(tiny_models, seq_data, tmp_path):
    """`--compile` changes speed, not what is trained: same seed, same losses (dropout off, since
    compiled and eager dropout draw different random masks)."""
    train_path, dev, _ = seq_data
    logs = []
    for compiled in (False, True):
        c = RunConfig()
        c.data.train, c.data.validation = str(train_path), str(dev)
        c.model.model, c.model.task = str(tiny_models["llama"]), "seq"
        c.model.dropout, c.model.lora_dropout = 0.0, 0.0
        c.train.max_steps, c.train.eval_every, c.train.log_every, c.train.lr = 6, 3, 1, 3e-3
        c.train.precision, c.train.compile, c.train.batch_size = "fp32", compiled, 8
        c.output = str(tmp_path / f"run{compiled}")
        train(c, progress=False)
        logs.append([json.loads(line) for line in (Path(c.output) / "log.jsonl").read_text().splitlines()])
    eager, compiled = ([r["loss"] for r in log if r["type"] in ("train", "eval")] for log in logs)
    assert len(eager) == len(compiled) == 8
    assert compiled == pytest.approx(eager, rel=1e-3)


def test_compile_is_refused_for_prompting_methods(tiny_models, seq_data, tmp_path):
    train_path, dev, _ = seq_data
    result = runner.invoke(app, ["train", "--method", "instruct", "--compile", "--model", str(tiny_models["llama"]),
                                 "--train", str(train_path), "--output", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "--compile applies to label-supervised runs" in result.output
    assert not (tmp_path / "r").exists()


def test_token_budget_batches_see_every_example_in_fewer_steps(tiny_models, seq_data, tmp_path):
    train_path, dev, _ = seq_data
    runs = {}
    for name, size, budget in (("examples", 8, None), ("tokens", 8, 2000)):  # --batch-tokens wins over the size
        c = RunConfig()
        c.data.train, c.data.validation = str(train_path), str(dev)
        c.model.model, c.train.epochs = str(tiny_models["llama"]), 2
        c.train.batch_size, c.train.batch_tokens = size, budget
        c.output = str(tmp_path / name)
        runs[name] = train(c, progress=False).metrics
    # Two epochs over the same 64 examples: the same tokens, in a few large batches instead of 8 per epoch.
    assert runs["examples"]["steps"] == 16 and runs["tokens"]["steps"] <= 6
    assert runs["tokens"]["train_tokens"] == runs["examples"]["train_tokens"]
    log = [json.loads(line) for line in (tmp_path / "tokens" / "log.jsonl").read_text().splitlines()]
    assert len([r for r in log if r["type"] == "eval"]) == 2  # one validation per epoch end


def test_ls_runs_batch_by_a_token_budget_unless_a_batch_size_is_given():
    """The default LS batch is a 256-token budget (time to accuracy, RESULTS.md 2c); an explicit --batch-size
    means examples per batch; instruction tuning keeps 8 examples and its lr 5e-4."""
    c = RunConfig()
    assert c.batching() == ("tokens", 256) and c.learning_rate() == 1e-3
    c.train.batch_size = 16
    assert c.batching() == ("examples", 16)
    c.train.batch_tokens = 512
    assert c.batching() == ("tokens", 512)
    instruct = RunConfig(method="instruct")
    assert instruct.batching() == ("examples", 8) and instruct.learning_rate() == 5e-4


def test_trained_model_is_freed_before_the_best_model_is_loaded(tiny_models, seq_data, tmp_path, monkeypatch):
    """The final evaluation loads the best saved model; the last step's model must be gone by then, or
    both sit in memory together (the peak of `lsllm train`, benchmarks/RESULTS.md section 2). With
    keep_model=True the caller gets the last step's model instead."""
    import weakref

    import lsllm.training.ls as ls
    train_path, dev, _ = seq_data
    c = RunConfig()
    c.data.train, c.data.validation = str(train_path), str(dev)
    c.model.model = str(tiny_models["llama"])
    c.train.max_steps, c.train.eval_every, c.train.batch_size = 2, 1, 8
    built, alive_at_load = [], []
    real_build, real_load = ls.build_model, ls.load_for_inference

    def build(*args, **kwargs):
        model, tokenizer = real_build(*args, **kwargs)
        built.append(weakref.ref(model))
        return model, tokenizer

    def load(*args, **kwargs):
        alive_at_load.append(built[-1]() is not None)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ls, "build_model", build)
    monkeypatch.setattr(ls, "load_for_inference", load)
    c.output = str(tmp_path / "freed")
    assert train(c, progress=False).model is None
    assert alive_at_load == [False]
    c.output = str(tmp_path / "kept")
    kept = train(c, progress=False, keep_model=True).model
    assert kept is built[-1]() and alive_at_load == [False, True]


def test_memory_release_works_on_this_platform():
    """glibc Linux (CI's platform): the arena limit takes effect, and freed heap memory below a live
    allocation (which glibc never returns by itself) goes back to the system."""
    from lsllm.memory import limit_malloc_arenas, release_freed_memory

    if not (sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION")):
        pytest.skip("glibc only")

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024

    assert limit_malloc_arenas()
    chunks = [bytearray(4000) for _ in range(50_000)]  # ~200 MB of heap chunks (below the mmap threshold)
    pin = bytearray(4000)  # a live chunk above them: the heap's top can't shrink past it
    before = rss_mb()
    del chunks
    assert release_freed_memory()
    assert before - rss_mb() > 100, "freed heap pages stayed resident"
    del pin


def test_memory_phases_benchmark_names_every_phase(tiny_models, seq_data, tmp_path):
    """benchmarks/memory_phases.py (RESULTS.md section 2e) on the tiny llama: the run succeeds and every
    phase it reports on was reached (a renamed library function would silently drop its phase)."""
    import subprocess

    train_path, dev, test = seq_data
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "memory_phases.py"
    done = subprocess.run([sys.executable, str(script), "--",
                           *_train_args(tiny_models["llama"], train_path, dev, test, tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and (tmp_path / "run" / "metrics.json").is_file(), done.stderr[-3000:]
    for phase in ["build model", "tokenize", "training steps", "validation", "save best", "free trained model",
                  "load best model", "reports", "whole process"]:
        assert f"\n{phase} " in "\n" + done.stderr, (phase, done.stderr[-3000:])
