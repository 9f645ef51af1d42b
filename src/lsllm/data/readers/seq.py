"""Sequence classification: text (and optional text pair) plus label per row; plain text files
(one text per line) for prediction."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lsllm.errors import DataError

from ..records import SeqExample
from .delimited import HeaderHint, check_swallowed_rows, read_delimited
from .tables import (
    LABEL_NAMES,
    TEXT_NAMES,
    Column,
    Key,
    Row,
    _columns_text,
    _default,
    _get,
    _key_name,
    _read_table,
    _read_text,
    _resolve,
    _Table,
)
from .values import label_value, text_value


@dataclass
class _SeqColumns:
    text: Column | None
    text_pair: Column | None
    label: Column | None


def _read_seq(path: Path, fmt: str, cols: _SeqColumns, header: bool | None, require_labels: bool,
              data: bytes | None = None, table: _Table | None = None) -> list[SeqExample]:
    """`data` (a chunk of a text file, padded to its line numbers) or `table` (a Parquet batch) instead of the
    whole file: chunks.py reads big inputs piece by piece with the same checks."""
    if fmt == "text":
        return _read_plain(path, cols, require_labels, data)
    if table is None and fmt in ("csv", "tsv"):
        table = read_delimited(path, "," if fmt == "csv" else "\t", header, _hint(cols, require_labels), data)
    elif table is None:
        table = _read_table(path, fmt, data)
    if not table.rows:
        raise DataError(f"{path} has no examples (no data rows); check that it is the right file")
    text_key = _resolve(table, cols.text, "text", "--text-column")
    pair_key = _resolve(table, cols.text_pair, "text pair", "--text-pair-column")
    label_key = _resolve(table, cols.label, "label", "--label-column")
    _check_headerless_guess(table, cols, require_labels)
    if text_key is None:
        text_key = _default(table, TEXT_NAMES)
        if text_key is None and table.names is None:
            text_key = 0  # headerless: text first
        if text_key is None:
            raise DataError(
                f"no text column in {path}; columns are: {_columns_text(table)}; pass --text-column"
            )
    if label_key is None and cols.label is None:
        label_key = _default_label(table, used=(text_key, pair_key), require_labels=require_labels)
    if label_key is None and require_labels:
        raise DataError(
            f"no label column in {path}; columns are: {_columns_text(table)}; pass --label-column"
        )
    if table.delimiter is not None:
        # Without a label column, the last column is the best evidence of what a row looks like.
        check_swallowed_rows(table, label_key if label_key is not None else table.ncols() - 1,
                             label=label_key is not None)
    return [_seq_example(table, line, row, text_key, pair_key, label_key, require_labels) for line, row in table.rows]


def _hint(cols: _SeqColumns, require_labels: bool) -> HeaderHint:
    wanted = [c for c in (cols.text, cols.text_pair, cols.label) if isinstance(c, str)]
    return HeaderHint(wanted, _index(cols.label), labelled=require_labels)


def _index(spec: Column | None) -> int | None:
    """A column given by position (as a command line passes it, maybe a string)."""
    if isinstance(spec, int):
        return spec
    if isinstance(spec, str) and re.fullmatch(r"-?\d+", spec):
        return int(spec)
    return None


def _check_headerless_guess(table: _Table, cols: _SeqColumns, require_labels: bool) -> None:
    """Without a header, "text first, label last" is only safe for two columns: with more, a
    row joined to the next (a lost line break) or a label-first file (AG News) reads as
    nonsense with no error, so the columns must be named."""
    n = table.ncols()
    if table.names is not None or n <= 1:
        return
    if not require_labels and cols.text is None and cols.label is None:  # a comma in plain text must not cut it
        raise DataError(
            f"{table.where(table.rows[0][0])}: the file has no header and {n} columns, so where the text is is a "
            "guess; pass --text-column (and --label-column to keep gold labels), add a header, or use a .txt "
            "file / --format text for one text per line"
        )
    if n <= 2:
        return
    missing = [flag for flag, spec, needed in (("--text-column", cols.text, True),
                                               ("--label-column", cols.label, require_labels))
               if spec is None and needed]
    if missing:
        raise DataError(
            f"{table.where(table.rows[0][0])}: the file has no header and {n} columns, so which holds the text "
            f"(and the label) is a guess; pass {' and '.join(missing)} as 0-based column numbers, or add a header"
        )


def _default_label(table: _Table, used: tuple[Key | None, ...], require_labels: bool) -> Key | None:
    if table.names is not None:
        return _default(table, LABEL_NAMES)
    if not require_labels:
        return None  # prediction input: a headerless last column may be text, never guess it is gold
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
    text = text_value(table, line, text_key, _get(row, text_key))
    if not text:
        raise DataError(
            f"{table.where(line)}: empty text in column {_key_name(table, text_key)}; fill it in or remove the row"
        )
    pair = text_value(table, line, pair_key, _get(row, pair_key), "text pair") if pair_key is not None else None
    label = label_value(table, line, label_key, _get(row, label_key)) if label_key is not None else None
    if not label:
        if require_labels:
            raise DataError(
                f"{table.where(line)}: missing label in column {_key_name(table, label_key)}; "
                "fill it in or remove the row (unlabelled texts are for prediction only)"
            )
        label = None
    return SeqExample(text=text, label=label, text_pair=pair or None, source=f"{table.path}:{line}")


def _read_plain(path: Path, cols: _SeqColumns, require_labels: bool, data: bytes | None = None) -> list[SeqExample]:
    """One text per line, no quoting, no columns; blank (whitespace-only) lines are skipped."""
    if require_labels:
        raise DataError(
            f"{path} is read as plain text (one text per line): plain text files have no labels; use CSV/TSV/JSONL "
            "for training (or pass --format csv/tsv if this file has columns)"
        )
    if cols.text_pair is not None or cols.label is not None or cols.text not in (None, 0, "0"):
        raise DataError(
            f"{path} is plain text (one text per line), which has no columns; drop the column options "
            "or pass --format csv/tsv"
        )
    examples = []
    for n, line in enumerate(_read_text(path, data).split("\n"), start=1):
        if line.strip():
            examples.append(SeqExample(text=line.strip(), source=f"{path}:{n}"))
    return examples
