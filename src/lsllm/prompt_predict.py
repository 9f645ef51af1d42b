"""Predict with a prompting run (`--method zero-shot | few-shot | instruct`): the run folder's
`prompt.json` records the base model, labels, resolved prompt settings and the few-shot examples
shown, and instruct runs add their LoRA adapter (`model/adapter`), so `lsllm predict` and `lsllm eval`
reproduce the run's predictions without its training data."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lsllm.data.labels import LabelSet
from lsllm.data.records import SeqExample, TokenExample
from lsllm.prompting import PromptConfig, predict_zero_shot
from lsllm.report import write_json_atomic
from lsllm.spans import split_words

PROMPT_FILE = "prompt.json"


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
    write_json_atomic(folder / PROMPT_FILE, {
        "method": method, "model": model, "task": task, "labels": labels, "mode": mode,
        "prompt": dataclasses.asdict(prompt), "shots": [_example_dict(s) for s in shots],
        "adapter": "model/adapter" if method == "instruct" else None})


def score_outputs(task: str, examples: list, out: dict, labels: LabelSet) -> dict:
    """Metrics of predict_zero_shot's output against the examples' gold labels or tags."""
    from lsllm.metrics import sequence_metrics, token_metrics

    if task == "token":
        return token_metrics([e.tags for e in examples], out["predictions"])
    return sequence_metrics([e.label for e in examples], out["predictions"], labels.names)


def prompt_autocast(model, precision: str = "auto"):
    """The autocast a prompting run scores under (bf16 where the hardware has it), on the model's device."""
    from lsllm.evaluate import autocast, autocast_dtype

    device = next(model.parameters()).device
    return autocast(device, autocast_dtype(precision, device))


class PromptPredictor:
    """Same interface as lsllm.predict.Predictor, for prompting runs."""

    def __init__(self, run_dir: str | Path, batch_size: int = 32, precision: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM

        from lsllm.model.build import load_tokenizer
        from lsllm.model.sources import resolve_source

        folder = Path(run_dir)
        info = json.loads((folder / PROMPT_FILE).read_text(encoding="utf-8"))
        self.task, self.mode, self.batch_size, self.precision = info["task"], info["mode"], batch_size, precision
        self.labels = LabelSet(info["labels"])
        self.prompt = PromptConfig(**info["prompt"])
        self.shots = [_example(row) for row in info["shots"]]
        path = resolve_source(info["model"])
        self.tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        if info.get("adapter"):
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder / info["adapter"])
        self.model = model.eval()

    def run(self, examples: list) -> dict:
        """predict_zero_shot's output (predictions, probabilities or raw outputs, invalid count)."""
        with prompt_autocast(self.model, self.precision):
            return predict_zero_shot(self.model, self.tokenizer, examples, self.labels, self.prompt, mode=self.mode,
                                     batch_size=self.batch_size, shots=self.shots)

    def predict(self, texts: list[str]) -> list:
        return [r["label"] if "label" in r else r["tags"] for r in self.predict_rows(texts)]

    def predict_rows(self, texts: list[str]) -> list[dict]:
        if self.task == "token":
            return self._rows([TokenExample(tokens=split_words(t)) for t in texts])
        return self._rows([SeqExample(text=t) for t in texts])

    def predict_file(self, path: str | Path, **columns) -> list[dict]:
        from lsllm.data.readers import read_examples, read_texts

        examples = (read_examples(path, "token", require_labels=False, **columns) if self.task == "token"
                    else read_texts(path, **columns))
        return self._rows(examples)

    def _rows(self, examples: list) -> list[dict]:
        if not examples:
            return []
        out = self.run(examples)
        rows = []
        for i, example in enumerate(examples):
            row = ({"text": example.text, "label": out["predictions"][i]} if isinstance(example, SeqExample)
                   else {"tokens": example.tokens, "tags": out["predictions"][i]})
            if "probabilities" in out:
                row["probs"] = {n: round(p, 6) for n, p in zip(self.labels.names, out["probabilities"][i])}
            if "raw" in out:
                row["raw"] = out["raw"][i]
            gold = example.label if isinstance(example, SeqExample) else example.tags
            if gold is not None:
                row["gold"] = gold
            rows.append(row)
        return rows
