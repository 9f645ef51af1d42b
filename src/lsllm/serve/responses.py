"""Answers in the shapes existing clients read: text-embeddings-inference's /predict, vLLM's /classify and the
transformers token-classification pipeline's entities."""
from __future__ import annotations

import time
import uuid

import numpy as np

from lsllm.serve.batcher import ItemResult
from lsllm.spans import tags_to_entities, word_char_offsets


def tei_scores(result: ItemResult, labels: list[str], raw_scores: bool) -> list[dict]:
    """Every label with its probability (or raw score), highest first, as TEI's /predict answers."""
    values = result.logits if raw_scores else result.probabilities
    if values is None:  # a prompting run that generates its label: no score to give
        return [{"label": result.prediction, "score": None}]
    order = np.argsort(-np.asarray(values), kind="stable")
    return [{"label": labels[k], "score": float(values[k])} for k in order]


def vllm_classify(results: list[ItemResult], labels: list[str], model: str, prompt_tokens: int) -> dict:
    data = []
    for i, result in enumerate(results):
        probs = None if result.probabilities is None else [float(p) for p in result.probabilities]
        data.append({"index": i, "label": result.prediction, "probs": probs, "num_classes": len(labels)})
    return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
            "data": data, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens,
                                    "completion_tokens": 0, "prompt_tokens_details": None}}


def word_score(result: ItemResult) -> list[float]:
    probs = result.probabilities
    if probs is None or not len(probs):
        return [1.0] * len(result.prediction)  # generated tags carry no score
    return [float(p.max()) for p in probs]


def pipeline_entities(words: list[str], text: str, result: ItemResult, aggregation: str) -> list[dict]:
    """The token-classification pipeline's output for one text: per word (`none`, like the pipeline's
    per-token entries, O words left out) or grouped into entities. Words take their first sub-token's
    prediction, the position the model was trained on, so `simple`, `first`, `max` and `average` group
    the same word labels."""
    tags, scores = result.prediction, word_score(result)
    if aggregation == "none":
        offsets = word_char_offsets(text, words)
        return [{"entity": tag, "score": scores[i], "index": i, "word": words[i], "start": offsets[i][0],
                 "end": offsets[i][1]} for i, tag in enumerate(tags) if tag != "O"]
    return [{"entity_group": e.type, "score": e.score, "word": e.text, "start": e.start, "end": e.end}
            for e in tags_to_entities(words, tags, scores, text)]
