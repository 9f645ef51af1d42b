"""Run configuration: Data, Model and Train dataclasses; YAML in and out; one error for every problem
(the CLI options are generated from these dataclasses in lsllm/options.py)."""
from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lsllm.files import is_inside


from lsllm.errors import ConfigError


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
    """Text column (name or 0-based index)."""
    text_pair_column: str | None = None
    """Second text column (name or index), joined to the first with a separator."""
    label_column: str | None = None
    """Label column (name or index)."""
    token_column: str | None = None
    """CoNLL token column (default: the first)."""
    tag_column: str | None = None
    """CoNLL tag column (default: the last)."""
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
    """LoRA rank r (default 12)."""
    lora_alpha: int | None = None
    """LoRA alpha (default 32)."""
    lora_dropout: float | None = None
    """Dropout on the LoRA inputs; default 0.1 for the paper preset, 0 for all-linear."""
    lora_targets: list[str] | None = None
    """Linear layers to adapt (e.g. q_proj,v_proj); default: the preset's."""
    dropout: float = 0.1
    """Dropout before the classification head."""
    quantize: str = "none"
    """QLoRA: load the frozen base in 4bit (NF4, double quantization) or 8bit through bitsandbytes (CPU or CUDA),
    with LoRA and the head in float32; none keeps it in the training precision."""
    attn_implementation: str = "auto"
    """auto (SDPA on GPUs; on CPUs eager up to max_length 256, SDPA above), sdpa, eager, or any transformers
    attention backend."""


DEFAULT_BATCH_TOKENS = 256
"""LS runs' default batch: padded tokens (benchmarks/RESULTS.md, section 2c: time to accuracy)."""


