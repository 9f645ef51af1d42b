"""Prompt settings: the template, label names, chat wrapping, shots and length budget (from YAML or flags)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from lsllm.errors import ConfigError

DEFAULT_TEMPLATE = (
    "You are a classification model. Based on the given article, you need to predict the most relevant "
    "category label from {labels}. One article has only one label. ### Input article: {text} ### Output: "
)
NER_TEMPLATE = (
    "You are a named entity recognition model. List every named entity in the given sentence as "
    "'type: entity', separated by '; ', with types from {labels}. Copy each entity exactly as it is written "
    "in the sentence. If there is no entity, answer 'none'. ### Input sentence: {text} ### Output: "
)

@dataclass
class PromptConfig:
    template: str = DEFAULT_TEMPLATE
    """Must contain {text}; {labels} becomes the comma-separated label names. For token tagging the
    default template is swapped for NER_TEMPLATE."""
    label_names: dict[str, str] | None = None
    """label (or entity type) -> natural-language name, e.g. {"0": "bearish", "1": "bullish"}."""
    use_chat_template: bool = True
    """Wrap the prompt as a user turn when the tokenizer has a chat template."""
    k_shot: int = 0
    """Few-shot examples drawn from the training split (stratified over labels, seeded)."""
    seed: int = 0
    max_length: int = 512
    """Token budget for the prompt plus the longest label; the article text is cut to fit."""

    def __post_init__(self) -> None:
        # Values often come from a hand-edited YAML file, so check their types here.
        for name, kind in (("template", str), ("use_chat_template", bool), ("k_shot", int), ("seed", int),
                           ("max_length", int)):
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"prompt setting {name} must be {kind.__name__}, not {value!r}")
        if "{text}" not in self.template:
            raise ConfigError("the prompt template needs a {text} placeholder for the article")
        if self.k_shot < 0:
            raise ConfigError(f"k_shot must be >= 0, not {self.k_shot}")
        if self.max_length < 1:
            raise ConfigError(f"max_length must be positive, not {self.max_length}")
        if self.label_names is not None:
            self.label_names = {str(k): str(v) for k, v in self.label_names.items()}


def load_prompt_config(path: str | Path) -> PromptConfig:
    """A PromptConfig from a YAML file whose keys are PromptConfig's fields (all optional).

    label_names may be a mapping or a "0=bearish,1=bullish" string."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of prompt settings, got {type(data).__name__}")
    known = {f.name for f in fields(PromptConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown prompt settings {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(sorted(known))}")
    if isinstance(data.get("label_names"), str):
        data["label_names"] = parse_label_names(data["label_names"])
    elif data.get("label_names") is not None and not isinstance(data["label_names"], dict):
        raise ConfigError(f"{path}: label_names must be a mapping or a 'label=name,...' string")
    return PromptConfig(**data)


def parse_label_names(spec: str) -> dict[str, str]:
    """"0=bearish,1=bullish,2=neutral" -> {"0": "bearish", "1": "bullish", "2": "neutral"}."""
    names: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        label, sep, name = item.partition("=")
        label, name = label.strip(), name.strip()
        if not sep or not label or not name:
            raise ConfigError(f"bad label name {item.strip()!r} in {spec!r}; write label=name pairs, "
                             "e.g. 0=bearish,1=bullish")
        if label in names:
            raise ConfigError(f"label {label!r} is named twice in {spec!r}")
        names[label] = name
    return names
