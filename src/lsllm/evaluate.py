"""Run a model over examples: batched inference sorted by length, predictions and metrics."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from lsllm.data.encode import Feature, collate, encode, sorted_batches, word_scores
from lsllm.data.labels import LabelSet
from lsllm.data.records import SeqExample, TokenExample
from lsllm.metrics import sequence_metrics, token_metrics
from lsllm.model.classifier import LSModel


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the hardware computes bf16 natively, else full float32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        # Native bf16 matrix units (AVX512-BF16 / AMX): bf16 is 2-3x faster than fp32 there.
        return torch.bfloat16 if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() \
            else None
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Inference:
    scores: list[np.ndarray]
    """Per feature: class probabilities (C,) for sequence tasks, (T, C) for token tasks."""
    loss: float | None


@torch.inference_mode()
def infer(model: LSModel, features: list[Feature], pad_id: int, batch_size: int = 32,
          precision: str = "auto") -> Inference:
    """Probabilities for every feature, in feature order; mean loss where labels exist."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = autocast_dtype(precision, device)
    scores: list[np.ndarray | None] = [None] * len(features)
    total, count = 0.0, 0
    for batch_ids in sorted_batches([len(f.input_ids) for f in features], batch_size):
        batch = {k: v.to(device) for k, v in collate([features[i] for i in batch_ids], pad_id).items()}
        with autocast(device, dtype):
            logits = model(batch["input_ids"], batch["attention_mask"]).logits.float()
        labelled = batch["labels"] != -100
        if labelled.any():
            total += torch.nn.functional.cross_entropy(logits[labelled], batch["labels"][labelled],
                                                       reduction="sum").item()
            count += int(labelled.sum())
        probs = logits.softmax(-1).cpu().numpy()
        for row, i in enumerate(batch_ids):
            scores[i] = probs[row, :len(features[i].input_ids)] if probs.ndim == 3 else probs[row]
    model.train(was_training)
    return Inference(scores=scores, loss=total / count if count else None)


@dataclass
class Evaluation:
    predictions: list
    """Label per example (sequence) or tag list per example (token)."""
    probabilities: list[np.ndarray]
    """(C,) per example, or (n_words, C) per example."""
    metrics: dict | None
    loss: float | None


def predict_examples(model: LSModel, tokenizer, examples: list[SeqExample] | list[TokenExample],
                     labels: LabelSet, batch_size: int = 32, precision: str = "auto",
                     features: list[Feature] | None = None) -> Evaluation:
    """Predict every example; score it when the examples carry labels."""
    spec = model.spec
    if features is None:
        features = encode(examples, spec.task, tokenizer, labels if _labelled(examples) else None, spec.max_length,
                          spec.label_all_subtokens)
    result = infer(model, features, tokenizer.pad_token_id, batch_size, precision)
    if spec.task == "token":
        probs = word_scores(features, result.scores, len(examples), [len(e.tokens) for e in examples])
        preds = [[labels.names[k] for k in p.argmax(-1)] if len(p) else [] for p in probs]
        metrics = token_metrics([e.tags for e in examples], preds) if _labelled(examples) else None
    else:
        probs = result.scores
        preds = [labels.names[int(p.argmax())] for p in probs]
        metrics = sequence_metrics([e.label for e in examples], preds, labels.names) if _labelled(examples) else None
    return Evaluation(predictions=preds, probabilities=probs, metrics=metrics, loss=result.loss)


def _labelled(examples) -> bool:
    return all((e.tags if isinstance(e, TokenExample) else e.label) is not None for e in examples)