@dataclass
class TrainConfig:
    epochs: float = 1.0
    """Passes over the training data (may be fractional)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs)."""
    batch_size: int | None = None
    """Examples per forward pass, instead of a token budget (--method instruct: default 8)."""
    batch_tokens: int | None = None
    """Size each batch by this many padded tokens (LS default 256 unless --batch-size is given): similar-length
    texts fill it, so short texts make batches of many rows; wins over batch_size when both are set."""
    grad_accum: int = 1
    """Gradient accumulation: batches per optimizer step."""
    lr: float | None = None
    """Peak learning rate; default 1e-3 with LoRA (5e-4 with --method instruct), 5e-5 for full fine-tuning."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.06
    """Share of the steps spent warming the learning rate up (then linear decay)."""
    max_grad_norm: float = 1.0
    """Clip gradients to this norm (0: no clipping)."""
    eval_every: int | None = None
    """Evaluate every N optimizer steps (and always at each epoch end)."""
    evals_per_epoch: int | None = None
    """Evaluate N times per epoch, evenly spaced (instead of eval_every): a cadence that follows the data size."""
    early_stopping: int | None = None
    """Stop after N evaluations without improvement of the main validation metric."""
    target_metric: float | None = None
    """Stop as soon as the main validation metric (accuracy or entity F1, 0-1) reaches this value: time to
    accuracy. log.jsonl's validation lines carry the training seconds and examples seen so far."""
    seed: int = 0
    """Random seed: the same seed and data give the same metrics."""
    class_weights: bool = False
    """Weight the loss by inverse class frequency (sequence tasks)."""
    precision: str = "auto"
    """auto (bf16 where the hardware has it), bf16 or fp32."""
    log_every: int = 10
    """Write a training line to log.jsonl every N optimizer steps."""
    eval_batch_size: int = 32
    """Examples per forward pass when validating and testing."""
    compile: bool | None = None
    """Compile each transformer block (torch.compile): faster steps once compiled, after a one-off compile of
    a minute or two on a CPU. Unset: compiled once the first steps show the rest of the run (1,000+ steps) will repay it
    (benchmarks/RESULTS.md, section 2g); --compile: from the start; --no-compile: never."""
    report_to: str = "none"
    """Also send log.jsonl's records, the config and the final metrics to tensorboard (event files in the run's
    tensorboard/), mlflow (MLFLOW_TRACKING_URI, else the file store mlruns/ beside the run) or wandb; none."""


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
    """Run folder to create."""
    method: str = "ls"
    """ls (label-supervised fine-tuning), zero-shot / few-shot (prompting, no training) or instruct
    (LoRA instruction tuning on prompt -> label text)."""

    def learning_rate(self) -> float:
        """The peak learning rate: --lr, else the default the time-to-accuracy runs picked (RESULTS.md 2c)."""
        if self.train.lr is not None:
            return self.train.lr
        if self.model.lora == "none":
            return 5e-5
        return 5e-4 if self.method == "instruct" else 1e-3

    def batching(self) -> tuple[str, int]:
        """("tokens", padded tokens per batch) or ("examples", examples per batch): --batch-tokens, else
        --batch-size, else a 256-token budget for LS runs and 8 examples for instruction tuning."""
        t = self.train
        if t.batch_tokens:
            return "tokens", t.batch_tokens
        if t.batch_size:
            return "examples", t.batch_size
        return ("examples", 8) if self.method == "instruct" else ("tokens", DEFAULT_BATCH_TOKENS)

    def validate(self) -> None:
        """Type- and range-check every field, then the combinations; one ConfigError lists every problem."""
        problems = check_types(self)
        if not problems:  # ranges are meaningless on values of the wrong type
            problems = self._check_values()
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))

    def _check_values(self) -> list[str]:
        from lsllm.data.readers.tables import FORMATS  # light: no torch

        d, m, t, p = self.data, self.model, self.train, self.prompt
        problems = []
        if not d.train:
            problems.append("no training data: pass --train FILE")
        if not self.output:
            problems.append("no run folder: pass --output RUN")
        choices = [("task", m.task, ("seq", "token")), ("pooling", m.pooling, (None, "last", "mean", "max", "first")),
                   ("pool_over", m.pool_over, ("hidden", "logits")), ("lora", m.lora, ("paper", "all-linear", "none")),
                   ("precision", t.precision, ("auto", "bf16", "fp32")), ("method", self.method, METHODS),
                   ("prompt mode", p.mode, ("score", "generate")), ("format", d.format, (None, *FORMATS)),
                   ("report_to", t.report_to, ("none", "tensorboard", "mlflow", "wandb")),
                   ("quantize", m.quantize, ("none", "4bit", "8bit"))]
        for name, value, allowed in choices:
            if value not in allowed:
                problems.append(f"{name} {value!r} must be one of {', '.join(a for a in allowed if a)}")
        at_least_one = [("max_steps", t.max_steps), ("batch_size", t.batch_size), ("batch_tokens", t.batch_tokens),
                        ("grad_accum", t.grad_accum), ("eval_every", t.eval_every),
                        ("evals_per_epoch", t.evals_per_epoch), ("early_stopping", t.early_stopping), ("log_every", t.log_every),
                        ("eval_batch_size", t.eval_batch_size), ("lora_rank", m.lora_rank)]
        for name, value in at_least_one:
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1, not {value}" + _OFF_HINT.get(name, ""))
        positive = [("epochs", t.epochs), ("lr", t.lr), ("lora_alpha", m.lora_alpha)]
        for name, value in positive:
            if value is not None and not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number, not {value}")
        fractions = [("dropout", m.dropout, 1), ("lora_dropout", m.lora_dropout, 1), ("warmup_ratio", t.warmup_ratio, 1)]
        for name, value, top in fractions:
            if value is not None and not (math.isfinite(value) and 0 <= value < top):
                problems.append(f"{name} must be in [0, 1), not {value}")
        for name, value in (("weight_decay", t.weight_decay), ("max_grad_norm", t.max_grad_norm)):
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be zero or a positive number, not {value}")
        if t.target_metric is not None and not (math.isfinite(t.target_metric) and 0 < t.target_metric <= 1):
            problems.append(f"target_metric must be in (0, 1], not {t.target_metric}")
        if t.target_metric is not None and not d.validation and self.method in ("ls", "instruct"):
            problems.append("target_metric needs a validation split: pass --validation FILE")
        if not 0 <= t.seed < 2**32:
            problems.append(f"seed must be in [0, 2**32), not {t.seed}")
        if not 8 <= d.max_length <= 1_000_000:
            problems.append(f"max_length must be between 8 and 1000000 tokens, not {d.max_length}")
        if p.k_shot < 0 or (self.method == "few-shot" and p.k_shot < 1):
            problems.append(f"k_shot must be at least {1 if self.method == 'few-shot' else 0}, not {p.k_shot}")
        if m.lora_targets is not None and not m.lora_targets:
            problems.append("lora_targets is an empty list; leave it out to use the preset's targets")
        if d.labels is not None:
            dupes = sorted({x for x in d.labels if d.labels.count(x) > 1})
            if dupes or not d.labels or any(not x.strip() for x in d.labels):
                problems.append(f"labels {','.join(d.labels)!r} must be distinct, non-empty names")
        problems += self._check_columns()
        if m.quantize != "none" and self.method != "ls":
            problems.append(f"--quantize applies to label-supervised runs (--method ls), not {self.method}")
        elif m.quantize != "none" and m.lora == "none":
            problems.append(f"--quantize {m.quantize} freezes the base in {m.quantize} weights, which can't be fine-tuned "
                            "in full: use a LoRA preset (--lora all-linear or paper), or --quantize none")
        if t.compile and self.method != "ls":
            problems.append(f"--compile applies to label-supervised runs (--method ls), not {self.method}")
        for name, path in (("train", d.train), ("validation", d.validation), ("test", d.test), ("prompt file", p.file)):
            if path and not Path(path).exists():
                problems.append(f"{name} file {path} does not exist")
        if self.output and any(path and Path(path).exists() and is_inside(path, self.output)
                               for path in (d.train, d.validation, d.test, p.file)):
            problems.append(f"--output {self.output} holds the data files; choose a new folder for the run")
        return problems

    def _check_columns(self) -> list[str]:
        d = self.data
        wrong = ((("token_column", d.token_column), ("tag_column", d.tag_column)) if self.model.task == "seq" else
                 (("text_column", d.text_column), ("text_pair_column", d.text_pair_column),
                  ("label_column", d.label_column)))
        other = "token" if self.model.task == "seq" else "seq"
        return [f"--{name.replace('_', '-')} is for --task {other}; this is a --task {self.model.task} run"
                for name, value in wrong if value is not None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "RunConfig":
        unknown = [k for k in raw if k not in (*SECTIONS, "output", "method")]
        kwargs: dict[str, Any] = {k: raw[k] for k in ("output", "method") if k in raw}
        for name, klass in SECTIONS.items():
            values = raw.get(name)
            if values is None:
                values = {}
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section '{name}' must be a mapping of settings, not "
                                  f"{type(values).__name__} ({values!r:.60})")
            known = {f.name for f in fields(klass)}
            unknown += [f"{name}.{k}" for k in values if k not in known]
            kwargs[name] = klass(**{k: v for k, v in values.items() if k in known})
        if unknown:
            raise ConfigError(f"{source}: unknown keys {', '.join(unknown)}")
        config = cls(**kwargs)
        problems = check_types(config)
        if problems:
            raise ConfigError(f"{source}: invalid values: " + "; ".join(problems))
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text ({err.reason}); re-save the file as UTF-8") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f", line {where.line + 1}" if where is not None else ""
            raise ConfigError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping with data/model/train sections")
        return cls.from_dict(raw, str(path))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prompt": PromptRunConfig}
