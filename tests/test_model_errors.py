"""A model source or model folder that can't be used is one ModelSourceError naming it, never a traceback,
a hub lookup for a typo, or an unpickled file."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from lsllm.config import ModelConfig
from lsllm.errors import ModelSourceError
from lsllm.model.build import build_model, load_model, save_model
from lsllm.model.sources import portable_source, resolve_source
from lsllm.model.spec import ModelSpec
from lsllm.prompting.predictor import PROMPT_FILE, PromptPredictor, save_prompt_run
from lsllm.prompting import PromptConfig

LABELS = ["neg", "pos"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub, and an empty Hugging Face cache (the developer's own cache must not change results)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _raises(call, *needles) -> str:
    with pytest.raises(ModelSourceError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert str(needle) in message, (needle, message)
    return message


# -- 1. mistyped aliases and missing folders ----------------------------------------------------


def test_unknown_source_is_refused_offline_and_a_cached_hub_id_loads(offline, tiny_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _raises(lambda: resolve_source("smollm2-13m"), "unknown model 'smollm2-13m'", "did you mean smollm2-135m?",
            "not in the Hugging Face cache")
    _raises(lambda: resolve_source("models/mine"), "models/mine", tmp_path / "models" / "mine")
    for path in ["./x", "x/y/z"]:
        _raises(lambda: resolve_source(path), "does not exist", (tmp_path / path).resolve())
    # A hub id found in the local cache resolves to its snapshot folder, without the network.
    repo = offline / "models--org--tiny"
    snapshot = repo / "snapshots" / "0123abc"
    shutil.copytree(tiny_models["llama"], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    assert resolve_source("org/tiny") == str(snapshot)
    assert portable_source("org/tiny") == "org/tiny" and portable_source("smollm2-135m") == "smollm2-135m"


# -- 2. damaged GGUF files ------------------------------------------------------------------------


def write_tiny_gguf(path: Path, quantized: bool = False) -> Path:
    """A tiny random Llama as a real GGUF file (F32 tensors, or Q8_0 matrices when `quantized`; byte-level BPE
    tokenizer)."""
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    hidden, ff, heads, kv = 32, 64, 4, 2
    tokens = ["<|endoftext|>"] + list(bytes_to_unicode().values()) + ["Ġt"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hidden // heads)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3] + [1] * (len(tokens) - 1))
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_merges(["Ġ t"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    rng = np.random.default_rng(0)

    def matrix(name: str, shape: tuple[int, int]) -> None:
        values = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        if not quantized:
            return w.add_tensor(name, values)
        q8 = gguf.GGMLQuantizationType.Q8_0
        w.add_tensor(name, gguf.quants.quantize(values, q8), raw_dtype=q8)

    matrix("token_embd.weight", (len(tokens), hidden))
    kv_dim = hidden // heads * kv
    for name, shape in [("attn_q", (hidden, hidden)), ("attn_k", (kv_dim, hidden)), ("attn_v", (kv_dim, hidden)),
                        ("attn_output", (hidden, hidden)), ("ffn_gate", (ff, hidden)), ("ffn_up", (ff, hidden)),
                        ("ffn_down", (hidden, ff))]:
        matrix(f"blk.0.{name}.weight", shape)
    for name in ["blk.0.attn_norm", "blk.0.ffn_norm", "output_norm"]:
        w.add_tensor(f"{name}.weight", np.ones(hidden, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_damaged_gguf_is_named_and_a_good_one_converts(tmp_path, monkeypatch):
    monkeypatch.setenv("LSLLM_CACHE", str(tmp_path / "cache"))
    good = write_tiny_gguf(tmp_path / "tiny.gguf")
    data = good.read_bytes()
    cut_header = tmp_path / "cut-header.gguf"
    cut_header.write_bytes(data[:300])
    cut_tensors = tmp_path / "cut-tensors.gguf"
    cut_tensors.write_bytes(data[:-10])
    noise = tmp_path / "noise.gguf"
    noise.write_bytes(np.random.default_rng(1).bytes(4096))
    for bad in [cut_header, cut_tensors, noise]:
        _raises(lambda: resolve_source(str(bad)), bad, "damaged or truncated", "download it again")
    assert not (tmp_path / "cache" / "gguf").exists()  # nothing half-converted left in the cache
    folder = Path(resolve_source(str(good)))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700


def test_two_processes_converting_one_gguf_convert_it_once(tmp_path, monkeypatch):
    # Two `lsllm train` runs started together on a fresh machine (a sweep with --jobs 2) once raced here:
    # both converted, and the second rename failed with "Directory not empty".
    import threading
    import time
    import warnings

    import lsllm.model.sources as sources

    monkeypatch.setenv("LSLLM_CACHE", str(tmp_path / "cache"))
    good = write_tiny_gguf(tmp_path / "tiny.gguf")
    real, calls = sources._dequantize, []

    def slow_dequantize(path, folder):
        calls.append(folder)
        time.sleep(0.5)  # long enough that both callers are inside gguf_to_folder at once
        real(path, folder)

    monkeypatch.setattr(sources, "_dequantize", slow_dequantize)
    results, errors, said = [], [], []

    def convert():
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                results.append(resolve_source(str(good)))
            said.extend(str(w.message) for w in seen)
        except BaseException as err:  # noqa: BLE001 - the test reports it
            errors.append(err)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1 and len(set(results)) == 1
    assert any("waiting for another lsllm process to finish writing" in m for m in said)  # the waiter says why
    folder = Path(results[0])
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir() if "tmp" in p.name] == []  # no temp folder left


# -- 3. broken model folders, pickled weights -----------------------------------------------------


def test_broken_model_folders_and_pickled_weights(tiny_models, tmp_path):
    def folder(name: str, edit) -> Path:
        path = tmp_path / name
        shutil.copytree(tiny_models["llama"], path)
        edit(path)
        return path

    config = json.loads((tiny_models["llama"] / "config.json").read_text())
    bad_json = folder("bad-json", lambda p: (p / "config.json").write_text("{not json"))
    _raises(lambda: resolve_source(str(bad_json)), bad_json / "config.json", "not valid JSON")
    no_type = folder("no-type", lambda p: (p / "config.json").write_text(
        json.dumps({k: v for k, v in config.items() if k != "model_type"})))
    _raises(lambda: resolve_source(str(no_type)), no_type / "config.json", "no model_type")
    unknown = folder("unknown", lambda p: (p / "config.json").write_text(json.dumps(config | {"model_type": "zorg"})))
    _raises(lambda: resolve_source(str(unknown)), unknown / "config.json", "'zorg'", "upgrade transformers")
    pickled = folder("pickled", lambda p: (p / "model.safetensors").rename(p / "pytorch_model.bin"))
    _raises(lambda: resolve_source(str(pickled)), pickled, "pytorch_model.bin", "safetensors only")
    # A LoRA adapter saved as a pickle is refused before anything is unpickled.
    model, tok = build_model(ModelConfig(model=str(tiny_models["llama"]), task="seq"), LABELS)
    save_model(model, tok, tmp_path / "run")
    adapter = tmp_path / "run" / "adapter"
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    _raises(lambda: load_model(tmp_path / "run"), adapter / "adapter_model.bin", "pickle")


# -- 4. lsllm.json --------------------------------------------------------------------------------


def test_invalid_lsllm_json_names_the_file(tiny_models, tmp_path):
    model, tok = build_model(ModelConfig(model=str(tiny_models["llama"]), task="seq", lora="none"), LABELS)
    save_model(model, tok, tmp_path / "m")
    spec_file = tmp_path / "m" / "lsllm.json"
    good = json.loads(spec_file.read_text())
    cases = [("{broken", "not valid JSON"), (good | {"foo": 1}, "unknown key 'foo'"),
             ({k: v for k, v in good.items() if k != "task"}, "missing key 'task'"),
             (good | {"task": "regression"}, "'task'"), (good | {"labels": [0, 1]}, "list of strings"),
             (good | {"pooling": "avg"}, "last, mean, max, first"), (good | {"max_length": "128"}, "'max_length'")]
    for content, needle in cases:
        spec_file.write_text(content if isinstance(content, str) else json.dumps(content))
        _raises(lambda: load_model(tmp_path / "m"), spec_file, needle)
    spec_file.write_text(json.dumps(good))
    (tmp_path / "m" / "head.safetensors").unlink()
    _raises(lambda: load_model(tmp_path / "m"), tmp_path / "m", "no classification head")
    _raises(lambda: load_model(tmp_path), tmp_path, "not an lsllm model or run folder", "lsllm.json")


def test_old_lsllm_json_with_problem_type_loads(tmp_path):
    # lsllm.json files written before problem_type was retired carry "problem_type": "single_label".
    ModelSpec(task="seq", labels=LABELS, base_model="smollm2-135m").save(tmp_path)
    spec_file = tmp_path / "lsllm.json"
    good = json.loads(spec_file.read_text())
    assert "problem_type" not in good
    spec_file.write_text(json.dumps(good | {"problem_type": "single_label"}))
    assert ModelSpec.load(tmp_path) == ModelSpec(**good)
    spec_file.write_text(json.dumps(good | {"problem_type": "multi_label"}))
    _raises(lambda: ModelSpec.load(tmp_path), spec_file, "'problem_type' is \"multi_label\"", "single_label")


# -- 5. relative base-model paths -----------------------------------------------------------------


def test_relative_base_model_is_recorded_absolute(tiny_models, tmp_path, monkeypatch):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    shutil.copytree(tiny_models["llama"], here / "models" / "tiny")
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    # LoRA: the run keeps only an adapter
    model, tok = build_model(ModelConfig(model="models/tiny", task="seq"), LABELS)
    assert model.spec.base_model == str(here / "models" / "tiny")
    save_model(model, tok, here / "run")
    ids = torch.tensor([[5, 9, 13]])
    with torch.no_grad():
        before = model.eval()(ids, torch.ones_like(ids)).logits
    monkeypatch.chdir(elsewhere)
    reloaded, _ = load_model(here / "run")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids, torch.ones_like(ids)).logits, before)
    (here / "models" / "tiny").rename(here / "models" / "moved")
    _raises(lambda: load_model(here / "run"), here / "models" / "tiny", "no longer exists", "restore it")


# -- 6. prompt.json -------------------------------------------------------------------------------


def test_prompt_json_is_checked_and_its_adapter_stays_inside_the_run(tiny_models, tmp_path, monkeypatch):
    shutil.copytree(tiny_models["llama"], tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    save_prompt_run(run, "zero-shot", "tiny", "seq", LABELS, PromptConfig(), "score", [])
    prompt_file = run / PROMPT_FILE
    info = json.loads(prompt_file.read_text())
    assert info["model"] == str(tmp_path / "tiny")  # recorded absolute, so it loads from anywhere
    monkeypatch.chdir(tmp_path.parent)
    assert PromptPredictor(run).predict(["a good film"])[0] in LABELS
    for adapter in ["../../elsewhere", "/tmp", "model/../../x"]:
        prompt_file.write_text(json.dumps(info | {"adapter": adapter}))
        _raises(lambda: PromptPredictor(run), prompt_file, "outside the run folder")
    for content, needle in [("[1, 2", "not valid JSON"), ({k: v for k, v in info.items() if k != "labels"},
                                                           "missing key 'labels'"),
                            (info | {"prompt": {"colour": "blue"}}, "invalid prompt settings")]:
        prompt_file.write_text(content if isinstance(content, str) else json.dumps(content))
        _raises(lambda: PromptPredictor(run), prompt_file, needle)
