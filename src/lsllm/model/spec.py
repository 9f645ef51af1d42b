"""What a trained lsllm model is: saved as `lsllm.json` beside its weights."""
from __future__ import annotations

import json
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from lsllm.errors import ModelSourceError
from lsllm.files import read_json_object, write_json_atomic

SPEC_FILE = "lsllm.json"
_RETIRED = {"problem_type": "single_label"}
"""Keys older lsllm versions wrote, with the only value they ever held: read and dropped on load."""


@dataclass
class ModelSpec:
    task: Literal["seq", "token"]
    labels: list[str]
    base_model: str
    """Alias or hub id as given; a .gguf file or folder as an absolute path (`portable_source`)."""
    bidirectional: bool = True
    pooling: Literal["last", "mean", "max", "first"] = "mean"
    pool_over: Literal["hidden", "logits"] = "hidden"
    """Pool final hidden states (default) or per-token logits, as the paper's code did."""
    encoder: bool = False
    """True for BERT-style encoders (always bidirectional)."""
    dropout: float = 0.1
    max_length: int = 128
    label_all_subtokens: bool = False
    lora: dict = field(default_factory=dict)
    """Resolved LoRA settings ({} for full fine-tuning)."""
    quantize: Literal["none", "4bit", "8bit"] = "none"
    """How the frozen base was quantized in training (QLoRA); loading quantizes it the same way again."""
    merged: bool = False
    lsllm_version: str = ""
    format: Literal["hf", "onnx"] = "hf"
    """Weights as PyTorch (transformers/PEFT folders) or one ONNX graph (`lsllm export --format onnx`)."""

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def save(self, folder: Path) -> None:
        write_json_atomic(Path(folder) / SPEC_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> "ModelSpec":
        """Read and check `lsllm.json`: any problem is one ModelSourceError line naming the file."""
        path = Path(folder) / SPEC_FILE
        if not path.is_file():
            raise ModelSourceError(f"{folder} is not an lsllm model or run folder (no {SPEC_FILE}); pass a run "
                                   "folder from `lsllm train` or an export")
        data = read_json_object(path, "restore it from a copy of the run", ModelSourceError)
        problem = _retired_problem(data) or _spec_problem(data)
        if problem:
            raise ModelSourceError(f"{path}: {problem}")
        return cls(**data)


_FIX = "fix the file by hand or restore it from a copy of the run"


def _retired_problem(data: dict) -> str | None:
    """Drop the keys older versions wrote (in place); a value they never wrote is a problem."""
    for key, value in _RETIRED.items():
        if key in data and (found := data.pop(key)) != value:
            return f"'{key}' is {json.dumps(found, ensure_ascii=False)[:60]}, expected one of {value}; {_FIX}"
    return None


def _spec_problem(data: dict) -> str | None:
    """The first thing wrong with a decoded lsllm.json, or None. Checked against the dataclass itself,
    so a new field is checked as soon as it is declared."""
    from lsllm import __version__

    known = {f.name: f for f in fields(ModelSpec)}
    for key in data:
        if key not in known:
            return (f"unknown key '{key}' (written by a newer lsllm than {__version__}, or edited by hand); "
                    f"upgrade lsllm or remove the key")
    hints = typing.get_type_hints(ModelSpec)
    for name, f in known.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                return f"missing key '{name}'; {_FIX}"
            continue
        expected = _type_problem(data[name], hints[name])
        if expected:
            shown = json.dumps(data[name], ensure_ascii=False)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            return f"'{name}' is {shown}, expected {expected}; {_FIX}"
    if not data["labels"]:
        return f"'labels' is empty; {_FIX}"
    return None


def _type_problem(value, hint) -> str | None:
    """What `value` should have been, when it does not match the annotation `hint`."""
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        return None if value in choices and isinstance(value, str) else "one of " + ", ".join(choices)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:  # bool is an int in Python, not in lsllm.json
        return None if isinstance(value, int) and not isinstance(value, bool) and value > 0 else "a positive integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
        return None if ok else "a number from 0 to 1"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if typing.get_origin(hint) is list:
        return None if isinstance(value, list) and all(isinstance(v, str) for v in value) else "a list of strings"
    if typing.get_origin(hint) is dict or hint is dict:
        return None if isinstance(value, dict) else "an object"
    raise TypeError(f"ModelSpec field type {hint} has no check")  # a new field type: add its check here
