"""QLoRA (--quantize 4bit|8bit): the base quantized through bitsandbytes on this CPU, LoRA and the head trained in
float32, saved, and reloaded to exactly the model that was validated; LS-un's attention probe on quantized
models of every claimed family; merged exports; and the errors a user meets."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lsllm.cli import main
from lsllm.errors import ConfigError
from lsllm.model.attention import check_attention
from lsllm.model.build import load_backbone
from lsllm.options import config_from_options
from lsllm.predict import Predictor
from tests.conftest import DECODER_FAMILIES
from tests.test_workflow import _train_args, write_conll, write_seq_csv

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def seq_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("qdata")
    return write_seq_csv(root / "train.csv", 64, 0), write_seq_csv(root / "dev.csv", 16, 1)


def _best_eval_loss(run: Path) -> float:
    """The validation loss the in-memory model had at the best step, as training logged it."""
    metrics = json.loads((run / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return next(r["loss"] for r in log if r["type"] == "eval" and r["step"] == metrics["best_step"])


@pytest.mark.parametrize("quantize", ["4bit", "8bit"])
def test_quantized_run_trains_saves_float32_head_and_reloads_to_the_validated_model(tiny_models, seq_files,
                                                                                   tmp_path, quantize):
    run = tmp_path / "run"
    assert main(_train_args(tiny_models["llama"], *seq_files, seq_files[1], run, "--quantize", quantize,
                            "--bidirectional", "--pooling", "mean")) == 0
    spec = json.loads((run / "model" / "lsllm.json").read_text())
    assert spec["quantize"] == quantize and spec["bidirectional"] and spec["lora"]
    # The head and LoRA are saved, in float32, finite (the reported QLoRA failure: a NaN or missing head).
    head = load_file(run / "model" / "head.safetensors")
    adapter = load_file(run / "model" / "adapter" / "adapter_model.safetensors")
    for tensors in (head, adapter):
        assert tensors and all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in tensors.values())
    assert head["weight"].abs().sum() > 0
    # The final evaluation reloads the saved model (quantizing the base again): its validation loss equals
    # the loss the trained model had at the best step, so the reload is the very model that was validated.
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isclose(metrics["validation"]["loss"], _best_eval_loss(run), rel_tol=1e-5)
    predictor = Predictor(run)
    kind = "Linear4bit" if quantize == "4bit" else "Linear8bitLt"
    assert any(type(m).__name__ == kind for m in predictor.model.modules()), "the reloaded base is not quantized"
    rows = [json.loads(line) for line in (run / "validation_predictions.jsonl").read_text().splitlines()]
    again = predictor.predict_rows([r["text"] for r in rows])
    assert [r["label"] for r in again] == [r["label"] for r in rows]
    assert all(abs(a["probs"][k] - r["probs"][k]) < 1e-4 for a, r in zip(again, rows) for k in r["probs"])


def test_quantized_token_run_reloads_to_the_validated_model(tiny_models, tmp_path):
    train = write_conll(tmp_path / "train.conll", 48, 0)
    dev = write_conll(tmp_path / "dev.conll", 8, 1)
    run = tmp_path / "run"
    assert main(_train_args(tiny_models["qwen2"], train, dev, dev, run, "--task", "token", "--quantize", "4bit")) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert "f1" in metrics["validation"]
    assert math.isclose(metrics["validation"]["loss"], _best_eval_loss(run), rel_tol=1e-5)


@pytest.mark.parametrize("family", DECODER_FAMILIES)
@pytest.mark.parametrize("quantize", ["4bit", "8bit"])
def test_attention_probe_passes_on_quantized_models(tiny_models, family, quantize):
    """LS-un on a quantized base still sees the future and never the pads; LS stays causal."""
    for bidirectional in (True, False):
        backbone, _ = load_backbone(str(tiny_models[family]), bidirectional, quantize=quantize)  # probes itself
        kind = "Linear4bit" if quantize == "4bit" else "Linear8bitLt"
        assert any(type(m).__name__ == kind for m in backbone.modules())
        with pytest.raises(Exception, match="attention"):  # and the probe can fail: claim the other mode
            check_attention(backbone, not bidirectional, pad_token_id=0)


def test_merged_export_of_a_4bit_run_folds_lora_into_the_dequantized_weights(tiny_models, seq_files, tmp_path):
    run, out = tmp_path / "run", tmp_path / "merged"
    assert main(_train_args(tiny_models["llama"], *seq_files, seq_files[1], run, "--quantize", "4bit")) == 0
    assert main(["export", str(run), "--output", str(out), "--merge"]) == 0
    merged_spec = json.loads((out / "lsllm.json").read_text())
    assert merged_spec["merged"] and merged_spec["quantize"] == "none"  # plain float32 weights: no bitsandbytes
    assert "qlora" in (run / "model" / "README.md").read_text()
    assert "4bit base training used, dequantized" in (out / "README.md").read_text()
    texts = [json.loads(line)["text"] for line in (run / "validation_predictions.jsonl").read_text().splitlines()]
    quantized = Predictor(run, precision="fp32").predict_rows(texts)
    merged_predictor = Predictor(out, precision="fp32")
    assert not any("Linear4bit" in type(m).__name__ for m in merged_predictor.model.modules())
    merged = merged_predictor.predict_rows(texts)
    # NF4 dequantizes exactly, so only float rounding of the merge separates the two.
    assert all(abs(a["probs"][k] - b["probs"][k]) < 1e-4 for a, b in zip(quantized, merged) for k in a["probs"])


@pytest.mark.parametrize("values, message", [
    ({"quantize": "4bit", "lora": "none"}, "can't be fine-tuned in full"),
    ({"quantize": "3bit"}, "quantize '3bit' must be one of none, 4bit, 8bit"),
    ({"quantize": "4bit", "method": "zero-shot"}, "--quantize applies to label-supervised runs"),
])
def test_invalid_quantize_settings_are_refused(tmp_path, seq_files, values, message):
    config = config_from_options({**values, "train": str(seq_files[0]), "output": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate()


def test_missing_bitsandbytes_is_one_clear_error_before_anything_is_written(tiny_models, seq_files, tmp_path,
                                                                          monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    run = tmp_path / "run"
    assert main(_train_args(tiny_models["llama"], *seq_files, seq_files[1], run, "--quantize", "4bit")) != 0
    err = capsys.readouterr().err
    assert "pip install 'lsllm[qlora]'" in err and "Traceback" not in err
    assert not run.exists() and not (tmp_path / "run.incomplete").exists()


@pytest.mark.slow
def test_real_smollm2_4bit_run_learns_and_reloads_to_the_validated_model(smollm2, shared_data, tmp_path):
    from tests.test_e2e_smollm2 import _slice_csv

    train = _slice_csv(shared_data / "tfns" / "sent_train.csv", tmp_path / "train.csv", 160)
    dev = _slice_csv(shared_data / "tfns" / "sent_valid.csv", tmp_path / "dev.csv", 48)
    run = tmp_path / "run"
    # The recipe test_e2e_smollm2 pins for these rows (the LS default's lr 1e-3 overshoots on 160 tweets).
    assert main(["train", "--train", str(train), "--validation", str(dev), "--max-steps", "24", "--eval-every", "12",
                 "--batch-size", "8", "--lr", "5e-4", "--quantize", "4bit", "--output", str(run)]) == 0
    evals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"eval"' in line]
    assert evals[-1]["loss"] < evals[0]["loss"]  # it learns through the 4-bit base
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isclose(metrics["validation"]["loss"], _best_eval_loss(run), rel_tol=1e-5)
    head = load_file(run / "model" / "head.safetensors")
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in head.values())


def test_a_4bit_model_resumes_from_its_checkpoint_bit_identically(tiny_models, tmp_path):
    """The checkpoint holds LoRA, head, optimizer and RNG state; the 4-bit base is rebuilt, not saved."""
    from transformers import get_linear_schedule_with_warmup

    from lsllm.config import ModelConfig
    from lsllm.model.build import build_model
    from lsllm.training.checkpoint import load_checkpoint, save_checkpoint
    from tests.test_checkpoint import SPLIT, TOTAL, assert_same_training_state, seed_all, step

    def fresh():
        model, _ = build_model(ModelConfig(model=str(tiny_models["llama"]), quantize="4bit"), ["neg", "pos"])
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        return model, optimizer, get_linear_schedule_with_warmup(optimizer, 2, TOTAL)

    seed_all(0)
    uninterrupted = fresh()
    for i in range(TOTAL):
        step(*uninterrupted)
        if i + 1 == SPLIT:
            save_checkpoint(tmp_path, *uninterrupted, {"step": SPLIT, "best": None})
    seed_all(123)
    resumed = fresh()
    assert load_checkpoint(tmp_path, *resumed) == {"step": SPLIT, "best": None}
    for _ in range(TOTAL - SPLIT):
        step(*resumed)
    assert_same_training_state(uninterrupted, resumed)


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["4bit", "8bit"])
def test_real_smollm2_quantized_passes_the_attention_probe_both_ways(smollm2, quantize):
    """With LLM.int8's default outlier threshold a padded row's outputs moved by up to 1.5 on SmolLM2 (outlier
    columns are chosen across the whole batch) and this probe refused the model; lsllm quantizes per row."""
    for bidirectional in (True, False):
        load_backbone(smollm2, bidirectional, quantize=quantize)  # raises AttentionModeError on a leak


def test_onnx_export_of_a_4bit_run_predicts_what_the_quantized_run_does(tiny_models, seq_files, tmp_path):
    pytest.importorskip("onnxruntime")
    run, out = tmp_path / "run", tmp_path / "onnx"
    assert main(_train_args(tiny_models["llama"], *seq_files, seq_files[1], run, "--quantize", "4bit")) == 0
    assert main(["export", str(run), "--output", str(out), "--format", "onnx"]) == 0
    assert json.loads((out / "lsllm.json").read_text())["quantize"] == "none"
    texts = [json.loads(line)["text"] for line in (run / "validation_predictions.jsonl").read_text().splitlines()]
    quantized = Predictor(run, precision="fp32").predict_rows(texts)
    exported = Predictor(out).predict_rows(texts)
    assert all(abs(a["probs"][k] - b["probs"][k]) < 1e-3 for a, b in zip(quantized, exported) for k in a["probs"])
