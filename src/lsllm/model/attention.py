"""Causal (LS) or unmasked (LS-un) attention, set through the config and proved at run time.

Since transformers 5.2, `config.is_causal = False` makes the mask builders of decoder families
(Llama, Mistral, Qwen2/3, Gemma 3, ...) return a bidirectional mask that still hides padding.
We also clear `is_causal` on every attention module, because SDPA falls back to the module flag
when no mask is materialised. Setting flags is not proof, so `check_attention` runs two tiny
probes on the actual model and raises instead of letting a run train causally while it claims
to be bidirectional.
"""
from __future__ import annotations

import torch
from torch import nn

from lsllm.errors import AttentionModeError


def set_attention_mode(model: nn.Module, bidirectional: bool) -> None:
    """Make a decoder backbone causal or bidirectional (padding stays masked either way)."""
    model.config.is_causal = not bidirectional
    for module in model.modules():
        if hasattr(module, "is_causal") and isinstance(module.is_causal, bool):
            module.is_causal = not bidirectional


@torch.no_grad()
def check_attention(backbone: nn.Module, bidirectional: bool, pad_token_id: int = 0, atol: float = 1e-3) -> None:
    """Probe `backbone` (an `AutoModel`) and raise AttentionModeError unless it attends as claimed.

    1. Direction: changing the last token must change the first position's output when
       bidirectional, and must not when causal.
    2. Padding: a row padded on the right or on the left gives the same outputs at its real
       positions as the row alone (pads are invisible).
    """
    was_training = backbone.training
    backbone.eval()
    try:
        device = next(backbone.parameters()).device
        vocab = backbone.config.vocab_size
        ids = torch.tensor([[11, 23, 37, 41, 53, 67]], device=device) % vocab
        changed = ids.clone()
        changed[0, -1] = (changed[0, -1] + 1) % vocab
        first = _hidden(backbone, ids)[0, 0]
        first_changed = _hidden(backbone, changed)[0, 0]
        sees_future = not torch.allclose(first, first_changed, atol=atol, rtol=0)
        if sees_future != bidirectional:
            mode = "bidirectional" if bidirectional else "causal"
            raise AttentionModeError(
                f"{type(backbone).__name__} ({backbone.config.model_type}) was set to {mode} attention but "
                f"{'still masks' if bidirectional else 'does not mask'} future tokens; this family's attention "
                "can't be controlled through config.is_causal in this transformers version"
            )
        alone = _hidden(backbone, ids)
        for side in ("right", "left"):
            padded, mask = _pad(ids, 3, pad_token_id, side)
            out = _hidden(backbone, padded, mask)
            real = out[mask.bool()].view_as(alone)
            if not torch.allclose(real, alone, atol=atol * 10, rtol=1e-3):
                raise AttentionModeError(
                    f"{type(backbone).__name__}: tokens attend to {side} padding "
                    f"(max difference {(real - alone).abs().max().item():.3g}); refusing to train with a leaking mask"
                )
    finally:
        backbone.train(was_training)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count real tokens only, so left padding doesn't shift RoPE positions."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _hidden(backbone: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        mask = torch.ones_like(ids)
    out = backbone(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask))
    return out.last_hidden_state.float()


def _pad(ids: torch.Tensor, n: int, pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    pads = torch.full((1, n), pad_id, dtype=ids.dtype, device=ids.device)
    ones, zeros = torch.ones_like(ids), torch.zeros_like(pads)
    if side == "right":
        return torch.cat([ids, pads], 1), torch.cat([ones, zeros], 1)
    return torch.cat([pads, ids], 1), torch.cat([zeros, ones], 1)
