"""Predict with a trained model: label strings (and probabilities) for texts, tags and entities for sentences."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lsllm.data.labels import LabelSet
from lsllm.data.readers import read_examples, read_texts
from lsllm.data.records import DataError, SeqExample, TokenExample
from lsllm.evaluate import predict_examples
from lsllm.files import check_writable
from lsllm.model.build import load_model
from lsllm.model.spec import ModelSpec
from lsllm.spans import split_words, tags_to_entities
from lsllm.writers import write_predictions


def prediction_rows(examples, evaluation, labels: LabelSet, texts: list[str] | None = None) -> list[dict]:
    """One JSON-able row per example: label + every label's probability, or tags per word (+ entities)."""
    rows = []
    for i, (example, pred, probs) in enumerate(zip(examples, evaluation.predictions, evaluation.probabilities)):
        if isinstance(example, SeqExample):
            row = {"text": example.text}
            if example.text_pair is not None:
                row["text_pair"] = example.text_pair
            row["label"] = pred
            row["probs"] = {name: round(float(p), 6) for name, p in zip(labels.names, probs)}
            if example.label is not None:
                row["gold"] = example.label
        else:
            scores = [float(p.max()) for p in probs] if len(probs) else []
            row = {"tokens": example.tokens, "tags": pred, "scores": [round(s, 6) for s in scores]}
            if example.tags is not None:
                row["gold"] = example.tags
            text = texts[i] if texts is not None else None
            if text is not None:
                row = {"text": text, **row}
            row["entities"] = [e.to_dict() for e in tags_to_entities(example.tokens, pred, scores, text)]
        rows.append(row)
    return rows


def load_for_inference(model_dir: str | Path, precision: str = "auto", device: str | None = None):
    """The inference path shared by `predict`, `eval` and the end of training. Under bf16 autocast a
    LoRA model keeps its frozen weights in bf16 with LoRA unmerged, exactly as it was trained and
    validated, so reported metrics equal the best validation step. (Merging LoRA into bf16 weights
    rounds differently; `lsllm export --merge` merges in float32.)"""
    import torch

    from lsllm.evaluate import autocast_dtype

    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = autocast_dtype(precision, target)
    model, tokenizer = load_model(Path(model_dir), frozen_dtype=dtype)
    return model.to(target), tokenizer


class Predictor:
    """A loaded model that predicts labels for raw strings or files.

    >>> p = Predictor("runs/sst2/model")
    >>> p.predict(["a gorgeous, witty film"])   # doctest: +SKIP
    ['positive']
    """

    def __init__(self, model_dir: str | Path, device: str | None = None, batch_size: int = 32,
                 precision: str = "auto"):
        self.model, self.tokenizer = load_for_inference(model_dir, precision, device)
        self.spec = self.model.spec
        self.labels = LabelSet(self.spec.labels)
        self.batch_size, self.precision = batch_size, precision

    def predict(self, texts: list[str]) -> list:
        """Label strings for texts (sequence tasks) or tag lists for texts split into words (token tasks)."""
        return [r["label"] if "label" in r else r["tags"] for r in self.predict_rows(texts)]

    def predict_rows(self, texts: list[str]) -> list[dict]:
        if self.spec.task == "token":
            examples = [TokenExample(tokens=split_words(t), source=f"text {i + 1}") for i, t in enumerate(texts)]
            keep = [i for i, e in enumerate(examples) if e.tokens]
            rows = self.rows([examples[i] for i in keep], [texts[i] for i in keep])
            by_index = dict(zip(keep, rows))
            return [by_index.get(i, {"text": t, "tokens": [], "tags": [], "scores": [], "entities": []})
                    for i, t in enumerate(texts)]
        return self.rows([SeqExample(text=t) for t in texts])

    def predict_file(self, path: str | Path, **columns) -> list[dict]:
        """Rows for every example of a file in any training format (labels optional)."""
        return self.rows(read_prediction_input(path, self.spec.task, **columns))

    def rows(self, examples, texts=None) -> list[dict]:
        """Prediction rows for read examples. Gold labels the model does not know are kept in the rows
        but not scored (a file may carry labels of its own)."""
        if not examples:
            return []
        evaluation = predict_examples(self.model, self.tokenizer, strip_unknown_gold(examples, self.labels),
                                      self.labels, self.batch_size, self.precision)
        return prediction_rows(examples, evaluation, self.labels, texts)


def strip_unknown_gold(examples: list, labels: LabelSet) -> list:
    """The examples as they are when every gold label is known; else copies without labels."""
    known = all((e.label in labels if isinstance(e, SeqExample) else all(t in labels for t in e.tags))
                for e in examples if (e.label if isinstance(e, SeqExample) else e.tags) is not None)
    return examples if known else [dataclasses.replace(e, **({"label": None} if isinstance(e, SeqExample)
                                                            else {"tags": None})) for e in examples]


def read_prediction_input(path: str | Path, task: str, **columns) -> list:
    """The examples of a prediction input file (labels optional), checked like training data."""
    if task == "token":
        return read_examples(path, "token", require_labels=False, **columns)
    return read_texts(path, **columns)


def check_texts(texts: list[str]) -> None:
    for i, text in enumerate(texts, start=1):
        if not text.strip():
            raise DataError(f"--text {i} is empty; pass the text to classify")
        if "\x00" in text:
            raise DataError(f"--text {i} contains a NUL byte; pass plain text")


def predict(model_dir: str | Path, texts: list[str] | None = None, input: str | Path | None = None,
            output: str | Path | None = None, **columns) -> list[dict]:
    """`lsllm predict`: rows for raw texts or a file; written to `output` (JSONL or CSV) when given.
    Prompting runs (zero-shot, few-shot, instruct) predict with their saved prompt (and adapter).
    Inputs and the output location are checked before the model loads."""
    from lsllm.prompt_predict import PromptPredictor, is_prompt_run, read_prompt_task

    prompt_run = is_prompt_run(model_dir)
    task = read_prompt_task(model_dir) if prompt_run else ModelSpec.load(model_folder(model_dir)).task
    examples = None
    if texts is not None:
        check_texts(texts)
    else:
        examples = read_prediction_input(input, task, **columns)
    if output is not None:
        if input is not None and Path(output).resolve() == Path(input).resolve():
            raise DataError(f"--output {output} is the input file; write predictions to a new file")
        check_writable(output)
    predictor = PromptPredictor(model_dir) if prompt_run else Predictor(model_folder(model_dir))
    rows = predictor.predict_rows(texts) if texts is not None else predictor.rows(examples)
    if output is not None:
        write_predictions(output, rows)
    return rows


def model_folder(path: str | Path) -> Path:
    """Accept a run folder (uses its model/) or a model folder."""
    path = Path(path)
    return path / "model" if (path / "model" / "lsllm.json").is_file() else path
