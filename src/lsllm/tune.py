"""`lsllm tune`: search a run's settings with Optuna; every trial is an ordinary run folder.

    lsllm tune CONFIG.yaml --trials 20 --output runs/tune-sst2 [--timeout SECONDS] [--storage URL]

CONFIG is an `lsllm train` YAML (data, model, train) plus an optional `tune:` section, the search space:

    tune:
      lr: loguniform(1e-4, 3e-3)        # or uniform(a, b), int(a, b), or a list of choices
      lora_rank: [8, 16, 32]
      bidirectional: [true, false]
      pooling: [last, mean, max]        # sequence tasks only

Names are config fields (`lr`, or `train.lr` where a name is ambiguous). Without a `tune:` section the task's
default space (DEFAULT_SPACE) is searched. Each trial trains `OUTPUT/trials/trial-NNN` with the sampled values
over CONFIG, reports the main validation metric after every evaluation, and is stopped early (pruned, its run
folder still complete) when Optuna's median pruner finds it behind the trials before it. The first trial trains
the config as written (lsllm's defaults where the YAML leaves a sampled field unset), so every study reports what
tuning gained over it; it is skipped when one of those values lies outside the space. The study lives in
`OUTPUT/tune.db` (SQLite): run the same command again after a kill and it goes on, with the trial that was
running marked failed (its folder stays as `trial-NNN.incomplete`, which the next trials never reuse). At the
end: `best.yaml` (the best trial's full config), `trials.csv` and `trials.md`, `history.png` and, with at least
two finished trials, `importance.png`. With `retrain=True` (`--retrain`) the best settings are then trained once
more on train + validation (`OUTPUT/retrained`), and the test split, if any, is scored once, by that model.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import fields
from pathlib import Path

import yaml

from lsllm.config import SECTIONS, RunConfig
from lsllm.errors import ConfigError
from lsllm.files import output_lock, write_text_atomic

DEFAULT_SPACE = {
    "seq": {"train.lr": "loguniform(2e-4, 3e-3)", "model.lora_rank": [8, 12, 16],
            "model.bidirectional": [False, True], "model.pooling": ["last", "mean", "max"]},
    "token": {"train.lr": "loguniform(2e-4, 3e-3)", "model.lora_rank": [8, 12, 16], "model.bidirectional": [True, False]},
}
TOKEN_ONLY_REFUSED = ("model.pooling", "model.pool_over")
_RANGE = re.compile(r"^\s*(loguniform|uniform|int)\s*\(\s*([^,]+?)\s*,\s*([^)]+?)\s*\)\s*$")


def read_tune_config(path: str | Path) -> tuple[RunConfig, dict[str, object]]:
    """The base run config and the search space (dotted field -> spec) of a tune YAML."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        RunConfig.from_yaml(path)  # raises the clear error for a missing, non-UTF-8 or invalid file
        raise
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with data/model/train sections (and tune)")
    space_raw = raw.pop("tune", None)
    base = RunConfig.from_dict(raw, str(path))
    if space_raw is not None and (not isinstance(space_raw, dict) or not space_raw):
        raise ConfigError(f"{path}: tune must map config fields to search ranges, e.g. lr: loguniform(1e-4, 3e-3)")
    space = {_field(name, path): spec for name, spec in (space_raw or DEFAULT_SPACE[base.model.task]).items()}
    for name, spec in space.items():
        _check_spec(name, spec, path)
        if base.model.task == "token" and name in TOKEN_ONLY_REFUSED:
            raise ConfigError(f"{path}: tune.{name} applies to sequence tasks only (token tasks label every word)")
    return base, space


def _field(name: str, path: Path) -> str:
    if "." in name:
        section, _, key = name.partition(".")
        if section in SECTIONS and key in {f.name for f in fields(SECTIONS[section])}:
            return name
    else:
        found = [f"{s}.{name}" for s, klass in SECTIONS.items() if name in {f.name for f in fields(klass)}]
        if len(found) == 1:
            return found[0]
        if found:
            raise ConfigError(f"{path}: tune.{name} is ambiguous: write one of {', '.join(found)}")
    raise ConfigError(f"{path}: tune.{name} is not a config field (e.g. lr, lora_rank, bidirectional, pooling)")


