"""Zero-/few-shot prediction (and prediction with an instruction-tuned model): prompts in, one Evaluation out."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from lsllm.data.labels import LabelSet
from lsllm.data.iob import has_prefixes, strip_prefix
from lsllm.data.records import SeqExample, TokenExample
from lsllm.errors import ConfigError
from lsllm.inference.batched import Evaluation, score
from lsllm.prompting.config import PromptConfig
from lsllm.prompting.entities import entities_to_tags, parse_entities
from lsllm.prompting.generation import generate_labels, generate_texts
from lsllm.prompting.scoring import score_labels
from lsllm.prompting.templates import build_prompts, select_shots, shown_labels, shown_types

INVALID = "<invalid>"
"""Prediction for a generated output that matches no label; it is never a label, so it scores as wrong."""

def few_shot_examples(config: PromptConfig, train_examples: Sequence | None) -> list:
    """The config.k_shot examples a few-shot prompt shows (none for zero-shot)."""
    if config.k_shot <= 0:
        return []
    if not train_examples:
        raise ConfigError(f"{config.k_shot}-shot prompting needs training examples to draw shots from")
    return select_shots(train_examples, config.k_shot, config.seed)


def predict_zero_shot(model, tokenizer, examples: Sequence[SeqExample | TokenExample], labels: LabelSet,
                      config: PromptConfig, train_examples: Sequence[SeqExample | TokenExample] | None = None,
                      mode: Literal["score", "generate"] = "score", batch_size: int = 8,
                      max_new_tokens: int | None = None, shots: Sequence | None = None) -> Evaluation:
    """Zero-/few-shot predictions (few-shot when config.k_shot > 0, shots drawn from train_examples, or
    the given `shots` as they are, e.g. those a saved run showed), scored when the examples are labelled.

    Sequence tasks: label names, with (L,) probabilities in label-set order (score mode) or the raw
    outputs (generate mode; an output matching no label is predicted as INVALID and counted in
    `invalid`). Token tasks always generate: tag lists (IOB2, or plain types for a label set without
    B-/I- tags); `invalid` counts unparsable outputs (read as no entities). max_new_tokens defaults
    to 16 for labels and 128 for entity lists."""
    if mode not in ("score", "generate"):
        raise ConfigError(f"prompt mode must be 'score' or 'generate', not {mode!r}")
    if shots is None:
        shots = few_shot_examples(config, train_examples)
    prompts = build_prompts(examples, labels, config, tokenizer, list(shots))
    if examples and isinstance(examples[0], TokenExample):
        predictions, raw, invalid = _predict_tags(model, tokenizer, examples, labels, config, prompts, batch_size,
                                                  max_new_tokens or 128)
        return Evaluation(predictions, None, score(examples, predictions, labels), raw=raw, invalid=invalid)

    texts = shown_labels(labels, config)
    if mode == "score":
        probs = score_labels(model, tokenizer, prompts, texts, batch_size)  # (N, L)
        predictions = [labels.names[i] for i in probs.argmax(dim=-1).tolist()]
        return Evaluation(predictions, list(probs.numpy()), score(examples, predictions, labels), invalid=0)
    matched, raw = generate_labels(model, tokenizer, prompts, texts, max_new_tokens or 16, batch_size)
    name_of = dict(zip(texts, labels.names))
    predictions = [INVALID if m is None else name_of[m] for m in matched]
    return Evaluation(predictions, None, score(examples, predictions, labels), raw=raw,
                      invalid=sum(m is None for m in matched))


def _predict_tags(model, tokenizer, examples: Sequence[TokenExample], labels: LabelSet, config: PromptConfig,
                  prompts: list[str], batch_size: int, max_new_tokens: int) -> tuple[list, list[str], int]:
    type_of = {shown: etype for etype, shown in shown_types(labels, config).items()}
    raw = generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)
    prefixed = has_prefixes(labels.names)
    predictions, invalid = [], 0
    for example, output in zip(examples, raw):
        entities = parse_entities(output, list(type_of))
        if entities is None:
            invalid += 1
            entities = []
        tags = entities_to_tags(example.tokens, [(type_of[shown], span) for shown, span in entities])
        predictions.append(tags if prefixed else [strip_prefix(t) for t in tags])
    return predictions, raw, invalid
