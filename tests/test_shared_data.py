"""The readers on the real benchmark files in ../shared/data, against the counts in its
README. Skipped when that folder is absent (e.g. the project cloned on its own)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lsllm.data.labels import build_label_set, check_labels, entity_types
from lsllm.data.readers import read_examples

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark data folder {DATA} is absent"),
]

SIB_LANGUAGES = ("deu_Latn", "eng_Latn", "spa_Latn", "zho_Hans")
SIB_LABELS = ["entertainment", "geography", "health", "politics", "science/technology", "sports", "travel"]


def read_splits(task: str, folder: str, files: list[str], **columns) -> list[list]:
    return [read_examples(DATA / folder / name, task, **columns) for name in files]


def test_conll2003() -> None:
    splits = read_splits("token", "conll2003", ["train.txt", "valid.txt", "test.txt"])
    assert [len(s) for s in splits] == [14041, 3250, 3453]
    labels = build_label_set("token", splits[0])
    assert len(labels) == 9 and labels.names[0] == "O"
    assert entity_types(labels) == ["LOC", "MISC", "ORG", "PER"]
    for name, split in zip(("valid", "test"), splits[1:]):
        check_labels(labels, split, name)
    first = splits[0][0]
    assert first.tokens[:3] == ["EU", "rejects", "German"] and first.tags[:3] == ["B-ORG", "O", "B-MISC"]
    assert first.source.endswith("train.txt:3")


def test_wnut17() -> None:
    splits = read_splits("token", "wnut17", ["wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"])
    assert [len(s) for s in splits] == [3394, 1009, 1287]
    labels = build_label_set("token", splits[0])
    assert len(labels) == 13
    assert entity_types(labels) == ["corporation", "creative-work", "group", "location", "person", "product"]
    for name, split in zip(("dev", "test"), splits[1:]):
        check_labels(labels, split, name)
    assert splits[2][0].tokens[:4] == ["&", "gt", ";", "*"]  # odd tokens kept


def test_sst2() -> None:
    train, dev = read_splits("seq", "sst2", ["train.tsv", "dev.tsv"])
    assert (len(train), len(dev)) == (67349, 872)
    labels = build_label_set("seq", train)
    assert labels.names == ["0", "1"]
    check_labels(labels, dev, "dev")
    assert dev[0].text == "it 's a charming and often affecting journey ."  # trailing space stripped


def test_tfns() -> None:
    train, valid = read_splits("seq", "tfns", ["sent_train.csv", "sent_valid.csv"])
    assert (len(train), len(valid)) == (9543, 2388)
    labels = build_label_set("seq", train)
    assert labels.names == ["0", "1", "2"]
    check_labels(labels, valid, "valid")
    assert valid[1].text.startswith("$DELL $HPE - Dell, HPE targets")  # quoted field with a comma


def test_ag_news() -> None:
    (test,) = read_splits("seq", "ag_news", ["test.csv"], text_column=1, text_pair_column=2, label_column=0)
    assert len(test) == 7600
    assert build_label_set("seq", test).names == ["1", "2", "3", "4"]
    assert all(e.text_pair for e in test)
    assert sum(e.label == "3" for e in test) == 1900
    (train,) = read_splits("seq", "ag_news", ["train_subset10k_alps_descriptions_only.tsv"])
    assert len(train) == 10001
    assert build_label_set("seq", train).names == ["Business", "Sci/Tech", "Sports", "World"]


@pytest.mark.parametrize("language", SIB_LANGUAGES)
def test_sib200(language: str) -> None:
    folder = DATA / "sib200" / language
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    train, dev, test = read_splits("seq", f"sib200/{language}", ["train.tsv", "dev.tsv", "test.tsv"])
    assert (len(train), len(dev), len(test)) == (701, 99, 204)
    labels = build_label_set("seq", train)
    assert labels.names == SIB_LABELS
    listed = (folder / "labels.txt").read_text(encoding="utf-8").split()
    assert sorted(listed) == SIB_LABELS
    check_labels(labels, dev, "dev")
    check_labels(labels, test, "test")
