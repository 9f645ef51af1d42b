"""Instruction-tuning examples: prompt + answer + EOS, with the loss on the answer only."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from lsllm.data.encode import IGNORE_INDEX
from lsllm.errors import ConfigError, ModelSourceError
from lsllm.prompting.tokens import uses_bos, continuation_ids

def instruct_features(tokenizer, prompt: str, answer: str, max_length: int) -> dict:
    """input_ids / attention_mask / labels for causal-LM training on prompt + answer + EOS, with the
    loss only on the answer and EOS (labels = IGNORE_INDEX on the prompt). Too long: the prompt is cut from
    the left (after any BOS), so the answer, which carries the loss, is kept."""
    if tokenizer.eos_token_id is None:
        raise ModelSourceError("the tokenizer has no EOS token to end the answer with")
    ids, start = continuation_ids(tokenizer, prompt, answer)
    ids = ids + [tokenizer.eos_token_id]
    excess = len(ids) - max_length
    if excess > 0:
        keep_head = 1 if uses_bos(tokenizer) else 0
        if start - keep_head - excess < 1:
            raise ConfigError(f"the answer ({len(ids) - start} tokens with EOS) leaves no room for the prompt "
                             f"in max_length={max_length}")
        ids = ids[:keep_head] + ids[keep_head + excess:]
        start -= excess
    labels = [IGNORE_INDEX] * start + ids[start:]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def collate_instruct(features: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad instruct_features into tensors (labels padded with IGNORE_INDEX)."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {"input_ids": torch.full((len(features), width), pad_token_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
             "labels": torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)}
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        for key in batch:
            batch[key][row, :n] = torch.tensor(f[key])
    return batch