def _check_spec(name: str, spec, path: Path) -> None:
    if isinstance(spec, list) and spec and all(isinstance(v, (str, int, float, bool)) for v in spec):
        return
    if isinstance(spec, str) and (m := _RANGE.match(spec)):
        try:
            low, high = float(m.group(2)), float(m.group(3))
        except ValueError:
            low = high = None
        if low is not None and low < high and (m.group(1) != "loguniform" or low > 0):
            return
    raise ConfigError(f"{path}: tune.{name}: {spec!r} is not a search range: use loguniform(low, high), "
                      "uniform(low, high), int(low, high) with low < high, or a list of choices")


def sample(trial, space: dict[str, object]) -> dict[str, object]:
    values = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            values[name] = trial.suggest_categorical(name, spec)
            continue
        kind, low, high = _RANGE.match(spec).groups()
        if kind == "int":
            values[name] = trial.suggest_int(name, int(float(low)), int(float(high)))
        else:
            values[name] = trial.suggest_float(name, float(low), float(high), log=kind == "loguniform")
    return values


def starting_values(base: RunConfig, space: dict[str, object]) -> dict[str, object] | None:
    """The values `base` trains with for the sampled fields, its unset ones resolved to lsllm's defaults; None when
    one lies outside the space (the study then starts from sampled values only)."""
    values = {}
    for name, spec in space.items():
        section, _, key = name.partition(".")
        value = getattr(getattr(base, section), key)
        if value is None:
            value = _default(base, name)
        inside = value in spec if isinstance(spec, list) else value is not None and _in_range(spec, value)
        if not inside:
            return None
        values[name] = value
    return values


def _default(base: RunConfig, name: str):
    """What training picks for an unset field the default spaces sample (None for other fields)."""
    if name == "train.lr":
        return base.learning_rate()
    if name == "train.batch_tokens":
        kind, size = base.batching()
        return size if kind == "tokens" else None
    if name in ("model.lora_rank", "model.lora_alpha"):
        from lsllm.model.lora import DEFAULT_ALPHA, DEFAULT_RANK

        return DEFAULT_RANK if name == "model.lora_rank" else DEFAULT_ALPHA
    if name in ("model.bidirectional", "model.pooling"):
        from transformers import AutoConfig

        from lsllm.model.build import is_encoder
        from lsllm.model.pooling import default_bidirectional, default_pooling
        from lsllm.model.sources import resolve_source

        encoder = is_encoder(AutoConfig.from_pretrained(resolve_source(base.model.model)))
        bidirectional = base.model.bidirectional
        if bidirectional is None:
            bidirectional = default_bidirectional(base.model.task, encoder)
        return bidirectional if name == "model.bidirectional" else default_pooling(bidirectional, encoder)
    return None


def _in_range(spec: str, value) -> bool:
    kind, low, high = _RANGE.match(spec).groups()
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(low) <= value <= float(high) \
        and (kind != "int" or float(value).is_integer())


def trial_config(base: RunConfig, values: dict[str, object], output: Path) -> RunConfig:
    config = copy.deepcopy(base)
    for name, value in values.items():
        section, _, key = name.partition(".")
        setattr(getattr(config, section), key, value)
    config.data.test = None  # trials are compared on validation; test is scored once, by the retrained model
    config.output = str(output)
    config.validate()
    return config


def tune(config_path: str | Path, output: str | Path, trials: int, timeout: float | None = None,
         storage: str | None = None, progress: bool = False, retrain: bool = False):
    """Run (or continue) the study until it holds `trials` finished trials; write its reports; with `retrain`,
    train the best settings on train + validation (see retrain_best); return the study."""
    base, space = read_tune_config(config_path)
    if not base.data.validation:
        raise ConfigError(f"{config_path}: tuning needs a validation split (data.validation): trials are compared "
                          "on it, never on test")
    output = Path(output)
    if output.exists() and not (output / "tune.db").exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"--output {output} exists and is not an lsllm tuning folder (no tune.db); choose a new "
                          "folder (lsllm never writes into a folder of yours)")
    with output_lock(output, "tuning folder"):  # one `lsllm tune` per folder: RUNNING trials are then stale
        study = _tune(base, space, output, trials, timeout, storage, progress)
        if retrain:
            retrain_best(study, output, progress, test=base.data.test)
        return study


