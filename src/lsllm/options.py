"""The command line's options, generated from the config dataclasses: every config field is an `lsllm train`
option with the help written under the field, so the config and the CLI can't drift apart."""
from __future__ import annotations

import ast
import functools
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import lsllm.config as config_module
from lsllm.config import SECTIONS, RunConfig, check_types
from lsllm.errors import ConfigError


# The command line: every config field is an `lsllm train` option, --field-name unless renamed here; a bool
# field is an on/off pair (--header/--no-header), a list field one comma-separated value.
FLAGS = {"prompt.file": ("--prompt-file",), "prompt.mode": ("--prompt-mode",),
         "model.bidirectional": ("--bidirectional/--causal",), "output": ("--output", "-o")}


# An `lsllm train` option: keyword (prompt_file), field ("prompt.file"), flags, type, help, field default.
Option = typing.NamedTuple("Option", [("name", str), ("path", str), ("flags", tuple), ("kind", type),
                                      ("help", str), ("default", Any)])


@functools.cache
def field_help() -> dict[str, str]:
    """'section.field' (or 'field' on RunConfig) -> the docstring written under that field in config.py."""
    try:
        tree = ast.parse(Path(config_module.__file__).read_text(encoding="utf-8"))
    except OSError:  # installed without sources: options without help
        return {}
    prefixes = {klass.__name__: f"{name}." for name, klass in SECTIONS.items()} | {"RunConfig": ""}
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name in prefixes]
    return {prefixes[c.name] + item.target.id: " ".join(doc.value.value.split())
            for c in classes for item, doc in zip(c.body, c.body[1:])
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            and isinstance(doc, ast.Expr) and isinstance(getattr(doc.value, "value", None), str)}


def _options() -> tuple[Option, ...]:
    helps, options = field_help(), []
    for prefix, klass in [(f"{name}.", klass) for name, klass in SECTIONS.items()] + [("", RunConfig)]:
        hints = typing.get_type_hints(klass)
        for f in [f for f in fields(klass) if not (klass is RunConfig and f.name in SECTIONS)]:
            path, hint = prefix + f.name, hints[f.name]
            kind = ([a for a in typing.get_args(hint) if a is not type(None)] or [hint])[0]
            listed = typing.get_origin(kind) is list or typing.get_origin(hint) is list
            dash = f.name.replace("_", "-")
            flags = FLAGS.get(path) or ((f"--{dash}/--no-{dash}",) if kind is bool else (f"--{dash}",))
            text = helps.get(path, "") + (" Comma-separated." if listed else "")
            name = flags[0].split("/")[0].lstrip("-").replace("-", "_")
            options.append(Option(name, path, flags, str if listed else kind, text.strip(),
                                  None if f.default is MISSING else f.default))
    assert len({o.name for o in options}) == len(options), "two config fields share an option name"
    return tuple(options)


OPTIONS = _options()


def config_from_options(values: dict[str, Any], config: str | Path | None = None) -> RunConfig:
    """The run a command line describes: the YAML file `config` (if any), then each given option (by
    Option.name; None: not given) over it. Lists are split at commas here; `validate` checks the ranges."""
    run = RunConfig.from_yaml(config) if config else RunConfig()
    options = {o.name: o for o in OPTIONS}
    if unknown := [name for name in values if name not in options]:
        raise ConfigError(f"unknown options {', '.join(unknown)}")
    for name, value in values.items():
        section, _, key = options[name].path.rpartition(".")
        if value is not None:
            setattr(getattr(run, section) if section else run, key, value)
    if problems := check_types(run):
        raise ConfigError("invalid options: " + "; ".join(problems))
    return run