_OFF_HINT = {"early_stopping": " (leave it out to train without early stopping)",
             "eval_every": " (leave it out to validate at each epoch end)",
             "max_steps": " (leave it out to train for --epochs)"}
COLUMN_FIELDS = {"text_column", "text_pair_column", "label_column", "token_column", "tag_column"}


def check_types(config: RunConfig) -> list[str]:
    """Coerce every field to its declared type in place (YAML 1.1 reads `1e-4` as a string; a column
    may be a name or an index); return a problem per value that can't be."""
    problems = []
    for name in ("output", "method"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name} must be a string, not {type(value).__name__} ({value!r:.60})")
    for section in ("data", "model", "train", "prompt"):
        obj = getattr(config, section)
        hints = typing.get_type_hints(type(obj))
        for f in fields(obj):
            try:
                setattr(obj, f.name, _coerce(getattr(obj, f.name), hints[f.name], f.name in COLUMN_FIELDS))
            except (TypeError, ValueError) as err:
                problems.append(f"{section}.{f.name}: {err}")
    return problems


def _coerce(value, hint, column: bool = False):
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise TypeError("may not be empty")
    kinds = [a for a in args if a is not type(None)] or [hint]
    kind = kinds[0]
    if typing.get_origin(kind) is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list) or any(isinstance(v, (list, dict, bool)) or v is None for v in value):
            raise TypeError(f"must be a list of names, not {value!r:.60}")
        return [str(v) for v in value]
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"must be true or false, not {value!r:.60}")
        return value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"must be a whole number, not {value!r:.60}")
        return value
    if kind is float:
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
            except ValueError:
                raise TypeError(f"must be a number, not {value!r:.60}") from None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"must be a number, not {value!r:.60}")
        return float(value)
    if kind is str:
        if column and isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # a column index
        if not isinstance(value, str):
            raise TypeError(f"must be a string, not {type(value).__name__} ({value!r:.60})")
        return value
    return value