RETRAINED = "retrained"
COMBINED = "train+validation.jsonl"
TEST = "test.jsonl"


def retrain_best(study, output: Path, progress: bool = False, number: int | None = None, name: str = RETRAINED,
                 test: str | None = None) -> Path:
    """The best trial's settings (trial `number`'s if given) trained again on its train + validation examples, into
    OUTPUT/retrained (OUTPUT/name), then scored on `test` (the tune config's test split; trials never read it).

    There is no validation split left to pick a checkpoint with, so the run stops where the best trial's
    validation peaked, in epochs: best_step x (train + validation) / train steps. Labels keep the trial's order.
    Then check_retrained flags a run that diverged. Run again after a kill, it resumes the interrupted run; a
    finished one is kept as it is."""
    from optuna.trial import TrialState

    from lsllm.training.loop import read_splits, train

    folder = output / name
    if folder.is_dir():
        return folder  # done before (the study's best can't have changed: this is after its last trial)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"no trial of {output} completed, so there is no best setting to retrain; run more "
                          "trials (--trials) first")
    best = output / "trials" / f"trial-{study.best_trial.number if number is None else number:03d}"
    config = RunConfig.from_yaml(best / "config.yaml")
    trial_metrics = json.loads((best / "metrics.json").read_text(encoding="utf-8"))
    best_step = trial_metrics["best_step"]
    config.data.test = test
    splits = read_splits(config)
    examples = splits.train + splits.validation
    # Both splits in lsllm's own JSON Lines (whatever their files' formats and columns), the test split too.
    _write_examples(output / COMBINED, examples)
    d, t = config.data, config.train
    if splits.test is not None:
        d.test = str(_write_examples(output / TEST, splits.test))
    d.train, d.validation, d.format, d.header = str(output / COMBINED), None, "jsonl", None
    d.text_column = d.text_pair_column = d.label_column = d.token_column = d.tag_column = None
    d.labels = list(splits.labels.names)
    t.max_steps = max(1, round(best_step * len(examples) / len(splits.train)))
    t.target_metric = t.early_stopping = None  # they need a validation split
    config.output = str(folder)
    config.validate()
    train(config, progress=progress, resume=folder.with_name(folder.name + ".incomplete").is_dir())
    check_retrained(folder, _write_examples(output / SEEN, splits.validation),
                    trial_metrics["validation"][trial_metrics["main_metric"]], best.name)
    return folder


SEEN = "validation.jsonl"
COLLAPSE_MARGIN = 0.02


def check_retrained(folder: Path, seen: Path, trial_value: float, trial: str) -> dict:
    """There is no validation split left to catch a retrained run that diverged (a high learning rate can fall
    into predicting one class on another data order), so score it on the validation examples it trained on: it
    should beat the trial that never saw them. If it is COLLAPSE_MARGIN or more below, warn. The scores are in
    `folder/eval_seen_validation.json` (never the test split: that stays scored once)."""
    import warnings

    from lsllm.evaluate import evaluate_run
    from lsllm.metrics import MAIN_METRIC

    metrics, _ = evaluate_run(folder, seen, split_name="seen_validation")
    value = metrics[MAIN_METRIC[metrics["task"]]]
    if value < trial_value - COLLAPSE_MARGIN:
        warnings.warn(f"{folder} scores {value:.4f} on the validation examples it was trained on, below {trial} "
                      f"({trial_value:.4f}) which never saw them: the retrained run probably diverged (e.g. into one "
                      f"class); use {trial}'s model, or retrain with a lower lr or another seed", RuntimeWarning,
                      stacklevel=2)
    return metrics


def _write_examples(path: Path, examples: list) -> Path:
    write_text_atomic(path, "".join(json.dumps(_row(e), ensure_ascii=False) + "\n" for e in examples))
    return path


