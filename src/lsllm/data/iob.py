"""Tag-scheme rules, in one place: what a B-/I- tag is, IOB1 -> IOB2, and how tag sets are ordered.

lsllm trains and predicts IOB2 (`B-PER I-PER O`) or plain types (`PER PER O`: a run of one type is
one entity). Readers turn IOB1 into IOB2; spans also read BIOES / BILOU. Everything here is
string-level and light (no torch), so readers, label sets, metrics and spans share it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

OUTSIDE = "O"
"""The tag of a word outside every entity."""
PREFIXES = ("B-", "I-")
"""IOB2's prefixes: B- begins an entity, I- continues it."""

_TYPED = re.compile(r"[BI]-\S+")  # B-TYPE / I-TYPE with a type and no space in it
_SCHEME = re.compile(r"^([BIESLU])-(.+)$")  # any prefixed tag spans can read (IOB, BIOES, BILOU)


def make_tag(prefix: str, etype: str) -> str:
    """The tag for a prefix ("B", "I", ...) and an entity type: ("B", "PER") -> "B-PER"."""
    return f"{prefix}-{etype}"


def split_tag(tag: str | None) -> tuple[str, str | None]:
    """-> (prefix, type). ("O", None) for O, "" or None; "B-PER" -> ("B", "PER") (also E-/S-/L-/U-);
    a plain tag is read as inside its type: "PER" -> ("I", "PER")."""
    if tag is None or tag == "" or tag == OUTSIDE:
        return OUTSIDE, None
    match = _SCHEME.match(tag)
    if match:
        return match.group(1), match.group(2)
    return "I", tag


def strip_prefix(tag: str) -> str:
    """An IOB2 tag as a plain type: "B-PER" / "I-PER" -> "PER"; O stays O."""
    return tag if tag == OUTSIDE else tag[2:]


def has_prefix(tag: str) -> bool:
    """Whether the tag starts with B- or I- (typed or not)."""
    return tag[:2] in PREFIXES


def has_prefixes(tags: Iterable[str]) -> bool:
    """Whether a tag set uses B-/I- tags (IOB) rather than plain types such as PER/O."""
    return any(has_prefix(tag) for tag in tags)


def is_typed(tag: str) -> bool:
    """Whether the tag is a well-formed B-TYPE or I-TYPE (a type after the prefix, no space in it)."""
    return _TYPED.fullmatch(tag) is not None


def is_valid(tag: str) -> bool:
    """Whether the tag may appear in a B-/I- tag set: O, B-TYPE or I-TYPE."""
    return tag == OUTSIDE or is_typed(tag)


def untyped_problem(tag: str) -> str | None:
    """What is wrong with a B-/I- tag that has no usable type (`B-`, `B-A B`), or None. Such a tag would
    otherwise become an entity type of its own. The caller puts the file and line in front."""
    if has_prefix(tag) and not is_typed(tag):
        return (f"tag {tag!r} has no entity type after {tag[:2]!r} (or one with a space); "
                "write B-TYPE or I-TYPE (e.g. B-PER), or O")
    return None


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2: an `I-X` that starts an entity (after `O`, at the start, or after
    another type) becomes `B-X`. An IOB2 sentence comes back unchanged."""
    out: list[str] = []
    prev = OUTSIDE
    for tag in tags:
        if tag.startswith("I-") and (prev == OUTSIDE or prev[2:] != tag[2:]):
            tag = make_tag("B", tag[2:])
        out.append(tag)
        prev = tag
    return out


def entity_types(tags: Iterable[str]) -> list[str]:
    """Entity types of a tag set, in its order: PER from B-PER/I-PER; for a plain tag set (PER, O)
    every tag but O."""
    types: dict[str, None] = {}
    for tag in tags:
        if is_typed(tag):
            types[tag[2:]] = None
        elif tag != OUTSIDE:
            types[tag] = None
    return list(types)


def bio_tag_set(types: Iterable[str]) -> list[str]:
    """O first, then B- and I- for each type, types sorted: every valid IOB2 tag of those types."""
    return [OUTSIDE] + [make_tag(prefix, t) for t in sorted(set(types)) for prefix in ("B", "I")]


def plain_tag_set(tags: Iterable[str]) -> list[str]:
    """A plain tag set (PER/LOC/O) in order: O first (when present), then the types sorted."""
    tags = set(tags)
    return ([OUTSIDE] if OUTSIDE in tags else []) + sorted(tags - {OUTSIDE})


def as_prefixed(tag: str) -> str:
    """A tag as seqeval reads it: O and tags with a '-' pass through; a plain type becomes its
    inside tag ("PER" -> "I-PER") so plain-tagged data scores as runs of one type; "" is O."""
    if tag == OUTSIDE or "-" in tag:
        return tag
    return make_tag("I", tag) if tag else OUTSIDE


__all__ = ["OUTSIDE", "PREFIXES", "make_tag", "split_tag", "strip_prefix", "has_prefix", "has_prefixes",
           "is_typed", "is_valid", "untyped_problem", "iob1_to_iob2", "entity_types", "bio_tag_set",
           "plain_tag_set", "as_prefixed"]
