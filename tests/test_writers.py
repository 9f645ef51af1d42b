import csv
import json
import os

import numpy as np
import pytest

from lsllm.writers import write_predictions

ROWS = [
    {"id": 1, "text": "a, \"b\"", "label": "pos", "probs": {"pos": 0.9, "neg": 0.1}},
    {"id": 2, "text": "Zürich", "label": "neg", "probs": {"pos": 0.2, "neg": 0.8}, "words": ["x", "y"]},
]


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_jsonl_default_and_by_extension(tmp_path):
    for name in ("preds.jsonl", "preds.out"):
        path = tmp_path / name
        write_predictions(path, ROWS)
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == ROWS
        assert "Zürich" in lines[1]
    assert sorted(os.listdir(tmp_path)) == ["preds.jsonl", "preds.out"]


def test_csv_flattens_probs_and_encodes_lists(tmp_path):
    path = tmp_path / "preds.csv"
    write_predictions(path, ROWS)
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["id", "text", "label", "prob_pos", "prob_neg", "words"]
    rows = _read_csv(path)
    assert rows[0] == {"id": "1", "text": 'a, "b"', "label": "pos", "prob_pos": "0.9", "prob_neg": "0.1",
                       "words": ""}
    assert rows[1]["text"] == "Zürich" and rows[1]["prob_neg"] == "0.8"
    assert json.loads(rows[1]["words"]) == ["x", "y"]
    assert os.listdir(tmp_path) == ["preds.csv"]


def test_format_argument_overrides_extension(tmp_path):
    path = tmp_path / "preds.txt"
    write_predictions(path, ROWS, format="csv")
    assert _read_csv(path)[0]["prob_pos"] == "0.9"
    write_predictions(tmp_path / "x.csv", ROWS, format="jsonl")
    assert json.loads((tmp_path / "x.csv").read_text().splitlines()[0]) == ROWS[0]
    with pytest.raises(ValueError):
        write_predictions(tmp_path / "y.jsonl", ROWS, format="parquet")


def test_numpy_values_and_entities(tmp_path):
    rows = [{"id": np.int64(3), "score": np.float32(0.5), "vec": np.array([1, 2]), "none": None,
             "entities": [{"type": "PER", "start": 0, "end": 5}], "meta": {"src": "x"}}]
    write_predictions(tmp_path / "p.jsonl", rows)
    back = json.loads((tmp_path / "p.jsonl").read_text())
    assert back == {"id": 3, "score": 0.5, "vec": [1, 2], "none": None,
                    "entities": [{"type": "PER", "start": 0, "end": 5}], "meta": {"src": "x"}}
    write_predictions(tmp_path / "p.csv", rows)
    row = _read_csv(tmp_path / "p.csv")[0]
    assert row["id"] == "3" and row["score"] == "0.5" and row["none"] == "" and row["meta_src"] == "x"
    assert json.loads(row["vec"]) == [1, 2]
    assert json.loads(row["entities"]) == [{"type": "PER", "start": 0, "end": 5}]


def test_empty_rows(tmp_path):
    write_predictions(tmp_path / "e.jsonl", [])
    write_predictions(tmp_path / "e.csv", [])
    assert (tmp_path / "e.jsonl").read_text() == ""
    assert (tmp_path / "e.csv").read_text() == ""
