"""Sequence classification: text (and optional text pair) plus label per row."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..records import DataError, SeqExample
from .tables import (
    LABEL_NAMES,
    TEXT_NAMES,
    Column,
    Key,
    Row,
    _as_str,
    _columns_text,
    _default,
    _get,
    _key_name,
    _read_table,
    _resolve,
    _Table,
)


@dataclass
class _SeqColumns:
    text: Column | None
    text_pair: Column | None
    label: Column | None


def _read_seq(path: Path, fmt: str, cols: _SeqColumns, header: bool | None, require_labels: bool) -> list[SeqExample]:
    wanted = [c for c in (cols.text, cols.text_pair, cols.label) if isinstance(c, str)]
    table = _read_table(path, fmt, header, wanted)
    if not table.rows:
        raise DataError(f"{path} has no examples (no data rows); check that it is the right file")
    text_key = _resolve(table, cols.text, "text", "--text-column")
    pair_key = _resolve(table, cols.text_pair, "text pair", "--text-pair-column")
    label_key = _resolve(table, cols.label, "label", "--label-column")
    if text_key is None:
        text_key = _default(table, TEXT_NAMES)
        if text_key is None and table.names is None:
            text_key = 0  # headerless: text first
        if text_key is None:
            raise DataError(
                f"no text column in {path}; columns are: {_columns_text(table)}; pass --text-column"
            )
    if label_key is None and cols.label is None:
        label_key = _default_label(table, used=(text_key, pair_key))
    if label_key is None and require_labels:
        raise DataError(
            f"no label column in {path}; columns are: {_columns_text(table)}; pass --label-column"
        )
    return [_seq_example(table, line, row, text_key, pair_key, label_key, require_labels) for line, row in table.rows]


def _default_label(table: _Table, used: tuple[Key | None, ...]) -> Key | None:
    if table.names is not None:
        return _default(table, LABEL_NAMES)
    last = table.ncols() - 1  # headerless: label last, unless that column holds text
    return last if last not in used else None


def _seq_example(
    table: _Table,
    line: int,
    row: Row,
    text_key: Key,
    pair_key: Key | None,
    label_key: Key | None,
    require_labels: bool,
) -> SeqExample:
    text = _as_str(table, text_key, _get(row, text_key))
    if not text:
        raise DataError(
            f"{table.where(line)}: empty text in column {_key_name(table, text_key)}; fill it in or remove the row"
        )
    pair = _as_str(table, pair_key, _get(row, pair_key)) if pair_key is not None else None
    label = _as_str(table, label_key, _get(row, label_key)) if label_key is not None else None
    if not label:
        if require_labels:
            raise DataError(
                f"{table.where(line)}: missing label in column {_key_name(table, label_key)}; "
                "fill it in or remove the row (unlabelled texts are for prediction only)"
            )
        label = None
    return SeqExample(text=text, label=label, text_pair=pair or None, source=f"{table.path}:{line}")
