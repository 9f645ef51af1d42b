"""The ordered set of label names a model predicts, built from the training split.

The order is stable whatever the row order of the training file, so the same data
always gives the same label ids (and a saved model's `id2label` means the same thing).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from . import iob
from lsllm.errors import DataError

from .records import SeqExample, TokenExample

_INT = re.compile(r"-?\d+")


class LabelSet:
    """Ordered, unique label (or tag) names; a label's id is its position."""

    def __init__(self, names: Sequence[str]) -> None:
        names = [str(n) for n in names]
        if not names:
            raise DataError("the label set is empty; the training data needs at least one label")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DataError(f"labels listed more than once: {', '.join(dupes)}; give each label once")
        self.names: list[str] = names
        self._ids = {n: i for i, n in enumerate(names)}

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and other.names == self.names

    def __repr__(self) -> str:
        return f"LabelSet({self.names!r})"

    def index(self, name: str) -> int:
        try:
            return self._ids[name]
        except KeyError:
            raise DataError(f"unknown label {name!r}; known labels: {', '.join(self.names)}") from None


def build_label_set(
    task: Literal["seq", "token"],
    train_examples: Sequence[SeqExample] | Sequence[TokenExample],
    given: Sequence[str] | None = None,
) -> LabelSet:
    """Labels from the training split, in a stable order; or exactly `given`, with the
    training data checked against it."""
    if task not in ("seq", "token"):
        raise ValueError(f"task must be 'seq' or 'token', not {task!r}")
    seen = _seen(train_examples)
    if not seen:
        raise DataError("the training data has no labels; a labelled training file is needed")
    if task == "token":
        _check_tag_types(train_examples)
    if given is not None:
        label_set = LabelSet(given)
        check_labels(label_set, train_examples, "train")
    else:
        if task == "seq":
            _check_not_mixed(seen, train_examples)
        label_set = LabelSet(_order_seq(seen) if task == "seq" else _order_tags(seen))
    _check_variety(task, seen, train_examples)
    return label_set


def check_labels(
    label_set: LabelSet,
    examples: Sequence[SeqExample] | Sequence[TokenExample],
    split_name: str,
) -> None:
    """Raise DataError at the first example whose label (or tag) is not in the set."""
    for example, label in _labels_with_examples(examples):
        if label not in label_set:
            raise DataError(
                f"{example.source}: label {label!r} in the {split_name} split is not among the training "
                f"labels ({', '.join(label_set.names)}); fix the data, or list every label with --labels"
            )


def entity_types(label_set: LabelSet) -> list[str]:
    """Entity types of a tag set, in label-set order: PER from B-PER/I-PER; for a plain
    tag set (PER, O) every tag but O."""
    return iob.entity_types(label_set.names)


def _labels_with_examples(
    examples: Iterable[SeqExample | TokenExample],
) -> Iterator[tuple[SeqExample | TokenExample, str]]:
    for example in examples:
        if isinstance(example, TokenExample):
            for tag in example.tags or ():
                yield example, tag
        elif example.label is not None:
            yield example, example.label


def _seen(examples: Iterable[SeqExample | TokenExample]) -> set[str]:
    return {label for _, label in _labels_with_examples(examples)}


def _source(examples: Iterable[SeqExample | TokenExample]) -> str:
    """Where the training data comes from: the file of the first example."""
    for example in examples:
        if example.source:
            return example.source.rsplit(":", 1)[0] + ": "
    return ""


def _check_not_mixed(labels: set[str], examples: Sequence[SeqExample] | Sequence[TokenExample]) -> None:
    """0, 1 and "positive" in one column is two labelling schemes mixed (or a shifted column).
    The message points at the first example of the rarer kind: the likely odd ones out."""
    ints = sorted((label for label in labels if _INT.fullmatch(label)), key=int)
    names = sorted(label for label in labels if not _INT.fullmatch(label))
    if not (ints and names):
        return
    labelled = list(_labels_with_examples(examples))
    int_rows = [e for e, label in labelled if _INT.fullmatch(label)]
    name_rows = [e for e, label in labelled if not _INT.fullmatch(label)]
    odd = min(int_rows, name_rows, key=len)[0]
    raise DataError(
        f"{odd.source + ': ' if odd.source else ''}the training labels mix integers ({', '.join(ints[:4])}{', ...' if len(ints) > 4 else ''}) "
        f"and names ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}); use one kind, or list every "
        "label with --labels"
    )


def _check_variety(task: str, labels: set[str], examples: Sequence[SeqExample] | Sequence[TokenExample]) -> None:
    """A classifier needs two labels to tell apart; a tagger needs some entity to find."""
    where = _source(examples)
    if task == "seq" and len(labels) == 1:
        raise DataError(
            f"{where}only one label {next(iter(labels))!r} in the training data; a classifier needs at least two"
        )
    if task == "token" and labels == {"O"}:
        raise DataError(
            f"{where}every tag in the training data is 'O' (no entities); a tagger needs tagged entities to learn"
        )


def _check_tag_types(examples: Iterable[SeqExample | TokenExample]) -> None:
    for example, tag in _labels_with_examples(examples):
        problem = iob.untyped_problem(tag)
        if problem:
            raise DataError(f"{example.source}: {problem}")


def _order_seq(labels: set[str]) -> list[str]:
    # "2" < "10": integer labels sort as numbers, anything else alphabetically.
    if all(_INT.fullmatch(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _order_tags(tags: set[str]) -> list[str]:
    """O first, then B-/I- per entity type, sorted by type; each type gets both its B-
    and I- tag, so a model can predict every valid tag even if one never occurs."""
    if not iob.has_prefixes(tags):  # plain tag set such as PER/LOC/O (B-/I- tags are typed: _check_tag_types)
        return iob.plain_tag_set(tags)
    odd = sorted(t for t in tags if not iob.is_valid(t))
    if odd:
        raise DataError(
            f"tags {', '.join(odd)} are not IOB; with B-/I- tags every tag must be O, B-TYPE or I-TYPE"
        )
    return iob.bio_tag_set(iob.entity_types(tags))
