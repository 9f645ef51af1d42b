"""Run configuration: Data, Model and Train dataclasses; YAML in and out; one error for every problem."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """Invalid configuration; the message lists every problem found."""


@dataclass
class DataConfig:
    train: str | None = None
    """Training file (CSV/TSV/JSONL/JSON/Parquet/CoNLL or a saved `datasets` folder)."""
    validation: str | None = None
    """Validation file: picks the best checkpoint. Without one, the last step is kept."""
    test: str | None = None
    """Test file: scored once, with the best checkpoint, at the end."""
    format: str | None = None
    """Force a reader format instead of guessing from the extension."""
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    token_column: str | None = None
    tag_column: str | None = None
    header: bool | None = None
    """CSV/TSV: whether the first row is a header (default: detect)."""
    labels: list[str] | None = None
    """Label names in order; default: from the training split."""
    max_length: int = 128
    """Longest input in tokens; longer token-task sentences are split into overlapping windows."""
    label_all_subtokens: bool = False
    """Token tasks: train on every sub-token of a word instead of the first only."""


@dataclass
class ModelConfig:
    model: str = "smollm2-135m"
    """Alias, .gguf file, Hugging Face folder or hub id."""
    task: str = "seq"
    """seq (sequence classification) or token (tagging)."""
    bidirectional: bool | None = None
    """LS-un (unmasked attention) when true; LS (causal) when false. Default: LS-un for token tasks (where
    it is decisive), LS for sequence tasks (where it measured as good or better), always on for encoders."""
    pooling: str | None = None
    """last, mean, max or first; default: last when causal, mean when bidirectional, first for encoders."""
    pool_over: str = "hidden"
    """Pool hidden states (hidden) or per-token logits (logits)."""
    lora: str = "all-linear"
    """LoRA preset: paper (r12 a32 on q,v), all-linear, or none (full fine-tuning)."""
    lora_rank: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    lora_targets: list[str] | None = None
    dropout: float = 0.1
    attn_implementation: str = "auto"
    """auto (SDPA on GPUs, eager on CPUs), sdpa, eager, or any transformers attention backend."""


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs)."""
    batch_size: int = 8
    grad_accum: int = 1
    lr: float | None = None
    """Peak learning rate; default 5e-4 with LoRA, 5e-5 for full fine-tuning."""
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    eval_every: int | None = None
    """Evaluate every N optimizer steps (and always at each epoch end)."""
    early_stopping: int | None = None
    """Stop after N evaluations without improvement of the main validation metric."""
    seed: int = 0
    class_weights: bool = False
    """Weight the loss by inverse class frequency (sequence tasks)."""
    precision: str = "auto"
    """auto (bf16 where the hardware has it), bf16 or fp32."""
    log_every: int = 10
    eval_batch_size: int = 32
    compile: bool = False
    """Compile each transformer block (torch.compile): 1.3-1.4x faster steps once compiled, after a one-off
    compile of up to ~1.5 min on 2 CPU cores; pays on long runs (benchmarks/RESULTS.md, section 2)."""


@dataclass
class PromptRunConfig:
    """Settings of the prompting baselines (--method zero-shot / few-shot)."""

    file: str | None = None
    """YAML with template, label_names, use_chat_template, k_shot, seed, max_length (see prompting.py)."""
    k_shot: int = 4
    """Examples from train shown in few-shot prompts."""
    label_names: str | None = None
    """Natural-language label names, e.g. "0=bearish,1=bullish,2=neutral"."""
    mode: str = "score"
    """score (rank every label by log-likelihood) or generate (free generation, exact match)."""


METHODS = ("ls", "zero-shot", "few-shot", "instruct")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prompt: PromptRunConfig = field(default_factory=PromptRunConfig)
    output: str | None = None
    method: str = "ls"
    """ls (label-supervised fine-tuning), zero-shot / few-shot (prompting, no training) or instruct
    (LoRA instruction tuning on prompt -> label text)."""

    def learning_rate(self) -> float:
        if self.train.lr is not None:
            return self.train.lr
        return 5e-5 if self.model.lora == "none" else 5e-4

    def validate(self) -> None:
        problems = []
        if not self.data.train:
            problems.append("no training data: pass --train FILE")
        if not self.output:
            problems.append("no run folder: pass --output RUN")
        if self.model.task not in ("seq", "token"):
            problems.append(f"task {self.model.task!r} must be seq or token")
        if self.model.pooling not in (None, "last", "mean", "max", "first"):
            problems.append(f"pooling {self.model.pooling!r} must be last, mean, max or first")
        if self.model.pool_over not in ("hidden", "logits"):
            problems.append(f"pool_over {self.model.pool_over!r} must be hidden or logits")
        if self.model.lora not in ("paper", "all-linear", "none"):
            problems.append(f"lora {self.model.lora!r} must be paper, all-linear or none")
        if self.train.precision not in ("auto", "bf16", "fp32"):
            problems.append(f"precision {self.train.precision!r} must be auto, bf16 or fp32")
        for name in ("batch_size", "grad_accum", "log_every", "eval_batch_size"):
            if getattr(self.train, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.train.max_steps is None and self.train.epochs <= 0:
            problems.append("epochs must be positive")
        if self.data.max_length < 8:
            problems.append("max_length must be at least 8")
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} must be one of {', '.join(METHODS)}")
        if self.train.compile and self.method != "ls":
            problems.append(f"--compile applies to label-supervised runs (--method ls), not {self.method}")
        if self.prompt.mode not in ("score", "generate"):
            problems.append(f"prompt mode {self.prompt.mode!r} must be score or generate")
        for path in (self.data.train, self.data.validation, self.data.test):
            if path and not Path(path).exists():
                problems.append(f"data file {path} does not exist")
        if problems:
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "RunConfig":
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prompt": PromptRunConfig}
        unknown = [k for k in raw if k not in (*sections, "output", "method")]
        kwargs: dict[str, Any] = {k: raw[k] for k in ("output", "method") if k in raw}
        for name, klass in sections.items():
            values = raw.get(name) or {}
            known = {f.name for f in fields(klass)}
            unknown += [f"{name}.{k}" for k in values if k not in known]
            kwargs[name] = klass(**{k: v for k, v in values.items() if k in known})
        if unknown:
            raise ConfigError(f"{source}: unknown keys {', '.join(unknown)}")
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping with data/model/train sections")
        return cls.from_dict(raw, str(path))
