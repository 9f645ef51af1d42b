"""Training-curve / confusion-matrix figures (atomic file writes live in lsllm.files)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display, safe in training jobs
import matplotlib.pyplot as plt  # noqa: E402

from lsllm.files import write_bytes_atomic  # noqa: E402


def save_figure_atomic(fig: "plt.Figure", path: str | os.PathLike) -> None:
    """Save `fig` atomically (format from the extension, PNG if none) and close it."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        write_bytes_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------

def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(records: list[dict], value_of) -> tuple[list[int], list[float]]:
    """(steps, values) sorted by step, dropping records whose value is missing/NaN."""
    points = []
    for rec in records:
        value = value_of(rec)
        if _finite(value) and _finite(rec.get("step")):
            points.append((rec["step"], float(value)))
    points.sort(key=lambda p: p[0])
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(log_records: list[dict], path: str | os.PathLike) -> None:
    """Loss curves (left) and eval main metric (right) against step, saved to `path`."""
    train = [r for r in log_records if r.get("type") == "train"]
    evals = [r for r in log_records if r.get("type") == "eval"]
    splits = list(dict.fromkeys(r.get("split", "validation") for r in evals))
    main_metric = next((r["main_metric"] for r in evals if r.get("main_metric")), None)

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))

    steps, losses = _series(train, lambda r: r.get("loss"))
    if steps:
        # Markers only when there are few points, so a single point is visible.
        ax_loss.plot(steps, losses, label="train loss", color="tab:blue", linewidth=1.2,
                     marker="o" if len(steps) < 20 else None, markersize=3)
    for i, split in enumerate(splits):
        split_recs = [r for r in evals if r.get("split", "validation") == split]
        steps, losses = _series(split_recs, lambda r: r.get("loss"))
        if steps:
            ax_loss.plot(steps, losses, label=f"{split} loss", color=f"C{i + 1}", marker="o",
                         markersize=4, linewidth=1.5)
        steps, values = _series(split_recs, lambda r: (r.get("metrics") or {}).get(r.get("main_metric") or main_metric))
        if steps:
            ax_metric.plot(steps, values, label=f"{split} {main_metric}", color=f"C{i + 1}",
                           marker="o", markersize=4, linewidth=1.5)

    ax_loss.set_title("Loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(True, alpha=0.3)
    if ax_loss.get_lines():
        ax_loss.legend()
    else:
        ax_loss.text(0.5, 0.5, "no training records", ha="center", va="center", transform=ax_loss.transAxes)

    ax_metric.set_title(f"Evaluation {main_metric}" if main_metric else "Evaluation")
    ax_metric.set_xlabel("step")
    ax_metric.set_ylabel(main_metric or "metric")
    ax_metric.grid(True, alpha=0.3)
    if ax_metric.get_lines():
        ax_metric.legend()
        best = max(max(line.get_ydata()) for line in ax_metric.get_lines())
        ax_metric.set_title(f"Evaluation {main_metric} (best {best:.4f})")
    else:
        ax_metric.text(0.5, 0.5, "no evaluation records", ha="center", va="center",
                       transform=ax_metric.transAxes)

    fig.tight_layout()
    save_figure_atomic(fig, path)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: str | os.PathLike) -> None:
    """Annotated confusion heatmap (rows true, cols predicted), coloured by row share.

    Colouring by the row-normalised fraction keeps rare classes readable;
    the annotations are the raw counts.
    """
    n = len(labels)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"matrix must be {n}x{n} to match labels")
    fractions = []
    for row in matrix:
        total = sum(row)
        fractions.append([c / total if total else 0.0 for c in row])

    side = min(max(4.5, 0.42 * n + 2.5), 18)  # grows with labels, capped
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(fractions if n else [[0.0]], cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true label")

    short = [_shorten(str(label), 22) for label in labels]
    tick_size = 10 if n <= 10 else 8 if n <= 20 else 7
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(short, rotation=45 if n <= 10 else 90, ha="right" if n <= 10 else "center",
                       fontsize=tick_size)
    ax.set_yticklabels(short, fontsize=tick_size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")

    if n <= 40:  # beyond that, numbers would be unreadable anyway
        annot_size = 9 if n <= 10 else 7 if n <= 20 else 6
        for i in range(n):
            for j in range(n):
                count = matrix[i][j]
                if count == 0 and n > 10:
                    continue  # blank zeros keep dense matrices readable
                color = "white" if fractions[i][j] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=annot_size)

    fig.tight_layout()
    save_figure_atomic(fig, path)


def _shorten(text: str, limit: int) -> str:
    # Ellipsis in the middle: label sets often share a prefix and differ at the end.
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]
