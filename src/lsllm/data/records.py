"""Plain records that readers return; the tokenizer binds later (see encode.py)."""
from __future__ import annotations

from dataclasses import dataclass



@dataclass
class SeqExample:
    """One sequence-classification example."""

    text: str
    label: str | None = None
    """Label name as a string (integers are kept as their string form); None when unlabelled."""
    text_pair: str | None = None
    """Optional second text (e.g. description beside a title); joined with the tokenizer's separator."""
    source: str = ""
    """Where it came from, "file:line", for error messages."""


@dataclass
class TokenExample:
    """One token-tagging example: a sentence as words with one tag per word."""

    tokens: list[str]
    tags: list[str] | None = None
    source: str = ""

