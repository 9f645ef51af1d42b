"""`lsllm train`'s options come from the config dataclasses: every field a flag, with its docstring as help."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from dataclasses import fields
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lsllm.cli import _quiet, app, train_config
from lsllm.config import SECTIONS, RunConfig
from lsllm.options import OPTIONS, config_from_options

ASSETS = Path(__file__).parent / "assets"
# The flags `lsllm train` had before its options were generated; each must keep its name and meaning.
KEPT = {"--model": "model.model", "--task": "model.task", "--train": "data.train", "--validation": "data.validation",
        "--test": "data.test", "--format": "data.format", "--text-column": "data.text_column",
        "--text-pair-column": "data.text_pair_column", "--label-column": "data.label_column",
        "--token-column": "data.token_column", "--tag-column": "data.tag_column", "--header": "data.header",
        "--no-header": "data.header", "--labels": "data.labels", "--bidirectional": "model.bidirectional",
        "--causal": "model.bidirectional", "--pooling": "model.pooling", "--pool-over": "model.pool_over",
        "--lora": "model.lora", "--lora-rank": "model.lora_rank", "--epochs": "train.epochs",
        "--max-steps": "train.max_steps", "--batch-size": "train.batch_size", "--grad-accum": "train.grad_accum",
        "--lr": "train.lr", "--max-length": "data.max_length", "--eval-every": "train.eval_every",
        "--early-stopping": "train.early_stopping", "--class-weights": "train.class_weights",
        "--no-class-weights": "train.class_weights", "--precision": "train.precision", "--seed": "train.seed",
        "--compile": "train.compile", "--no-compile": "train.compile", "--method": "method",
        "--k-shot": "prompt.k_shot", "--label-names": "prompt.label_names", "--prompt-file": "prompt.file",
        "--prompt-mode": "prompt.mode", "--output": "output", "-o": "output"}


def get(config: RunConfig, path: str):
    section, _, key = path.rpartition(".")
    return getattr(getattr(config, section) if section else config, key)


def all_fields(config: RunConfig) -> dict:
    return {o.path: get(config, o.path) for o in OPTIONS}


def test_every_config_field_is_an_option_with_help():
    paths = {o.path for o in OPTIONS}
    expected = {f"{name}.{f.name}" for name, klass in SECTIONS.items() for f in fields(klass)}
    assert paths == expected | {"output", "method"}
    assert all(o.help for o in OPTIONS), [o.path for o in OPTIONS if not o.help]
    assert next(o for o in OPTIONS if o.path == "train.max_steps").help == \
        "Stop after this many optimizer steps (overrides epochs)."  # the field's docstring


def test_help_lists_every_option():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    for o in OPTIONS:
        for flag in (f for decl in o.flags for f in decl.split("/")):
            assert re.search(rf"(^|\s){re.escape(flag)}(\s|$)", text, re.M), flag
    for flag in ("--resume", "--verbose", *KEPT):
        assert re.search(rf"(^|\s){re.escape(flag)}(\s|$)", text, re.M), flag
    # each option's help text on the click parameter the help is printed from
    command = typer.main.get_command(app).get_command(None, "train")
    assert all(p.help for p in command.params if p.name != "config"), [p.name for p in command.params if not p.help]


def test_todays_flags_set_their_fields():
    defaults = all_fields(RunConfig())
    values = {"str": "x", "int": "7", "float": "0.25"}
    for flag, path in KEPT.items():
        option = next(o for o in OPTIONS if o.path == path)
        if option.kind is bool:
            argv, expected = [flag], not (flag.startswith("--no-") or flag == "--causal")
        else:
            raw = "a,b" if path == "data.labels" else values[option.kind.__name__]
            argv, expected = [flag, raw], option.kind(raw) if path != "data.labels" else ["a", "b"]
        config = train_config(argv)
        assert get(config, path) == expected, (flag, get(config, path))
        # and nothing else changed
        assert {k: v for k, v in all_fields(config).items() if k != path} == \
               {k: v for k, v in defaults.items() if k != path}, flag


def test_every_generated_option_sets_its_field():
    for o in OPTIONS:
        if o.kind is bool:
            on, _, off = o.flags[0].partition("/")
            assert get(train_config([on]), o.path) is True and get(train_config([off]), o.path) is False, o.path
        else:
            raw = {int: "9", float: "0.5", str: "p,q"}[o.kind]
            config = train_config([o.flags[0], raw])
            expected = ["p", "q"] if o.path in ("data.labels", "model.lora_targets") else o.kind(raw)
            assert get(config, o.path) == expected, o.path


def test_named_mappings():
    config = train_config(["--no-header", "--causal", "--labels", "a,b", "--prompt-file", "p.yaml",
                           "--prompt-mode", "generate", "-o", "runs/x", "--lora-targets", "q_proj, v_proj",
                           "--text-column", "0", "--lr", "1e-4"])
    assert config.data.header is False and config.model.bidirectional is False
    assert config.data.labels == ["a", "b"] and config.model.lora_targets == ["q_proj", "v_proj"]
    assert config.prompt.file == "p.yaml" and config.prompt.mode == "generate" and config.output == "runs/x"
    assert config.data.text_column == "0" and config.train.lr == 1e-4
    config = train_config(["--header", "--bidirectional", "--class-weights", "--compile"])
    assert config.data.header and config.model.bidirectional and config.train.class_weights and config.train.compile
    assert train_config([]) == RunConfig()  # nothing given: every default, header/bidirectional still "detect"


def test_yaml_values_are_overridden_only_by_given_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  header: true\n  labels: [neg, pos]\nmodel:\n  bidirectional: true\n  lora_rank: 4\n"
                    "train:\n  lr: 1e-4\n  batch_size: 4\n  compile: true\nprompt:\n  mode: generate\n"
                    "output: runs/yaml\n")
    assert train_config([path]) == RunConfig.from_yaml(path)
    config = train_config([path, "--batch-size", "16", "--causal", "--no-compile", "-o", "runs/flag"])
    assert config.train.batch_size == 16 and config.model.bidirectional is False and config.train.compile is False
    assert config.output == "runs/flag"
    # untouched by the flags: the YAML's values, not the defaults
    assert config.data.header is True and config.data.labels == ["neg", "pos"] and config.model.lora_rank == 4
    assert config.train.lr == 1e-4 and config.prompt.mode == "generate"
    assert config_from_options({"batch_size": 16, "lr": None}, path).train.lr == 1e-4


def test_from_options_rejects_unknown_names():
    from lsllm.errors import ConfigError

    with pytest.raises(ConfigError, match="learning_rate"):
        config_from_options({"learning_rate": 0.1})


def test_quiet_hides_library_warnings_and_logging_unless_verbose():
    logger = logging.getLogger("some_library.module")  # not transformers: CI sets TRANSFORMERS_VERBOSITY
    for verbose in (False, True):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with _quiet(verbose):
                warnings.warn_explicit("old API", FutureWarning, "modeling_utils.py", 1,
                                       module="transformers.modeling_utils")
                warnings.warn_explicit("lsllm's own", UserWarning, "x.py", 1, module="lsllm.x")
                enabled = logger.isEnabledFor(logging.WARNING)
            warnings.warn_explicit("after", FutureWarning, "modeling_utils.py", 2, module="transformers.x")
        messages = [str(w.message) for w in seen]
        assert ("old API" in messages) == verbose and enabled == verbose
        assert "lsllm's own" in messages and "after" in messages  # never lsllm's own; restored on the way out
    assert logger.isEnabledFor(logging.WARNING)


@pytest.mark.slow
@pytest.mark.parametrize("lora", ["all-linear", "none"])
def test_train_prints_only_lsllm_lines(smollm2, lora, tmp_path):
    """On the real default model: PEFT's wrapping and loading raise transformers' `is_gradient_checkpointing`
    FutureWarning, and saving a full model shows a "Writing model shards" bar; neither reaches the user."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    data = ASSETS / "seq_header.csv"
    result = subprocess.run([sys.executable, "-m", "lsllm.cli", "train", "--train", data, "--validation", data,
                             "--max-steps", "2", "--eval-every", "2", "--lora", lora, "-o", tmp_path / "run"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "validation: accuracy" in result.stdout
    lines = re.split(r"[\r\n]", result.stderr)
    stray = [line for line in lines if re.search(r"Warning|Writing model shards|Loading weights", line)]
    assert not stray, stray
