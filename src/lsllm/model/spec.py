"""What a trained lsllm model is: saved as `lsllm.json` beside its weights."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

SPEC_FILE = "lsllm.json"


@dataclass
class ModelSpec:
    task: Literal["seq", "token"]
    labels: list[str]
    base_model: str
    """The source as the user gave it: alias, .gguf path, folder or hub id."""
    bidirectional: bool = True
    pooling: Literal["last", "mean", "max", "first"] = "mean"
    pool_over: Literal["hidden", "logits"] = "hidden"
    """Pool final hidden states (default) or per-token logits, as the paper's code did."""
    encoder: bool = False
    """True for BERT-style encoders (always bidirectional)."""
    problem_type: Literal["single_label"] = "single_label"
    """Room for multi-label later; only single-label is trained today."""
    dropout: float = 0.1
    max_length: int = 128
    label_all_subtokens: bool = False
    lora: dict = field(default_factory=dict)
    """Resolved LoRA settings ({} for full fine-tuning)."""
    merged: bool = False
    lsllm_version: str = ""

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def save(self, folder: Path) -> None:
        from lsllm.report import write_json_atomic

        write_json_atomic(Path(folder) / SPEC_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> "ModelSpec":
        path = Path(folder) / SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not an lsllm model folder (no {SPEC_FILE})")
        return cls(**json.loads(path.read_text()))
