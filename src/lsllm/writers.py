"""Prediction files: JSONL (one object per row) or flat CSV, written atomically."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from lsllm.files import json_default, write_text_atomic

_FORMATS = ("jsonl", "csv")
# Dict-valued columns under these keys are probability maps: {"pos": 0.9} -> prob_pos.
_PROB_KEYS = ("probs", "probabilities", "prob", "proba")


def write_predictions(path: str | os.PathLike, rows: list[dict], format: str | None = None) -> None:
    """Write prediction rows as JSONL (default) or CSV (`.csv` or format="csv")."""
    fmt = _resolve_format(Path(path), format)
    text = _to_csv(rows) if fmt == "csv" else _to_jsonl(rows)
    write_text_atomic(path, text)


def _resolve_format(path: Path, format: str | None) -> str:
    if format is not None:
        fmt = format.lower().lstrip(".")
        if fmt not in _FORMATS:
            raise ValueError(f"unknown predictions format {format!r}; expected one of {_FORMATS}")
        return fmt
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def _to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, default=json_default) + "\n" for row in rows)


def flatten_row(row: dict) -> dict[str, Any]:
    """One CSV cell per scalar; dicts spread into columns, lists JSON-encoded."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            prefix = "prob_" if key in _PROB_KEYS else f"{key}_"
            for sub_key, sub_value in value.items():
                flat[f"{prefix}{sub_key}"] = _cell(sub_value)
        else:
            flat[key] = _cell(value)
    return flat


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)) or (hasattr(value, "tolist") and not _is_scalar(value)):
        return json.dumps(value, ensure_ascii=False, default=json_default)
    if hasattr(value, "item"):  # numpy scalar -> Python scalar for a clean repr
        return value.item()
    return value


def _is_scalar(value: Any) -> bool:
    return getattr(value, "ndim", 1) == 0


def _to_csv(rows: list[dict]) -> str:
    flat_rows = [flatten_row(row) for row in rows]
    columns: dict[str, None] = {}  # union of keys, first-seen order
    for row in flat_rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat_rows)
    return buffer.getvalue() if columns else ""
