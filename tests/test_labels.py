"""Label sets: stable order, B-/I- completion, and errors for labels unseen in training."""
from __future__ import annotations

import random

import pytest

from lsllm.data.labels import LabelSet, build_label_set, check_labels, entity_types
from lsllm.data.records import SeqExample, TokenExample
from lsllm.errors import DataError


def seq(*labels: str | None) -> list[SeqExample]:
    return [SeqExample(f"text {i}", label, source=f"train.csv:{i + 2}") for i, label in enumerate(labels)]


def tok(*sentences: list[str]) -> list[TokenExample]:
    return [TokenExample(["w"] * len(tags or ["O"]), tags, source=f"train.conll:{i * 3 + 1}") for i, tags in enumerate(sentences)]


def test_label_set_basics() -> None:
    labels = LabelSet(["neg", "pos"])
    assert len(labels) == 2 and list(labels) == ["neg", "pos"]
    assert labels.index("pos") == 1 and "neg" in labels and "x" not in labels
    assert labels == LabelSet(["neg", "pos"]) and labels != LabelSet(["pos", "neg"])
    with pytest.raises(DataError, match="unknown label 'x'"):
        labels.index("x")


def test_label_set_rejects_duplicates_and_empty() -> None:
    with pytest.raises(DataError, match="more than once: a"):
        LabelSet(["a", "b", "a"])
    with pytest.raises(DataError, match="empty"):
        LabelSet([])


def test_integer_labels_sort_numerically() -> None:
    assert build_label_set("seq", seq("10", "2", "1", "2")).names == ["1", "2", "10"]
    assert build_label_set("seq", seq("-1", "1", "0")).names == ["-1", "0", "1"]


def test_string_labels_sort_alphabetically_whatever_the_row_order() -> None:
    labels = ["World", "Sports", "Business", "Sci/Tech"] * 3
    first = build_label_set("seq", seq(*labels))
    random.Random(0).shuffle(labels)
    assert build_label_set("seq", seq(*labels)) == first
    assert first.names == ["Business", "Sci/Tech", "Sports", "World"]
    # mixed ints and words: refused unless the labels are listed explicitly
    with pytest.raises(DataError, match="mix integers"):
        build_label_set("seq", seq("2", "b", "10"))
    assert build_label_set("seq", seq("2", "b", "10"), given=["b", "2", "10"]).names == ["b", "2", "10"]


def test_unlabelled_examples_are_ignored_but_no_labels_is_an_error() -> None:
    assert build_label_set("seq", seq("a", None, "b")).names == ["a", "b"]
    with pytest.raises(DataError, match="no labels"):
        build_label_set("seq", seq(None, None))


def test_token_tags_o_first_then_type_b_before_i() -> None:
    labels = build_label_set("token", tok(["B-PER", "I-PER", "O"], ["B-LOC", "I-LOC", "B-ORG", "I-ORG"], ["B-MISC"]))
    assert labels.names == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert entity_types(labels) == ["LOC", "MISC", "ORG", "PER"]


def test_token_tags_add_missing_partner_and_o() -> None:
    assert build_label_set("token", tok(["B-X"], ["I-Y"])).names == ["O", "B-X", "I-X", "B-Y", "I-Y"]


def test_plain_tag_set() -> None:
    labels = build_label_set("token", tok(["PER", "O"], ["LOC"]))
    assert labels.names == ["O", "LOC", "PER"]
    assert entity_types(labels) == ["LOC", "PER"]


def test_mixed_tag_set_is_an_error() -> None:
    with pytest.raises(DataError, match="LOC are not IOB"):
        build_label_set("token", tok(["B-PER", "LOC"]))


def test_given_labels_keep_their_order_and_check_the_data() -> None:
    labels = build_label_set("seq", seq("pos", "neg"), given=["pos", "neg", "neutral"])
    assert labels.names == ["pos", "neg", "neutral"]
    with pytest.raises(DataError) as info:
        build_label_set("seq", seq("pos", "meh"), given=["pos", "neg"])
    message = str(info.value)
    assert "train.csv:3" in message and "'meh'" in message and "pos, neg" in message
    tags = build_label_set("token", tok(["B-A", "O"]), given=["O", "B-A"])
    assert tags.names == ["O", "B-A"]  # exactly as given, no partner added


def test_check_labels_names_first_unseen_label() -> None:
    labels = build_label_set("seq", seq("0", "1"))
    check_labels(labels, seq("1", "0", None), "validation")
    with pytest.raises(DataError) as info:
        check_labels(labels, seq("1", "2", "3"), "validation")
    message = str(info.value)
    assert "train.csv:3" in message and "'2'" in message and "validation" in message and "0, 1" in message


def test_check_tags_names_sentence() -> None:
    labels = build_label_set("token", tok(["B-PER", "O"]))
    check_labels(labels, tok(["I-PER", "O"], None), "test")  # I-PER added as B-PER's partner
    with pytest.raises(DataError) as info:
        check_labels(labels, tok(["O"], ["B-LOC"]), "test")
    message = str(info.value)
    assert "train.conll:4" in message and "'B-LOC'" in message and "test split" in message


def test_bad_task() -> None:
    with pytest.raises(ValueError):
        build_label_set("regression", seq("1"))  # type: ignore[arg-type]
