"""LoRA presets, applied with PEFT to the backbone only (the head trains in full, always)."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from lsllm.errors import ConfigError, ModelSourceError
from lsllm.model.sources import loading

LoraPreset = Literal["paper", "all-linear", "none"]

# Names of the query/value projections across families (Llama-style first, then BERT-style).
_QV_NAMES = [("q_proj", "v_proj"), ("query", "value"), ("q", "v"), ("Wqkv",), ("qkv_proj",), ("c_attn",)]


DEFAULT_RANK, DEFAULT_ALPHA = 12, 32
"""The paper's LoRA rank and alpha."""


def linear_names(backbone: nn.Module) -> list[str]:
    """Leaf names of every nn.Linear in the backbone (e.g. q_proj, ..., down_proj)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in backbone.named_modules() if isinstance(m, nn.Linear)})


def resolve_lora(backbone: nn.Module, preset: LoraPreset, rank: int | None = None, alpha: int | None = None,
                 dropout: float | None = None, targets: list[str] | None = None) -> dict:
    """The concrete LoRA settings for this backbone ({} means full fine-tuning)."""
    if preset == "none":
        return {}
    names = linear_names(backbone)
    if targets is None:
        if preset == "paper":
            targets = next((list(qv) for qv in _QV_NAMES if all(n in names for n in qv)), None)
            if targets is None:
                raise ConfigError(f"can't find query/value projections for the 'paper' LoRA preset among {names}; "
                                  "pass lora targets explicitly")
        elif preset == "all-linear":
            targets = names
        else:
            raise ConfigError(f"unknown LoRA preset {preset!r}; choose paper, all-linear or none")
    missing = [t for t in targets if t not in names]
    if missing:
        raise ConfigError(f"LoRA targets {missing} are not linear layers of this model; it has {names}")
    if dropout is None:
        # The paper's 0.1 on q/v; none on all-linear, where dropout's random masks cost ~22% of a CPU
        # training step (420 bernoulli calls per step on SmolLM2; see benchmarks/RESULTS.md).
        dropout = 0.1 if preset == "paper" else 0.0
    return {"preset": preset, "r": rank or DEFAULT_RANK, "alpha": alpha or DEFAULT_ALPHA, "dropout": dropout, "targets": targets}


def apply_lora(backbone: nn.Module, settings: dict) -> nn.Module:
    """Wrap the backbone in PEFT LoRA; with empty settings every weight trains."""
    if not settings:
        return backbone
    config = LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                        target_modules=settings["targets"], bias="none")
    with _peft_quiet():
        return get_peft_model(backbone, config)


@contextmanager
def _peft_quiet():
    # PEFT reads `model.is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning on
    # every wrap and load: noise for lsllm's users (library and CLI alike), not something they can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def check_adapter(folder: Path) -> None:
    """A saved adapter is adapter_config.json + adapter_model.safetensors. PEFT would also load an
    adapter_model.bin, by unpickling it, which can run code: refuse it instead."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise ModelSourceError(f"LoRA adapter folder {folder} has no adapter_config.json; the run folder is "
                               "incomplete: copy it again")
    if (folder / "adapter_model.safetensors").is_file():
        return
    pickles = [name for name in ("adapter_model.bin", "adapter_model.pt") if (folder / name).is_file()]
    if pickles:
        raise ModelSourceError(f"LoRA adapter {folder / pickles[0]} is a pickle file; lsllm loads "
                               "adapter_model.safetensors only, since unpickling can run code: convert it to "
                               "safetensors (load and save_pretrained) where you trust the file")
    raise ModelSourceError(f"LoRA adapter folder {folder} has no adapter_model.safetensors; the run folder is "
                           "incomplete: copy it again")


def load_lora(backbone: nn.Module, adapter_dir: str | Path, is_trainable: bool = False) -> PeftModel:
    check_adapter(Path(adapter_dir))
    with loading(adapter_dir, "LoRA adapter"), _peft_quiet():
        return PeftModel.from_pretrained(backbone, str(adapter_dir), is_trainable=is_trainable)
