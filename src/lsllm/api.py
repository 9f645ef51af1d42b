"""Library functions behind `lsllm eval` and `lsllm demo` (training lives in training/loop.py)."""
from __future__ import annotations

import re
from collections import Counter
from importlib import resources
from pathlib import Path

from lsllm.config import ConfigError, RunConfig
from lsllm.data.labels import LabelSet, check_labels
from lsllm.data.readers import read_examples
from lsllm.evaluate import predict_examples
from lsllm.files import check_writable, write_json_atomic
from lsllm.model.spec import ModelSpec
from lsllm.predict import model_folder, load_for_inference


def evaluate_run(run: str | Path, data: str | Path, split_name: str = "test", **columns) -> tuple[dict, Path]:
    """Score a trained model on a labelled file; write `<run>/eval_<split_name>.json`; return metrics and path.
    The data, labels and output are checked before the model loads."""
    from lsllm.prompt_predict import is_prompt_run

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", split_name):
        raise ConfigError(f"--split-name {split_name!r} must be a plain name (letters, digits, _ . -), "
                          "since it names the file eval_<name>.json in the run folder")
    if is_prompt_run(run):
        return _evaluate_prompt_run(Path(run), data, split_name, **columns)
    folder = model_folder(run)
    spec = ModelSpec.load(folder)
    labels = LabelSet(spec.labels)
    columns = {k: v for k, v in columns.items() if v is not None}
    examples = read_examples(data, spec.task, **columns)
    check_labels(labels, examples, split_name)
    target = Path(run) if folder != Path(run) else folder
    path = target / f"eval_{split_name}.json"
    check_writable(path)
    model, tokenizer = load_for_inference(folder)
    result = predict_examples(model, tokenizer, examples, labels)
    metrics = {"task": spec.task, "data": str(data), **result.metrics, "loss": result.loss}
    write_json_atomic(path, metrics)
    return metrics, path


def _evaluate_prompt_run(run: Path, data, split_name: str, **columns) -> tuple[dict, Path]:
    from lsllm.prompt_predict import PromptPredictor, read_prompt_labels, read_prompt_task, score_outputs

    examples = read_examples(data, read_prompt_task(run), **{k: v for k, v in columns.items() if v is not None})
    check_labels(LabelSet(read_prompt_labels(run)), examples, split_name)
    check_writable(run / f"eval_{split_name}.json")
    predictor = PromptPredictor(run)
    out = predictor.run(examples)
    scores = score_outputs(predictor.task, examples, out, predictor.labels)
    metrics = {"task": predictor.task, "data": str(data), **scores, "invalid": out["invalid"]}
    path = run / f"eval_{split_name}.json"
    write_json_atomic(path, metrics)
    return metrics, path


def demo_data() -> tuple[Path, Path]:
    """The bundled Twitter financial-news sample (MIT): train.csv and validation.csv."""
    root = Path(str(resources.files("lsllm") / "assets" / "tfns_sample"))
    return root / "train.csv", root / "validation.csv"


def demo_config(output: str | Path, max_steps: int | None = None) -> RunConfig:
    train, validation = demo_data()
    config = RunConfig()
    config.data.train, config.data.validation = str(train), str(validation)
    config.model.model, config.model.task, config.model.bidirectional = "smollm2-135m", "seq", True
    config.train.eval_every = 100
    config.train.max_steps = max_steps
    config.output = str(output)
    return config


def run_demo(output: str | Path, max_steps: int | None = None) -> tuple[dict, Path]:
    """Train the default decoder (LS-un) on the bundled sample; metrics include the majority baseline."""
    from lsllm.training.loop import train

    config = demo_config(output, max_steps)
    result = train(config)
    train_examples = read_examples(config.data.train, "seq")
    val_examples = read_examples(config.data.validation, "seq")
    majority = Counter(e.label for e in train_examples).most_common(1)[0][0]
    metrics = dict(result.metrics)
    metrics["majority_baseline"] = sum(e.label == majority for e in val_examples) / len(val_examples)
    write_json_atomic(result.run_dir / "metrics.json", metrics)
    return metrics, result.run_dir
