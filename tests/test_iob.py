"""Tag-scheme rules (lsllm.data.iob): prefixes, validity, IOB1 -> IOB2, tag-set order."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from lsllm.data import iob

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None)
# Tags built from pieces that hit every rule: prefixes of every scheme, O, spaces, dashes, empty types.
TAGS = st.builds(lambda p, t: p + t, st.sampled_from(["", "B-", "I-", "E-", "S-", "L-", "U-", "X-", "B", "b-", "O"]),
                 st.sampled_from(["", "O", "PER", "LOC", "A B", "B-PER", "-", "x-y", " ", "PER\n"]))


def test_make_split_and_strip() -> None:
    assert iob.make_tag("B", "PER") == "B-PER" and iob.make_tag("I", "creative-work") == "I-creative-work"
    assert iob.split_tag("B-PER") == ("B", "PER")
    assert iob.split_tag("I-creative-work") == ("I", "creative-work")
    assert iob.split_tag("E-LOC") == ("E", "LOC") and iob.split_tag("U-LOC") == ("U", "LOC")
    for outside in ("O", "", None):
        assert iob.split_tag(outside) == ("O", None)
    assert iob.split_tag("PER") == ("I", "PER")  # plain tags read as inside their type
    assert iob.split_tag("B-") == ("I", "B-")  # no type: not a prefixed tag
    assert iob.strip_prefix("B-PER") == "PER" and iob.strip_prefix("I-PER") == "PER" and iob.strip_prefix("O") == "O"


def test_prefixes_and_validity() -> None:
    assert iob.has_prefix("B-PER") and iob.has_prefix("I-") and not iob.has_prefix("PER") and not iob.has_prefix("O")
    assert iob.has_prefixes(["O", "I-PER"]) and not iob.has_prefixes(["O", "PER"]) and not iob.has_prefixes([])
    assert iob.is_typed("B-PER") and iob.is_typed("I-creative-work")
    for bad in ("B-", "I-A B", "B-PER ", "E-PER", "PER", "O", "b-PER"):
        assert not iob.is_typed(bad), bad
    assert iob.is_valid("O") and iob.is_valid("B-PER") and not iob.is_valid("PER") and not iob.is_valid("B-")


def test_untyped_problem() -> None:
    assert iob.untyped_problem("B-PER") is None and iob.untyped_problem("PER") is None
    assert iob.untyped_problem("O") is None
    assert iob.untyped_problem("B-") == (
        "tag 'B-' has no entity type after 'B-' (or one with a space); write B-TYPE or I-TYPE (e.g. B-PER), or O")
    assert "after 'I-'" in iob.untyped_problem("I-A B")


def test_iob1_to_iob2() -> None:
    assert iob.iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]
    assert iob.iob1_to_iob2(["I-ORG", "B-ORG", "I-ORG"]) == ["B-ORG", "B-ORG", "I-ORG"]
    assert iob.iob1_to_iob2(["I-PER", "I-LOC"]) == ["B-PER", "B-LOC"]
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]
    assert iob.iob1_to_iob2(iob2) == iob2
    assert iob.iob1_to_iob2([]) == []


def test_tag_sets() -> None:
    assert iob.entity_types(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]) == ["PER", "LOC"]  # first-seen order
    assert iob.entity_types(["O", "PER", "LOC"]) == ["PER", "LOC"]
    assert iob.bio_tag_set(["PER", "LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert iob.bio_tag_set([]) == ["O"]
    assert iob.plain_tag_set({"PER", "O", "LOC"}) == ["O", "LOC", "PER"]
    assert iob.plain_tag_set(["PER", "LOC"]) == ["LOC", "PER"]  # no O when there is none


def test_as_prefixed() -> None:
    assert [iob.as_prefixed(t) for t in ("O", "B-PER", "I-PER", "PER", "")] == ["O", "B-PER", "I-PER", "I-PER", "O"]


# The rules as they were written in each module before they moved here: the moved code must agree.

_OLD_BIO = re.compile(r"[BI]-\S+")
_OLD_PREFIXED = re.compile(r"^([BIESLU])-(.+)$")


def _old_parse_tag(tag):  # spans.py
    if tag is None or tag == "" or tag == "O":
        return "O", None
    match = _OLD_PREFIXED.match(tag)
    return (match.group(1), match.group(2)) if match else ("I", tag)


def _old_normalise_tag(tag):  # metrics.py
    if tag == "O" or "-" in tag:
        return tag
    return f"I-{tag}" if tag else "O"


def _old_entity_types(names):  # labels.py
    types = {}
    for name in names:
        if _OLD_BIO.fullmatch(name):
            types[name[2:]] = None
        elif name != "O":
            types[name] = None
    return list(types)


def _old_iob1_to_iob2(tags):  # readers/token.py
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


@SETTINGS
@given(st.lists(TAGS, max_size=8))
def test_same_as_the_code_it_replaces(tags: list[str]) -> None:
    for tag in tags:
        assert iob.split_tag(tag) == _old_parse_tag(tag)
        assert iob.as_prefixed(tag) == _old_normalise_tag(tag)
        assert iob.is_typed(tag) == bool(_OLD_BIO.fullmatch(tag))
        assert iob.is_valid(tag) == (tag == "O" or bool(_OLD_BIO.fullmatch(tag)))
        assert (iob.untyped_problem(tag) is not None) == (tag[:2] in ("B-", "I-") and not _OLD_BIO.fullmatch(tag))
    assert iob.entity_types(tags) == _old_entity_types(tags)
    assert iob.iob1_to_iob2(tags) == _old_iob1_to_iob2(tags)
    assert iob.has_prefixes(tags) == any(t.startswith(("B-", "I-")) for t in tags)
    assert [iob.strip_prefix(t) for t in tags] == [t if t == "O" else t[2:] for t in tags]
    typed = [t for t in tags if iob.untyped_problem(t) is None]  # what labels.py orders: B-/I- tags all typed
    if any(_OLD_BIO.fullmatch(t) for t in typed) and all(t == "O" or _OLD_BIO.fullmatch(t) for t in typed):
        old = ["O"] + [f"{p}-{t}" for t in sorted({t[2:] for t in typed if t != "O"}) for p in ("B", "I")]
        assert iob.bio_tag_set(iob.entity_types(typed)) == old
    assert iob.has_prefixes(typed) == any(_OLD_BIO.fullmatch(t) for t in typed)
