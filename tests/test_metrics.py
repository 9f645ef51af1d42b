import json

import pytest

from lsllm.metrics import MAIN_METRIC, confusion, format_report, sequence_metrics, token_metrics


def test_sequence_metrics_hand_computed():
    m = sequence_metrics(["a", "b", "a"], ["a", "b", "b"], ["a", "b"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["n"] == 3
    # a: P=1/1, R=1/2 -> F1=2/3 ; b: P=1/2, R=1/1 -> F1=2/3
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["macro_f1"] == pytest.approx(2 / 3)


def test_sequence_metrics_unseen_label_counts_in_macro_and_is_json():
    m = sequence_metrics(["a", "b", "a"], ["a", "b", "b"], ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert json.loads(json.dumps(m)) == m
    assert type(m["accuracy"]) is float and type(m["per_class"]["a"]["support"]) is int


def test_sequence_metrics_empty_and_mismatch():
    assert sequence_metrics([], [], ["a"])["accuracy"] == 0.0
    with pytest.raises(ValueError):
        sequence_metrics(["a"], [], ["a"])


def test_token_metrics_one_of_two_entities_found():
    y_true = [["B-PER", "I-PER", "O", "B-LOC"]]
    y_pred = [["B-PER", "I-PER", "O", "O"]]
    m = token_metrics(y_true, y_pred)
    # 1 predicted entity, correct; 2 gold entities -> P=1, R=1/2, F1=2/3
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["per_type"]["PER"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    assert m["per_type"]["LOC"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert m["n"] == 1 and m["n_tokens"] == 4
    assert json.loads(json.dumps(m)) == m


def test_token_metrics_wrong_type_and_boundary():
    y_true = [["B-ORG", "I-ORG", "O"], ["B-PER", "O"]]
    y_pred = [["B-ORG", "O", "O"], ["B-PER", "O"]]  # ORG boundary wrong, PER right
    m = token_metrics(y_true, y_pred)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(4 / 5)


def test_token_metrics_conlleval_default_mode_accepts_iob1_start():
    # Default (conlleval) mode: an I- after O starts an entity.
    m = token_metrics([["I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
    assert m["f1"] == pytest.approx(1.0)


def test_token_metrics_plain_tags_are_runs():
    m = token_metrics([["PER", "PER", "O", "LOC"]], [["PER", "PER", "O", "PER"]])
    assert set(m["per_type"]) == {"PER", "LOC"}
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)


def test_token_metrics_errors_and_empty():
    with pytest.raises(ValueError):
        token_metrics([["O", "O"]], [["O"]])
    with pytest.raises(ValueError):
        token_metrics([["O"]], [])
    m = token_metrics([], [])
    assert m["f1"] == 0.0 and m["n"] == 0
    m = token_metrics([["O", "O"]], [["O", "O"]])  # no entities at all
    assert m["f1"] == 0.0 and m["accuracy"] == 1.0


def test_confusion_rows_true_cols_pred():
    assert confusion(["a", "b", "a"], ["a", "b", "b"], ["a", "b"]) == [[1, 1], [0, 1]]
    assert confusion(["a", "x"], ["b", "a"], ["a", "b"]) == [[0, 1], [0, 0]]  # "x" ignored


def test_main_metric_keys_exist():
    seq = sequence_metrics(["a"], ["a"], ["a"])
    tok = token_metrics([["B-X"]], [["B-X"]])
    assert MAIN_METRIC == {"seq": "accuracy", "token": "f1"}
    assert seq[MAIN_METRIC["seq"]] == 1.0 and tok[MAIN_METRIC["token"]] == 1.0


def test_format_report_seq_and_token():
    seq = sequence_metrics(["neg", "pos", "neg"], ["neg", "pos", "pos"], ["neg", "pos"])
    text = format_report(seq, "seq")
    assert "neg" in text and "pos" in text and "accuracy" in text and "macro avg" in text
    assert "0.6667" in text
    tok = token_metrics([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    text = format_report(tok, "token")
    assert "PER" in text and "LOC" in text and "micro avg" in text and "token acc" in text
    assert "main metric (f1): 0.6667" in text
    with pytest.raises(ValueError):
        format_report(seq, "bogus")
