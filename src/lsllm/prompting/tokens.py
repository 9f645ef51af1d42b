"""Tokenising prompts the way scoring, generation and instruction features all need it."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from lsllm.errors import ConfigError

def uses_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def encode_prompt(tokenizer, text: str, adds_bos: bool | None = None) -> list[int]:
    """Token ids of `text` with the tokenizer's BOS (if it uses one) but never an EOS, and no
    second BOS when the text (a chat template) already starts with it."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if adds_bos is None:
        adds_bos = uses_bos(tokenizer)
    if adds_bos and ids[:1] != [tokenizer.bos_token_id]:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def continuation_ids(tokenizer, prompt: str, continuation: str, adds_bos: bool | None = None) -> tuple[list[int], int]:
    """Ids of prompt+continuation tokenised together, and where the continuation's tokens start.

    Tokenising together keeps BPE merges across the boundary ("Output: " + "positive" is
    [..., ":", " positive"], not [..., ":", " ", "positive"]); the continuation's tokens are the
    suffix after the longest prefix shared with the prompt tokenised alone."""
    if adds_bos is None:
        adds_bos = uses_bos(tokenizer)
    prompt_ids = encode_prompt(tokenizer, prompt, adds_bos)
    full = encode_prompt(tokenizer, prompt + continuation, adds_bos)
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    if start == len(full):
        raise ConfigError(f"continuation {continuation!r} adds no tokens to the prompt")
    if start == 0:
        raise ConfigError("the prompt is empty: a continuation needs at least one context token")
    return full, start


@contextmanager
def evaluating(model):
    """Eval mode (no dropout) for the duration, then back to the caller's mode (e.g. mid-training)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def check_causal(model) -> None:
    if getattr(model.config, "is_causal", True) is False:
        raise ConfigError("the model's attention is bidirectional (config.is_causal=False); "
                         "prompting needs a causal language model")

def pad(sequences: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), both (len(sequences), longest)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask
