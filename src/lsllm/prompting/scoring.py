"""Label scoring: rank every label by its log-likelihood as the prompt's continuation."""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lsllm.prompting.tokens import uses_bos, check_causal, continuation_ids, evaluating, pad

@torch.inference_mode()
def label_log_likelihoods(model, tokenizer, prompts: Sequence[str], label_texts: Sequence[str],
                          batch_size: int = 8) -> torch.Tensor:
    """(N, L) log P(label | prompt): the sum of the log-probs of every token of the label.

    Each prompt runs once: its tokens shared by all labels fill a KV cache that the L label
    continuations then reuse, so the cost is ~N prompts rather than N*L prompt+label sequences.
    A batch holds `batch_size` prompts (and their batch_size*L continuations)."""
    check_causal(model)
    adds_bos = uses_bos(tokenizer)
    rows = [_PromptLabels.build(tokenizer, p, label_texts, adds_bos) for p in prompts]
    # Longest first, so batches hold similar lengths (little padding) and memory peaks early.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].prefix))
    scores = torch.empty(len(rows), len(label_texts), dtype=torch.float64)
    with evaluating(model):
        for b in range(0, len(order), batch_size):
            ids = order[b:b + batch_size]
            scores[ids] = _score_batch(model, tokenizer, [rows[i] for i in ids], len(label_texts))
    return scores


@dataclass
class _PromptLabels:
    """One prompt split for scoring: the prefix every label shares, then per label the rest of
    prompt+label and how many of those tokens still belong to the prompt (not scored)."""

    prefix: list[int]
    suffixes: list[list[int]]
    skips: list[int]

    @staticmethod
    def build(tokenizer, prompt: str, label_texts: Sequence[str], adds_bos: bool) -> _PromptLabels:
        pairs = [continuation_ids(tokenizer, prompt, t, adds_bos) for t in label_texts]
        # Label boundaries can differ (BPE merges), but ids before each start equal the prompt's.
        shared = min(start for _, start in pairs)
        return _PromptLabels(pairs[0][0][:shared], [ids[shared:] for ids, _ in pairs],
                             [start - shared for _, start in pairs])


def _score_batch(model, tokenizer, rows: list[_PromptLabels], n_labels: int) -> torch.Tensor:
    """(B, L) label log-likelihoods for B prompts."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # Prefixes are left-padded so that all of them end at the same column, where the suffixes begin.
    prefix_ids, prefix_mask = pad([r.prefix for r in rows], pad_id, left=True)  # (B, P)
    positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)  # real tokens count from 0 whatever the padding
    out = model(input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device),
                position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
    first_log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): predicts suffix token 0
    cache_name = _cache_argument(model)
    cache = getattr(out, cache_name)
    cache.batch_repeat_interleave(n_labels)  # (B, ...) -> (B*L, ...), row b*L + l

    suffixes = [s for r in rows for s in r.suffixes]
    suffix_ids, suffix_mask = pad(suffixes, pad_id, left=False)  # (B*L, S)
    mask = torch.cat([prefix_mask.repeat_interleave(n_labels, dim=0), suffix_mask], dim=1)  # (B*L, P+S)
    lengths = prefix_mask.sum(-1).repeat_interleave(n_labels)  # (B*L,)
    suffix_positions = lengths[:, None] + torch.arange(suffix_ids.shape[1])  # (B*L, S)
    logits = model(input_ids=suffix_ids.to(device), attention_mask=mask.to(device),
                   position_ids=suffix_positions.to(device), use_cache=True, **{cache_name: cache}).logits
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B*L, S, V): position j predicts suffix token j+1

    scores = []
    skips = [k for r in rows for k in r.skips]
    for row, (suffix, skip) in enumerate(zip(suffixes, skips)):
        targets = torch.tensor(suffix, device=device)  # (S_row,)
        predicted = torch.cat([first_log_probs[row // n_labels, None], log_probs[row, :len(suffix) - 1]])  # (S_row, V)
        scores.append(predicted[skip:].gather(1, targets[skip:, None]).sum())
    return torch.stack(scores).double().cpu().view(len(rows), n_labels)  # (B*L,) -> (B, L)


def _cache_argument(model) -> str:
    """transformers renamed `past_key_values` to `cache` (argument and output field) during 5.x."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps the model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@torch.inference_mode()
def score_labels(model, tokenizer, prompts: Sequence[str], label_texts: Sequence[str],
                 batch_size: int = 8) -> torch.Tensor:
    """(N, L) probabilities over the labels: softmax of each label's full-sequence log-likelihood."""
    return torch.softmax(label_log_likelihoods(model, tokenizer, prompts, label_texts, batch_size), dim=-1)
