"""Bind records to a tokenizer: features, dynamic-padding collate, length-grouped batches, and
mapping token predictions back to words.

Token tasks label the first sub-token of each word (or all of them). A sentence longer than
`max_length` is cut into overlapping windows so every word gets a prediction; each word is
then read from the window where it sits farthest from an edge.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from lsllm.errors import ConfigError, DataError
from lsllm.data.labels import LabelSet
from lsllm.data.records import SeqExample, TokenExample

IGNORE_INDEX = -100  # the label torch's cross_entropy and transformers' losses skip (their ignore_index)


@dataclass
class Feature:
    input_ids: list[int]
    labels: int | list[int]
    """Class index (sequence), or one label per token with IGNORE_INDEX on non-labelled tokens."""
    example: int
    """Index of the example this row came from (several windows may share one)."""
    word_ids: list[int] | None = None
    """Token tasks: the word whose first sub-token sits at each position, else -1."""


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a text (e.g. BOS, or [CLS] ... [SEP])."""
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return [], []


def encode_seq(examples: list[SeqExample], tokenizer: PreTrainedTokenizerBase, labels: LabelSet | None,
               max_length: int) -> list[Feature]:
    """One feature per example, truncated to `max_length` tokens."""
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples]
    if any(p is not None for p in pairs):
        if tokenizer.sep_token is not None:
            enc = tokenizer(texts, [p or "" for p in pairs], truncation=True, max_length=max_length)
        else:  # decoders without a separator token: a newline reads naturally
            enc = tokenizer([t if p is None else f"{t}\n{p}" for t, p in zip(texts, pairs)], truncation=True,
                            max_length=max_length)
    else:
        enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [Feature(ids, _seq_label(e, labels), i) for i, (e, ids) in enumerate(zip(examples, enc["input_ids"]))]


def _seq_label(example: SeqExample, labels: LabelSet | None) -> int:
    return IGNORE_INDEX if labels is None or example.label is None else labels.index(example.label)


def encode_tokens(examples: list[TokenExample], tokenizer: PreTrainedTokenizerBase, labels: LabelSet | None,
                  max_length: int, label_all_subtokens: bool = False) -> list[Feature]:
    """Features for word-tagged sentences, split into overlapping windows when too long."""
    prefix, suffix = special_tokens(tokenizer)
    room = max_length - len(prefix) - len(suffix)
    if room < 4:
        raise ConfigError(f"max_length {max_length} leaves no room for text after special tokens; raise --max-length")
    texts = [" ".join(e.tokens) for e in examples]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    features = []
    for i, example in enumerate(examples):
        ids, owner, first = _align(example.tokens, enc["input_ids"][i], enc["offset_mapping"][i])
        tags = example.tags if labels is not None and example.tags is not None else None
        token_labels = [IGNORE_INDEX] * len(ids)
        if tags is not None:
            for pos, word in enumerate(owner):
                if word >= 0 and (first[pos] or label_all_subtokens):
                    token_labels[pos] = labels.index(tags[word])
        word_ids = [w if f else -1 for w, f in zip(owner, first)]
        for start, end in _windows(len(ids), room):
            features.append(Feature(
                input_ids=prefix + ids[start:end] + suffix,
                labels=[IGNORE_INDEX] * len(prefix) + token_labels[start:end] + [IGNORE_INDEX] * len(suffix),
                example=i,
                word_ids=[-1] * len(prefix) + word_ids[start:end] + [-1] * len(suffix),
            ))
    return features


def _align(words: list[str], ids: list[int], offsets: list[tuple[int, int]]):
    """Owner word of every token, and whether it is that word's first sub-token.

    Words sit in " ".join(words); a token belongs to the word holding its first non-space char.
    A word that got no token of its own (rare unicode) borrows the next token, so it still
    gets a prediction.
    """
    char_word = []
    for w, word in enumerate(words):
        if w:
            char_word.append(-1)  # the joining space
        char_word.extend([w] * len(word))
    owner = []
    for start, end in offsets:
        word = next((char_word[c] for c in range(start, min(end, len(char_word))) if char_word[c] >= 0), -1)
        owner.append(word)
    first = [w >= 0 and (p == 0 or owner[p - 1] != w) for p, w in enumerate(owner)]
    seen = {w for w, f in zip(owner, first) if f}
    missing = [w for w in range(len(words)) if w not in seen]
    if missing:
        # Give each tokenless word its own zero-length slot: re-use the following token's id.
        for w in missing:
            pos = next((p for p, o in enumerate(owner) if o > w), len(owner) - 1)
            pos = max(pos, 0)
            if not ids:
                raise DataError(f"sentence {' '.join(words)!r} tokenizes to nothing; remove it or check the tokenizer")
            ids = ids[:pos] + [ids[pos]] + ids[pos:]
            owner = owner[:pos] + [w] + owner[pos:]
            first = first[:pos] + [True] + first[pos:]
    return ids, owner, first


