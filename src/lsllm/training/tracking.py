"""`--report-to`: log.jsonl's records also sent to TensorBoard, MLflow or Weights & Biases.

Through accelerate's tracker classes, on rank 0 only (the process that writes log.jsonl). What each receives:
the resolved config as hyper-parameters at the start; `train/loss`, `train/lr`, `train/tokens_per_s` at every
logging step; `validation/<metric>` and `validation/loss` at every evaluation; the final validation and test
metrics (`final/<split>/<metric>`, those of metrics.json) at the end. Where they write:
- tensorboard: `<run>/tensorboard/` inside the run folder, so it moves with the run (`tensorboard --logdir runs/`
  shows every run in runs/).
- mlflow: the store MLFLOW_TRACKING_URI names; without it, a local SQLite store `mlflow.db` beside the run folder
  (`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`), experiment "lsllm", run name = the run folder's name.
- wandb: wandb's own settings (project "lsllm"), its files in `<run>/wandb/`; WANDB_MODE=offline logs without a network.
After `--resume`, the steps between the last checkpoint and the kill are sent again (log.jsonl is cut back to the
checkpoint; a tracker's history can't be), and MLflow and W&B record the continuation as a new run.
"""
from __future__ import annotations

import os
from pathlib import Path

from lsllm.config import RunConfig

PROJECT = "lsllm"
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def check_reporter(kind: str) -> None:
    """Before anything is written: the tracker's package must be installed."""
    import importlib.util

    if kind != "none" and importlib.util.find_spec(PACKAGES[kind]) is None:
        from lsllm.errors import ConfigError

        raise ConfigError(f"--report-to {kind} needs the {kind} package, which is not installed: "
                          "pip install 'lsllm[tracking]' (setup.sh installs it)")


class Reporter:
    """One tracker of accelerate's, started after the run folder exists and finished before it is renamed."""

    def __init__(self, kind: str, config: RunConfig, work: Path, output: Path):
        from accelerate import tracking

        name = output.name
        if kind == "tensorboard":
            self.tracker = tracking.TensorBoardTracker(".", logging_dir=work / "tensorboard")
        elif kind == "mlflow":
            import mlflow

            if not os.environ.get("MLFLOW_TRACKING_URI"):
                # MLflow 3 refuses new file stores: a SQLite store, as its own docs recommend.
                mlflow.set_tracking_uri(f"sqlite:///{output.parent.resolve() / 'mlflow.db'}")
            self.tracker = tracking.MLflowTracker(experiment_name=PROJECT, run_name=name)
        elif kind == "wandb":
            self.tracker = tracking.WandBTracker(PROJECT, name=name, dir=str(work))
        else:
            raise ValueError(kind)
        self.tracker.start()
        self.tracker.store_init_configuration(hyperparameters(config))

    def log(self, record: dict) -> None:
        values = _values(record)
        if values:
            self.tracker.log(values, step=record["step"])

    def finish(self, metrics: dict) -> None:
        final = {f"final/{split}/{key}": value for split in ("validation", "test")
                 for key, value in (metrics.get(split) or {}).items() if _number(value)}
        final.update({f"final/{key}": metrics[key] for key in ("best_step", "train_time_s", "train_tokens")
                      if _number(metrics.get(key))})
        if final:
            self.tracker.log(final, step=metrics.get("steps", 0))
        self.tracker.finish()


def hyperparameters(config: RunConfig) -> dict:
    """The config as flat `section.field` values the trackers accept (None and lists as text)."""
    from lsllm.training.resume import flatten

    return {name: value if isinstance(value, (bool, int, float, str)) else
            ",".join(map(str, value)) if isinstance(value, list) else str(value)
            for name, value in flatten(config.to_dict()).items()}


def _values(record: dict) -> dict:
    if record.get("type") == "train":
        return {f"train/{k}": record[k] for k in ("loss", "lr", "tokens_per_s") if _number(record.get(k))}
    if record.get("type") == "eval":
        values = {f"validation/{k}": v for k, v in (record.get("metrics") or {}).items() if _number(v)}
        if _number(record.get("loss")):
            values["validation/loss"] = record["loss"]
        return values
    return {}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
