"""`lsllm eval`: score a trained run (any method) on a labelled file and write `eval_<split>.json`."""
from __future__ import annotations

import re
from pathlib import Path

from lsllm.data.labels import LabelSet, check_labels
from lsllm.data.readers import read_examples
from lsllm.errors import ConfigError
from lsllm.files import check_writable, write_json_atomic


def evaluate_run(run: str | Path, data: str | Path, split_name: str = "test", **columns) -> tuple[dict, Path]:
    """Score a trained model on a labelled file; write `<run>/eval_<split_name>.json`; return metrics and path.
    The data, labels and output are checked before the model loads."""
    from lsllm.predict import load_predictor, run_info

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", split_name):
        raise ConfigError(f"--split-name {split_name!r} must be a plain name (letters, digits, _ . -), "
                          "since it names the file eval_<name>.json in the run folder")
    task, labels, folder = run_info(run)
    examples = read_examples(data, task, **{k: v for k, v in columns.items() if v is not None})
    check_labels(LabelSet(labels), examples, split_name)
    path = folder / f"eval_{split_name}.json"
    check_writable(path)
    result = load_predictor(run).evaluate(examples)
    metrics = {"task": task, "data": str(data), **result.scores()}
    write_json_atomic(path, metrics)
    return metrics, path
