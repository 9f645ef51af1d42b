"""Evaluation metrics for sequence classification and token tagging.

All values returned are plain Python floats/ints so the dicts can be dumped to
JSON as-is (no numpy scalars).
"""

from __future__ import annotations

from seqeval.metrics import accuracy_score as _seq_token_accuracy
from seqeval.metrics import classification_report as _seqeval_report
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from lsllm.data.iob import as_prefixed

# The metric used for model selection / early stopping per task.
MAIN_METRIC = {"seq": "accuracy", "token": "f1"}

_AVG_KEYS = ("micro avg", "macro avg", "weighted avg")


def sequence_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    """Accuracy, macro-F1 (over `labels`) and per-class precision/recall/F1/support."""
    _check_same_length(y_true, y_pred)
    n = len(y_true)
    labels = list(labels)
    if n == 0:
        zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        return {"accuracy": 0.0, "macro_f1": 0.0, "per_class": {l: dict(zero) for l in labels}, "n": 0}

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": per_class,
        "n": n,
    }


def token_metrics(y_true: list[list[str]], y_pred: list[list[str]]) -> dict:
    """Entity-level micro P/R/F1 (seqeval default, conlleval-compatible) + token accuracy.

    `n` is the number of sequences, `n_tokens` the number of tokens.
    Plain tags without a BIO prefix (e.g. "PER") are read as "I-PER" so IO-tagged
    data is scored as runs of one type instead of seqeval's garbage parse.
    """
    _check_same_length(y_true, y_pred)
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise ValueError(f"sequence {i}: {len(t)} gold tags but {len(p)} predicted tags")
    y_true = [[as_prefixed(tag) for tag in seq] for seq in y_true]
    y_pred = [[as_prefixed(tag) for tag in seq] for seq in y_pred]
    n_tokens = sum(len(seq) for seq in y_true)
    result = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 0.0, "per_type": {},
              "n": len(y_true), "n_tokens": n_tokens}
    if n_tokens == 0:
        return result

    result["accuracy"] = float(_seq_token_accuracy(y_true, y_pred))
    if all(tag == "O" for seq in y_true + y_pred for tag in seq):
        return result  # no entities anywhere: P/R/F1 are 0 (seqeval would warn on empty averages)
    report = _seqeval_report(y_true, y_pred, output_dict=True, zero_division=0)
    micro = report.get("micro avg")
    if micro is not None:
        result["precision"] = float(micro["precision"])
        result["recall"] = float(micro["recall"])
        result["f1"] = float(micro["f1-score"])
    result["per_type"] = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in sorted(report.items())
        if name not in _AVG_KEYS
    }
    return result


def confusion(y_true: list[str], y_pred: list[str], labels: list[str]) -> list[list[int]]:
    """Confusion matrix, rows = true label, cols = predicted label (order of `labels`).

    Pairs where either side is not in `labels` are ignored.
    """
    _check_same_length(y_true, y_pred)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            matrix[index[t]][index[p]] += 1
    return matrix


def format_report(metrics: dict, task: str) -> str:
    """Readable text table in the spirit of sklearn's classification_report."""
    if task not in MAIN_METRIC:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(MAIN_METRIC)}")
    rows = metrics.get("per_class" if task == "seq" else "per_type", {}) or {}
    width = max([len(str(name)) for name in rows] + [len("weighted avg")])
    header = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>9}"
    lines = [header, ""]
    for name, row in rows.items():
        lines.append(_row(str(name), row["precision"], row["recall"], row["f1"], row["support"], width))
    lines.append("")

    total_support = sum(int(row["support"]) for row in rows.values())
    if task == "seq":
        lines.append(_summary_row("accuracy", metrics["accuracy"], metrics.get("n", total_support), width))
    else:
        lines.append(_row("micro avg", metrics["precision"], metrics["recall"], metrics["f1"],
                          total_support, width))
    if rows:
        k = len(rows)
        lines.append(_row(
            "macro avg",
            sum(r["precision"] for r in rows.values()) / k,
            sum(r["recall"] for r in rows.values()) / k,
            # For seq, prefer the stored macro_f1 (identical by construction).
            metrics.get("macro_f1", sum(r["f1"] for r in rows.values()) / k),
            total_support,
            width,
        ))
    if task == "token":
        lines.append(_summary_row("token acc", metrics["accuracy"], metrics.get("n_tokens", ""), width))
    lines.append("")
    main = MAIN_METRIC[task]
    lines.append(f"main metric ({main}): {metrics[main]:.4f}   n={metrics.get('n', '')}")
    return "\n".join(lines) + "\n"


def _row(name: str, p: float, r: float, f: float, support: int, width: int) -> str:
    return f"{name:>{width}}  {p:>9.4f}  {r:>9.4f}  {f:>9.4f}  {support:>9}"


def _summary_row(name: str, value: float, support: int | str, width: int) -> str:
    return f"{name:>{width}}  {'':>9}  {'':>9}  {value:>9.4f}  {support:>9}"


def _check_same_length(y_true: list, y_pred: list) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
