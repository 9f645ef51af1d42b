"""`lsllm predict` and the Python `Predictor`: label strings (and probabilities) for texts, tags and entities
for sentences, from any run folder (LS model folders, merged exports and prompting runs)."""
from __future__ import annotations

from pathlib import Path

from lsllm.data.labels import LabelSet
from lsllm.data.readers import read_examples, read_texts
from lsllm.data.records import SeqExample, TokenExample
from lsllm.errors import DataError
from lsllm.files import check_writable
from lsllm.inference.batched import Evaluation, predict_examples
from lsllm.inference.loading import load_for_inference, model_folder
from lsllm.inference.rows import prediction_rows, strip_unknown_gold
from lsllm.model.spec import ModelSpec
from lsllm.spans import split_words
from lsllm.writers import write_predictions


class Predictor:
    """A loaded model that predicts labels for raw strings or files.

    >>> p = Predictor("runs/sst2/model")
    >>> p.predict(["a gorgeous, witty film"])   # doctest: +SKIP
    ['positive']
    """

    def __init__(self, model_dir: str | Path, device: str | None = None, batch_size: int = 32,
                 precision: str = "auto"):
        self.model, self.tokenizer = load_for_inference(model_folder(model_dir), precision, device)
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

    def evaluate(self, examples: list) -> Evaluation:
        """Predictions for read examples, scored when they are labelled."""
        return predict_examples(self.model, self.tokenizer, examples, self.labels, self.batch_size, self.precision)

    def rows(self, examples, texts=None) -> list[dict]:
        """Prediction rows for read examples. Gold labels the model does not know are kept in the rows
        but not scored (a file may carry labels of its own)."""
        if not examples:
            return []
        return prediction_rows(examples, self.evaluate(strip_unknown_gold(examples, self.labels)), self.labels, texts)


def load_predictor(run: str | Path):
    """The predictor for a run folder, model folder or export: LS models or prompting runs."""
    from lsllm.prompting.predictor import PromptPredictor, is_prompt_run

    return PromptPredictor(run) if is_prompt_run(run) else Predictor(run)


def run_info(run: str | Path) -> tuple[str, list[str], Path]:
    """(task, labels, the folder where eval files go) of a run, read without loading any model."""
    from lsllm.prompting.predictor import is_prompt_run, read_prompt_info

    if is_prompt_run(run):
        info = read_prompt_info(run)
        return info["task"], info["labels"], Path(run)
    spec = ModelSpec.load(model_folder(run))
    return spec.task, spec.labels, Path(run)


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
    task = run_info(model_dir)[0]
    examples = None
    if texts is not None:
        check_texts(texts)
    else:
        examples = read_prediction_input(input, task, **columns)
    if output is not None:
        if input is not None and Path(output).resolve() == Path(input).resolve():
            raise DataError(f"--output {output} is the input file; write predictions to a new file")
        check_writable(output)
    predictor = load_predictor(model_dir)
    rows = predictor.predict_rows(texts) if texts is not None else predictor.rows(examples)
    if output is not None:
        write_predictions(output, rows)
    return rows


__all__ = ["Predictor", "predict", "load_predictor", "load_for_inference", "model_folder", "prediction_rows"]
