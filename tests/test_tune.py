"""`lsllm tune`: an Optuna study of run folders that survives a kill, prunes through the training loop, and never
samples a setting the task can't use."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from lsllm.cli import main
from lsllm.config import RunConfig
from lsllm.errors import ConfigError
from lsllm.training.loop import train
from lsllm.tune import DEFAULT_SPACE, read_tune_config
from test_workflow import seq_data, write_conll  # noqa: F401  (fixture)


def write_config(path, model, data, tune=None, task="seq"):
    train_path, dev, _ = data
    raw = {"data": {"train": str(train_path), "validation": str(dev)},
           "model": {"model": str(model), "task": task},
           "train": {"max_steps": 8, "eval_every": 2, "batch_size": 8}}
    if tune is not None:
        raw["tune"] = tune
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_killed_study_continues_to_the_asked_number_of_trials(tiny_models, seq_data, tmp_path):
    config = write_config(tmp_path / "tune.yaml", tiny_models["llama"], seq_data,
                          {"lr": "loguniform(1e-3, 1e-2)", "bidirectional": [True, False]})
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "lsllm.cli", "tune", str(config), "--trials", "3", "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while not (out / "trials" / "trial-001.incomplete").exists():  # the second trial is training: kill it
        assert proc.poll() is None and time.time() < deadline, "the study ended before its second trial"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "trials" / "trial-000" / "metrics.json").is_file()

    assert main(["tune", str(config), "--trials", "3", "--output", str(out)]) == 0
    import optuna
    study = optuna.load_study(study_name="lsllm", storage=f"sqlite:///{out / 'tune.db'}")
    states = [t.state.name for t in study.trials]
    assert states[1] == "FAIL" and len(states) == 4, states  # the killed trial, then two new ones
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == 3
    assert (out / "trials" / "trial-001.incomplete").is_dir()  # kept as it was, never reused
    for t in study.trials:
        if t.state.name in ("COMPLETE", "PRUNED"):
            run = out / "trials" / f"trial-{t.number:03d}"
            saved = RunConfig.from_yaml(run / "config.yaml")
            assert saved.train.lr == pytest.approx(t.params["train.lr"])
            assert saved.model.bidirectional == t.params["model.bidirectional"]
    best = study.best_trial
    assert RunConfig.from_yaml(out / "best.yaml").to_dict() == \
        RunConfig.from_yaml(out / "trials" / f"trial-{best.number:03d}" / "config.yaml").to_dict()
    assert best.value == json.loads((out / "trials" / f"trial-{best.number:03d}" / "metrics.json").read_text())[
        "validation"]["accuracy"]
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 1 + 4
    assert (out / "trials.md").read_text().startswith("| number |") and (out / "history.png").stat().st_size > 1000


def test_a_trial_stopped_by_the_pruner_is_a_complete_run_up_to_that_step(tiny_models, seq_data, tmp_path):
    """The hook lsllm tune prunes with: returning True at a validation ends training there, reports written."""
    train_path, dev, _ = seq_data
    config = RunConfig()
    config.data.train, config.data.validation, config.model.model = str(train_path), str(dev), str(tiny_models["llama"])
    config.train.max_steps, config.train.eval_every, config.train.batch_size = 8, 2, 8
    config.output = str(tmp_path / "run")
    seen = []
    result = train(config, progress=False, on_validation=lambda step, value: seen.append((step, value)) or step == 4)
    assert [s for s, _ in seen] == [2, 4] and result.metrics["steps"] == 4
    assert (tmp_path / "run" / "model" / "lsllm.json").is_file()


def test_token_tasks_never_sample_pooling(tiny_models, tmp_path):
    conll = [write_conll(tmp_path / f"{s}.conll", 8, k) for k, s in enumerate(["train", "dev", "test"])]
    path = write_config(tmp_path / "t.yaml", tiny_models["llama"], conll, task="token")
    base, space = read_tune_config(path)
    assert space == DEFAULT_SPACE["token"] and not any("pool" in name for name in space)
    path = write_config(tmp_path / "t2.yaml", tiny_models["llama"], conll, {"pooling": ["mean", "max"]}, task="token")
    with pytest.raises(ConfigError, match="tune.model.pooling applies to sequence tasks only"):
        read_tune_config(path)


@pytest.mark.parametrize("tune, message", [
    ({"lr": "loguniform(0, 1e-3)"}, "not a search range"),
    ({"lr": "between 1 and 2"}, "not a search range"),
    ({"lr": []}, "not a search range"),
    ({"learning_rate": [1e-3]}, "not a config field"),
    ("lr", "tune must map config fields"),
])
def test_bad_search_spaces_are_refused_with_the_file_named(tiny_models, seq_data, tmp_path, tune, message, capsys):
    path = write_config(tmp_path / "bad.yaml", tiny_models["llama"], seq_data, tune)
    assert main(["tune", str(path), "--trials", "1", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and not (tmp_path / "out").exists()


def test_an_existing_folder_of_the_users_is_refused(tiny_models, seq_data, tmp_path, capsys):
    path = write_config(tmp_path / "ok.yaml", tiny_models["llama"], seq_data)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["tune", str(path), "--trials", "1", "--output", str(tmp_path / "mine")]) == 2
    assert "not an lsllm tuning folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_retrain_trains_the_best_settings_on_train_and_validation_and_scores_test_once(tiny_models, seq_data,
                                                                                       tmp_path, capsys):
    from lsllm.data.readers import read_examples

    train_path, dev, test = seq_data
    config = write_config(tmp_path / "tune.yaml", tiny_models["llama"], seq_data, {"lr": [3e-3, 1e-2]})
    raw = yaml.safe_load(config.read_text())
    raw["data"]["test"] = str(test)
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "study"
    assert main(["tune", str(config), "--trials", "2", "--output", str(out), "--retrain"]) == 0
    assert "retrained on train + validation" in capsys.readouterr().out
    import optuna
    best = optuna.load_study(study_name="lsllm", storage=f"sqlite:///{out / 'tune.db'}").best_trial
    trial = out / "trials" / f"trial-{best.number:03d}"
    retrained = RunConfig.from_yaml(out / "retrained" / "config.yaml")
    n_train, n_dev = len(read_examples(train_path, "seq")), len(read_examples(dev, "seq"))
    combined = read_examples(retrained.data.train, "seq")
    assert len(combined) == n_train + n_dev and retrained.data.validation is None
    assert retrained.train.lr == pytest.approx(best.params["train.lr"])
    trial_metrics = json.loads((trial / "metrics.json").read_text())
    assert retrained.train.max_steps == round(trial_metrics["best_step"] * (n_train + n_dev) / n_train)
    metrics = json.loads((out / "retrained" / "metrics.json").read_text())
    assert "test" in metrics and "validation" not in metrics
    assert all("test" not in json.loads((t / "metrics.json").read_text()) for t in (out / "trials").iterdir())
    assert json.loads((out / "retrained" / "model" / "lsllm.json").read_text())["labels"] == \
        json.loads((trial / "model" / "lsllm.json").read_text())["labels"]
    before = (out / "retrained" / "metrics.json").stat().st_mtime_ns
    assert main(["tune", str(config), "--trials", "2", "--output", str(out), "--retrain"]) == 0  # nothing to redo
    assert (out / "retrained" / "metrics.json").stat().st_mtime_ns == before


def test_the_first_trial_trains_the_config_as_written_and_the_gain_over_it_is_reported(tiny_models, seq_data,
                                                                                        tmp_path, capsys):
    import optuna

    config = write_config(tmp_path / "tune.yaml", tiny_models["llama"], seq_data)  # the default space
    out = tmp_path / "study"
    assert main(["tune", str(config), "--trials", "2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    study = optuna.load_study(study_name="lsllm", storage=f"sqlite:///{out / 'tune.db'}")
    first = study.trials[0]
    # lsllm's defaults for a causal decoder's sequence task, resolved from the unset fields
    assert first.params == {"train.lr": 1e-3, "model.lora_rank": 12, "model.bidirectional": False,
                            "model.pooling": "last"} and first.user_attrs["as_written"]
    plain = RunConfig.from_yaml(config)
    plain.output = str(tmp_path / "plain")
    assert train(plain, progress=False).metrics["validation"]["accuracy"] == first.value  # = `lsllm train CONFIG`
    gain = f"best trial {study.best_trial.number}: {study.best_value:.4f} ({study.best_value - first.value:+.4f})"
    assert gain in printed and gain in (out / "trials.md").read_text()


def test_a_config_outside_its_own_space_is_not_run_as_the_first_trial(tiny_models, seq_data, tmp_path):
    import optuna

    config = write_config(tmp_path / "tune.yaml", tiny_models["llama"], seq_data, {"lr": "loguniform(2e-3, 1e-2)"})
    assert main(["tune", str(config), "--trials", "1", "--output", str(tmp_path / "study")]) == 0
    trial = optuna.load_study(study_name="lsllm", storage=f"sqlite:///{tmp_path / 'study' / 'tune.db'}").trials[0]
    assert 2e-3 <= trial.params["train.lr"] <= 1e-2 and "as_written" not in trial.user_attrs


def test_a_retrained_run_below_its_trial_on_the_examples_it_saw_is_flagged(tiny_models, seq_data, tmp_path):
    """The retrained run has no validation split, so a diverged one (e.g. collapsed into one class) would go
    unnoticed: it is scored on the validation examples it trained on and flagged when below its trial."""
    from lsllm.tune import check_retrained

    config = write_config(tmp_path / "tune.yaml", tiny_models["llama"], seq_data, {"lr": [3e-3]})
    out = tmp_path / "study"
    assert main(["tune", str(config), "--trials", "1", "--output", str(out), "--retrain"]) == 0
    seen = json.loads((out / "retrained" / "eval_seen_validation.json").read_text())
    assert seen["n"] == 16  # the dev file's rows
    with pytest.warns(RuntimeWarning, match="probably diverged"):
        check_retrained(out / "retrained", out / "validation.jsonl", seen["accuracy"] + 0.05, "trial-000")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_retrained(out / "retrained", out / "validation.jsonl", seen["accuracy"], "trial-000")
