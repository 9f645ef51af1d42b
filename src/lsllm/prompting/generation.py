"""Free generation: greedy continuations, and matching an output against the label names."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from lsllm.prompting.tokens import uses_bos, check_causal, encode_prompt, evaluating, pad

@torch.inference_mode()
def generate_texts(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16,
                   batch_size: int = 8) -> list[str]:
    """Greedy continuations of each prompt, special tokens removed."""
    check_causal(model)
    adds_bos = uses_bos(tokenizer)
    encoded = [encode_prompt(tokenizer, p, adds_bos) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    outputs: list[str] = [""] * len(encoded)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with evaluating(model):
        for b in range(0, len(order), batch_size):
            # Left padding: generation appends after the last column, so every row must end there.
            input_ids, mask = pad([encoded[i] for i in order[b:b + batch_size]], pad_id, left=True)
            width = input_ids.shape[1]
            generated = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                       max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                       temperature=None, top_p=None, top_k=None,
                                       pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id)
            new_tokens = generated[:, width:]  # (B, <= max_new_tokens)
            for row, ids in enumerate(new_tokens.tolist()):
                outputs[order[b + row]] = tokenizer.decode(ids, skip_special_tokens=True)
    return outputs


def match_label(output: str, label_texts: Sequence[str]) -> str | None:
    """The label whose text equals the output's first line (case-insensitive; surrounding spaces,
    quotes and a final period ignored), else None."""
    lines = output.strip().splitlines()
    answer = lines[0].strip().strip("\"'`*").rstrip(".").strip().lower() if lines else ""
    for text in label_texts:
        if answer == text.strip().lower():
            return text
    return None


def generate_labels(model, tokenizer, prompts: Sequence[str], label_texts: Sequence[str], max_new_tokens: int = 16,
                    batch_size: int = 8) -> tuple[list[str | None], list[str]]:
    """Greedy generation matched against the labels: (matched label text or None, raw outputs)."""
    raw = generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)
    return [match_label(r, label_texts) for r in raw], raw
