"""NER answers: parse "type: span; ..." outputs and map the spans back onto the sentence's words."""
from __future__ import annotations

import re
from collections.abc import Sequence

from lsllm.data.iob import OUTSIDE, make_tag
from lsllm.spans import split_words

_ITEM_SPLIT = re.compile(r"[;\n]|,(?=\s*[^\s,:;][^,:;]{0,40}:)")  # a comma only when a "type:" follows
_BULLET = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_NONE = re.compile(r"(?i)^[\s\"'`*\[(]*(?:none|no entities)[\s.!\"'`*\])]*$")
_PREAMBLE = re.compile(r"(?i)^\s*(?:###\s*)?(?:output|answer|entities)\s*:\s*")
_DOTTED_END = re.compile(r"(?:^|\s)(?:[A-Za-z]\.)+$")  # "U.S." keeps its final period


def parse_entities(text: str, entity_types: Sequence[str]) -> list[tuple[str, str]] | None:
    """"PER: John Smith; LOC: Paris" -> [("PER", "John Smith"), ("LOC", "Paris")].

    Types match case-insensitively and come back as spelled in `entity_types`. Items may be split
    by ";", newlines or ", TYPE:"; bullets, quotes and trailing punctuation are dropped; items with
    an unknown type or no colon are skipped. "none" -> []. None when nothing usable was found."""
    text = text.split("###")[0].strip()  # a base model may go on to write the next template block
    text = text.split("\n\n")[0]
    text = _PREAMBLE.sub("", text, count=1)
    if _NONE.match(text):
        return []
    canonical = {t.strip().lower(): t for t in entity_types}
    entities: list[tuple[str, str]] = []
    for item in _ITEM_SPLIT.split(text):
        item = _BULLET.sub("", item.strip())
        etype, colon, span = item.partition(":")
        etype = canonical.get(etype.strip().strip("\"'`*[]()").strip().lower())
        span = _clean_span(span)
        if colon and etype is not None and span:
            entities.append((etype, span))
    return entities or None


def _clean_span(span: str) -> str:
    span = span.strip().strip("\"'`*").strip()
    span = span.rstrip(",;:!?").rstrip()
    if span.endswith(".") and not _DOTTED_END.search(span):
        span = span[:-1].rstrip()
    return span.strip("\"'`*").strip()


def entities_to_tags(words: Sequence[str], entities: Sequence[tuple[str, str]]) -> list[str]:
    """IOB2 tags for `words`: each entity's span is found as a run of words not yet tagged (first
    such run, left to right; exact case first, then ignoring case). Spans not found are ignored."""
    tags = [OUTSIDE] * len(words)
    used = [False] * len(words)
    for etype, span in entities:
        start, length = _find_span(words, _span_word_variants(span), used)
        if start is None:
            continue
        for i in range(start, start + length):
            tags[i] = make_tag("B" if i == start else "I", etype)
            used[i] = True
    return tags


def _span_word_variants(span: str) -> list[list[str]]:
    """The span as words: CoNLL-style split (a final punctuation word dropped first: it is rarely part
    of the entity), then whitespace split."""
    variants = [split_words(span), span.split()]
    trimmed = [v[:-1] for v in variants if len(v) > 1 and not any(c.isalnum() for c in v[-1])]
    variants = trimmed + variants
    unique: list[list[str]] = []
    for v in variants:
        if v and v not in unique:
            unique.append(v)
    return unique


def _find_span(words: Sequence[str], variants: list[list[str]], used: list[bool]) -> tuple[int | None, int]:
    for fold in (False, True):
        norm = (lambda w: w.casefold()) if fold else (lambda w: w)
        folded_words = [norm(w) for w in words]
        for variant in variants:
            target = [norm(w) for w in variant]
            n = len(target)
            for start in range(len(words) - n + 1):
                if folded_words[start:start + n] == target and not any(used[start:start + n]):
                    return start, n
    return None, 0
