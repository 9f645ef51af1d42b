"""Batched inference with an LS model: length-sorted batches, probabilities, predictions and metrics,
returned as the one result type (`Evaluation`) that every method's predictions use."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lsllm.data.encode import IGNORE_INDEX, Feature, collate, encode, sorted_batches, word_scores
from lsllm.data.labels import LabelSet
from lsllm.data.records import SeqExample, TokenExample
from lsllm.inference.precision import model_autocast, model_device
from lsllm.metrics import sequence_metrics, token_metrics


@dataclass
class Evaluation:
    """Predictions for a list of examples, from any method (LS model or prompted causal LM)."""

    predictions: list
    """Label per example (sequence) or tag list per example (token)."""
    probabilities: list[np.ndarray] | None
    """(C,) per example, or (n_words, C) per example; None when the method generates free text."""
    metrics: dict | None
    """Scores against the examples' gold labels; None when they carry none."""
    loss: float | None = None
    """Mean cross-entropy over labelled positions (LS models)."""
    raw: list[str] | None = None
    """What a prompted model wrote, per example (generate mode and NER)."""
    invalid: int | None = None
    """Generated outputs that matched no label or could not be parsed (prompting)."""
    logits: list[np.ndarray] | None = None
    """(C,) raw scores per example before the softmax (LS sequence models; what `raw_scores` serves)."""

    def scores(self) -> dict:
        """What metrics.json and eval_<split>.json record: the metrics, plus the loss (LS models) or the
        invalid outputs (prompting) where the method has them."""
        entry = dict(self.metrics or {})
        if self.loss is not None:
            entry["loss"] = self.loss
        if self.invalid is not None:
            entry["invalid"] = self.invalid
        return entry


@dataclass
class Inference:
    scores: list[np.ndarray]
    """Per feature: class probabilities (C,) for sequence tasks, (T, C) for token tasks."""
    loss: float | None
    logits: list[np.ndarray] | None = None
    """Per feature, sequence tasks only: the raw scores (C,) the probabilities are the softmax of."""


@torch.inference_mode()
def infer(model, features: list[Feature], pad_id: int, batch_size: int = 32, precision: str = "auto") -> Inference:
    """Probabilities for every feature, in feature order; mean loss where labels exist."""
    was_training = model.training
    model.eval()
    device = model_device(model)  # a torch LSModel or an ONNX one (inference/onnx_runtime.py)
    scores: list[np.ndarray | None] = [None] * len(features)
    raw: list[np.ndarray | None] = [None] * len(features)
    total, count = 0.0, 0
    for batch_ids in sorted_batches([len(f.input_ids) for f in features], batch_size):
        batch = {k: v.to(device) for k, v in collate([features[i] for i in batch_ids], pad_id).items()}
        with model_autocast(model, precision):
            logits = model(batch["input_ids"], batch["attention_mask"]).logits.float()
        labelled = batch["labels"] != IGNORE_INDEX
        if labelled.any():
            total += torch.nn.functional.cross_entropy(logits[labelled], batch["labels"][labelled],
                                                       reduction="sum").item()
            count += int(labelled.sum())
        probs = logits.softmax(-1).cpu().numpy()
        for row, i in enumerate(batch_ids):
            scores[i] = probs[row, :len(features[i].input_ids)] if probs.ndim == 3 else probs[row]
        if logits.ndim == 2:
            for row, values in zip(batch_ids, logits.cpu().numpy()):
                raw[row] = values
    model.train(was_training)
    return Inference(scores=scores, loss=total / count if count else None,
                     logits=raw if features and raw[0] is not None else None)


def predict_examples(model, tokenizer, examples: list[SeqExample] | list[TokenExample], labels: LabelSet,
                     batch_size: int = 32, precision: str = "auto", features: list[Feature] | None = None) -> Evaluation:
    """Predict every example with an LS model; score it when the examples carry labels."""
    spec = model.spec
    if features is None:
        features = encode(examples, spec.task, tokenizer, labels if is_labelled(examples) else None, spec.max_length,
                          spec.label_all_subtokens)
    result = infer(model, features, tokenizer.pad_token_id, batch_size, precision)
    if spec.task == "token":
        probs = word_scores(features, result.scores, len(examples), [len(e.tokens) for e in examples])
        preds = [[labels.names[k] for k in p.argmax(-1)] if len(p) else [] for p in probs]
    else:
        probs = result.scores
        preds = [labels.names[int(p.argmax())] for p in probs]
    return Evaluation(predictions=preds, probabilities=probs, metrics=score(examples, preds, labels),
                      loss=result.loss, logits=result.logits)


def score(examples: list, predictions: list, labels: LabelSet) -> dict | None:
    """Accuracy/F1 (sequence) or entity-level F1 (token) against the gold labels; None if unlabelled."""
    if not examples or not is_labelled(examples):
        return None
    if isinstance(examples[0], TokenExample):
        return token_metrics([e.tags for e in examples], predictions)
    return sequence_metrics([e.label for e in examples], predictions, labels.names)


def is_labelled(examples) -> bool:
    return all((e.tags if isinstance(e, TokenExample) else e.label) is not None for e in examples)