def _windows(n: int, room: int) -> list[tuple[int, int]]:
    """[start, end) token windows of at most `room` tokens, overlapping by half a window."""
    if n <= room:
        return [(0, n)]
    stride = max(1, room // 2)
    starts = list(range(0, n - room, stride)) + [n - room]
    return [(s, s + room) for s in starts]


def encode(examples, task: str, tokenizer, labels: LabelSet | None, max_length: int,
           label_all_subtokens: bool = False) -> list[Feature]:
    if task == "token":
        return encode_tokens(examples, tokenizer, labels, max_length, label_all_subtokens)
    return encode_seq(examples, tokenizer, labels, max_length)


def collate(features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest row in the batch (dynamic padding), on the right."""
    width = max(len(f.input_ids) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    token_task = isinstance(features[0].labels, list)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long) if token_task else torch.empty(
        len(features), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f.input_ids)
        ids[row, :n] = torch.tensor(f.input_ids)
        mask[row, :n] = 1
        if token_task:
            labels[row, :n] = torch.tensor(f.labels)
        else:
            labels[row] = f.labels
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, group: int = 64) -> list[list[int]]:
    """Shuffled batches of similar length: little padding, still random (seeded, reproducible)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    span = batch_size * group
    for start in range(0, len(order), span):
        chunk = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches.extend(chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def token_budget_batches(lengths: list[int], max_tokens: int, seed: int, group: int = 64) -> list[list[int]]:
    """Shuffled batches of similar length, each as many examples as fit `max_tokens` padded tokens
    (batch size x its longest example; at least one example). Short texts then make batches of many rows:
    larger matmuls per step for the same tokens. Seeded and reproducible like length_grouped_batches."""
    if not lengths:
        return []
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    per_batch = max(1, max_tokens // max(1, sorted(lengths)[len(lengths) // 2]))  # rows at the median length
    span = per_batch * group
    batches = []
    for start in range(0, len(order), span):
        batch: list[int] = []
        for i in sorted(order[start:start + span], key=lambda i: lengths[i]):
            if batch and (len(batch) + 1) * lengths[i] > max_tokens:  # sorted: the new example is the longest
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def training_batches(lengths: list[int], unit: str, size: int, seed: int) -> list[list[int]]:
    """An epoch's batches for `RunConfig.batching()`'s (unit, size): a token budget or a number of examples."""
    if unit == "tokens":
        return token_budget_batches(lengths, size, seed=seed)
    return length_grouped_batches(lengths, size, seed=seed)


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches sorted by length for inference (least padding); callers restore the order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[b:b + batch_size] for b in range(0, len(order), batch_size)]


def word_scores(features: list[Feature], token_scores: list[np.ndarray], n_examples: int,
                words_per_example: list[int]) -> list[np.ndarray]:
    """Per-word score rows (n_words, C) for each example, from per-feature token scores (T, C).

    A word seen in several windows is read from the window where it is farthest from an edge.
    """
    best: list[dict[int, tuple[int, np.ndarray]]] = [dict() for _ in range(n_examples)]
    for feature, scores in zip(features, token_scores):
        positions = [p for p, w in enumerate(feature.word_ids) if w >= 0]
        if not positions:
            continue
        lo, hi = positions[0], positions[-1]
        for p in positions:
            word = feature.word_ids[p]
            centrality = min(p - lo, hi - p)
            known = best[feature.example].get(word)
            if known is None or centrality > known[0]:
                best[feature.example][word] = (centrality, scores[p])
    out = []
    for i, n in enumerate(words_per_example):
        missing = [w for w in range(n) if w not in best[i]]
        if missing:
            raise AssertionError(f"example {i}: words {missing} got no prediction")  # _align guarantees coverage
        out.append(np.stack([best[i][w][1] for w in range(n)]) if n else np.zeros((0, 0)))
    return out