def _row(example) -> dict:
    """An example as lsllm's JSON Lines input reads it back."""
    if hasattr(example, "tokens"):
        return {"tokens": example.tokens, "tags": example.tags}
    row = {"text": example.text, "label": example.label}
    return row | ({"text_pair": example.text_pair} if example.text_pair is not None else {})


def _tune(base: RunConfig, space: dict, output: Path, trials: int, timeout: float | None, storage: str | None,
          progress: bool):
    import optuna

    from lsllm.training.loop import train

    (output / "trials").mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(output / 'tune.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="lsllm", storage=storage, direction="maximize", load_if_exists=True,
                                # seeded by the trials so far, so a continued study does not redraw the first ones
                                sampler=optuna.samplers.TPESampler(seed=base.train.seed + _count(output, storage)),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    _fail_interrupted(study)
    if not study.trials:
        start = starting_values(base, space)
        if start is not None:
            study.enqueue_trial(start, user_attrs={"as_written": True})

    def objective(trial):
        folder = output / "trials" / f"trial-{trial.number:03d}"
        config = trial_config(base, sample(trial, space), folder)
        pruned = []

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            if trial.should_prune():
                pruned.append(step)
                return True
            return False

        result = train(config, progress=progress, on_validation=report)
        trial.set_user_attr("run", str(folder))
        trial.set_user_attr("train_time_s", result.metrics.get("train_time_s"))
        value = result.metrics["validation"][result.metrics["main_metric"]]
        if pruned:
            raise optuna.TrialPruned(f"stopped at step {pruned[0]}")
        return value

    from optuna.trial import TrialState

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if trials > done:
        study.optimize(objective, n_trials=trials - done, timeout=timeout)
    write_reports(study, output)
    return study


def _count(output: Path, storage: str) -> int:
    """Trials already in the study (0 for a new one), read before the sampler is made."""
    import optuna

    try:
        return len(optuna.load_study(study_name="lsllm", storage=storage).trials)
    except KeyError:  # no such study yet
        return 0


def _fail_interrupted(study) -> None:
    """Trials left RUNNING by a killed `lsllm tune` (only one runs per output: its folder is locked)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


def write_reports(study, output: Path) -> None:
    from optuna.trial import TrialState

    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    frame.to_csv(output / "trials.csv.tmp", index=False)
    (output / "trials.csv.tmp").replace(output / "trials.csv")
    header = [str(c) for c in frame.columns]
    rows = ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    gain = gain_line(study)
    write_text_atomic(output / "trials.md", "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                                                       *rows]) + "\n" + (f"\n{gain}\n" if gain else ""))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        run = output / "trials" / f"trial-{best.number:03d}"  # not the stored path: the cwd may differ on resume
        write_text_atomic(output / "best.yaml", f"# best trial: {best.number}, validation {best.value:.4f}, "
                                                f"run folder {run}\n" + (run / "config.yaml").read_text())
    _plots(study, output, len(complete))


def gain_line(study) -> str | None:
    """The best trial against the first one (the config as written), on validation; None until both are known."""
    from optuna.trial import TrialState

    start = next((t for t in study.trials if t.user_attrs.get("as_written")), None)
    if start is None or start.state != TrialState.COMPLETE:
        return None
    best = study.best_trial
    return (f"Trial {start.number} trained the config as written: validation {start.value:.4f}; best trial "
            f"{best.number}: {best.value:.4f} ({best.value - start.value:+.4f}).")


def _plots(study, output: Path, complete: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as vis


    plots = [("history.png", vis.plot_optimization_history)]
    if complete >= 2 and study.trials[0].params:
        plots.append(("importance.png", vis.plot_param_importances))
    for name, plot in plots:
        try:
            with warnings.catch_warnings():  # "experimental": a note on the plots' interface, not on the study
                warnings.simplefilter("ignore", ExperimentalWarning)
                axes = plot(study)
        except (ValueError, RuntimeError):  # e.g. importances when every trial sampled the same values
            continue
        axes.figure.savefig(output / name, dpi=120, bbox_inches="tight")
        plt.close(axes.figure)
