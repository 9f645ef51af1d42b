"""Prediction rows: what `*_predictions.jsonl`, `lsllm predict` and the API return, the same for every method."""
from __future__ import annotations

import dataclasses

from lsllm.data.labels import LabelSet
from lsllm.data.records import SeqExample
from lsllm.inference.batched import Evaluation
from lsllm.spans import tags_to_entities


def prediction_rows(examples: list, evaluation: Evaluation, labels: LabelSet,
                    texts: list[str] | None = None) -> list[dict]:
    """One JSON-able row per example: the label and every label's probability (when the method has them),
    or tags per word, their scores and the entities; the gold label when the example has one, and what a
    prompted model wrote (`raw`)."""
    rows = []
    probabilities = evaluation.probabilities
    for i, (example, pred) in enumerate(zip(examples, evaluation.predictions)):
        probs = None if probabilities is None else probabilities[i]
        if isinstance(example, SeqExample):
            row = {"text": example.text}
            if example.text_pair is not None:
                row["text_pair"] = example.text_pair
            row["label"] = pred
            if probs is not None:
                row["probs"] = {name: round(float(p), 6) for name, p in zip(labels.names, probs)}
            gold = example.label
        else:
            text = texts[i] if texts is not None else None
            row = {"text": text} if text is not None else {}
            row.update(tokens=example.tokens, tags=pred)
            scores = None
            if probs is not None:
                scores = [round(float(p.max()), 6) for p in probs] if len(probs) else []
                row["scores"] = scores
            row["entities"] = [e.to_dict() for e in tags_to_entities(example.tokens, pred, scores, text)]
            gold = example.tags
        if evaluation.raw is not None:
            row["raw"] = evaluation.raw[i]
        if gold is not None:
            row["gold"] = gold
        rows.append(row)
    return rows


def strip_unknown_gold(examples: list, labels: LabelSet) -> list:
    """The examples as they are when every gold label is known; else copies without labels (a file to
    predict may carry labels of its own: they are kept in the rows but not scored)."""
    known = all((e.label in labels if isinstance(e, SeqExample) else all(t in labels for t in e.tags))
                for e in examples if (e.label if isinstance(e, SeqExample) else e.tags) is not None)
    return examples if known else [dataclasses.replace(e, **({"label": None} if isinstance(e, SeqExample)
                                                            else {"tags": None})) for e in examples]
