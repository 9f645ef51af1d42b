"""A prompting run's folder as a predictor (`--method zero-shot | few-shot | instruct`): `prompt.json` records
the base model, labels, resolved prompt settings and the few-shot examples shown, and instruct runs add
their LoRA adapter (`model/adapter`), so `lsllm predict` and `lsllm eval` reproduce the run's predictions
without its training data."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lsllm.data.labels import LabelSet
from lsllm.data.records import SeqExample, TokenExample
from lsllm.errors import ModelSourceError
from lsllm.files import is_inside, read_json_object, write_json_atomic
from lsllm.inference.batched import Evaluation
from lsllm.inference.precision import model_autocast
from lsllm.inference.rows import prediction_rows, strip_unknown_gold
from lsllm.prompting.config import PromptConfig
from lsllm.prompting.predict import predict_zero_shot
from lsllm.spans import split_words

PROMPT_FILE = "prompt.json"
PROMPT_KEYS = {"method": str, "model": str, "task": str, "labels": list, "mode": str, "prompt": dict, "shots": list,
               "adapter": (str, type(None))}
ADAPTER = "model/adapter"
"""Where an instruct run keeps its LoRA adapter, relative to the run folder."""


def is_prompt_run(folder: str | Path) -> bool:
    return (Path(folder) / PROMPT_FILE).is_file()


def _example_dict(example: SeqExample | TokenExample) -> dict:
    if isinstance(example, SeqExample):
        return {"text": example.text, "label": example.label} | (
            {"text_pair": example.text_pair} if example.text_pair is not None else {})
    return {"tokens": example.tokens, "tags": example.tags}


def _example(row: dict) -> SeqExample | TokenExample:
    return TokenExample(tokens=row["tokens"], tags=row["tags"]) if "tokens" in row else SeqExample(
        text=row["text"], label=row["label"], text_pair=row.get("text_pair"))


def save_prompt_run(folder: Path, method: str, model: str, task: str, labels: list[str], prompt: PromptConfig,
                    mode: str, shots: list) -> None:
    from lsllm.model.sources import portable_source

    write_json_atomic(folder / PROMPT_FILE, {
        "method": method, "model": portable_source(model), "task": task, "labels": labels, "mode": mode,
        "prompt": dataclasses.asdict(prompt), "shots": [_example_dict(s) for s in shots],
        "adapter": ADAPTER if method == "instruct" else None})


def read_prompt_info(folder: str | Path) -> dict:
    """prompt.json, checked: any problem is one ModelSourceError naming the file."""
    path = Path(folder) / PROMPT_FILE
    fix = "restore it from a copy of the run or run the prompting baseline again"
    info = read_json_object(path, fix, ModelSourceError)
    for key, kind in PROMPT_KEYS.items():
        if key not in info:
            raise ModelSourceError(f"{path}: missing key '{key}'; {fix}")
        if not isinstance(info[key], kind):
            raise ModelSourceError(f"{path}: '{key}' has the wrong type ({type(info[key]).__name__}); {fix}")
    if info["task"] not in ("seq", "token") or not all(isinstance(n, str) for n in info["labels"]):
        raise ModelSourceError(f"{path}: 'task' must be seq or token and 'labels' a list of strings; {fix}")
    # The adapter is loaded from the path the file names: keep it inside the run, so a copied or
    # edited prompt.json can't make lsllm load weights from elsewhere on the disk.
    if info["adapter"] is not None and not is_inside(Path(folder) / info["adapter"], folder):
        raise ModelSourceError(f"{path}: adapter {info['adapter']!r} is outside the run folder; it must be a path "
                               "inside the run, such as model/adapter")
    return info


class PromptPredictor:
    """Same interface as lsllm.predict.Predictor, for prompting runs."""

    def __init__(self, run_dir: str | Path, batch_size: int = 32, precision: str = "auto", device: str | None = None):
        from lsllm.inference.loading import load_causal_lm
        from lsllm.model.build import load_tokenizer
        from lsllm.model.lora import check_adapter, load_lora
        from lsllm.model.sources import resolve_recorded

        folder = Path(run_dir)
        info = read_prompt_info(folder)
        self.task, self.mode, self.batch_size, self.precision = info["task"], info["mode"], batch_size, precision
        self.labels = LabelSet(info["labels"])
        try:
            self.prompt = PromptConfig(**info["prompt"])
            self.shots = [_example(row) for row in info["shots"]]
        except (TypeError, ValueError, KeyError) as err:  # unknown/mistyped prompt setting, incomplete shot
            raise ModelSourceError(f"{folder / PROMPT_FILE}: invalid prompt settings or shots ({err}); restore it "
                                   "from a copy of the run or run the prompting baseline again") from None
        if info["adapter"]:
            check_adapter(folder / info["adapter"])  # before the minutes the base model may take
        path = resolve_recorded(info["model"], folder / PROMPT_FILE)
        self.tokenizer = load_tokenizer(path)
        model = load_causal_lm(path, device)
        if info["adapter"]:
            model = load_lora(model, folder / info["adapter"])
        self.model = model.eval()

    def evaluate(self, examples: list) -> Evaluation:
        """Predictions for read examples (scored when they are labelled)."""
        with model_autocast(self.model, self.precision):  # bf16 where native; log-softmax stays fp32
            return predict_zero_shot(self.model, self.tokenizer, examples, self.labels, self.prompt, mode=self.mode,
                                     batch_size=self.batch_size, shots=self.shots)

    def predict(self, texts: list[str]) -> list:
        return [r["label"] if "label" in r else r["tags"] for r in self.predict_rows(texts)]

    def predict_rows(self, texts: list[str]) -> list[dict]:
        if self.task == "token":
            return self.rows([TokenExample(tokens=split_words(t)) for t in texts], texts)
        return self.rows([SeqExample(text=t) for t in texts])

    def predict_file(self, path: str | Path, **columns) -> list[dict]:
        from lsllm.data.readers import read_examples, read_texts

        examples = (read_examples(path, "token", require_labels=False, **columns) if self.task == "token"
                    else read_texts(path, **columns))
        return self.rows(examples)

    def rows(self, examples: list, texts: list[str] | None = None) -> list[dict]:
        """Prediction rows for read examples (the interface lsllm.predict.Predictor.rows has)."""
        if not examples:
            return []
        evaluation = self.evaluate(strip_unknown_gold(examples, self.labels))
        return prediction_rows(examples, evaluation, self.labels, texts)
