"""Read labelled (or unlabelled) examples from CSV, TSV, JSON Lines, JSON, Parquet,
CoNLL, plain text and `datasets.save_to_disk` folders into plain records.

Every problem with the input is a `DataError` raised before any model work starts;
its message names the file, the line (or row) and what to do about it.
"""
from __future__ import annotations

from pathlib import Path

from lsllm.errors import DataError

from ..records import SeqExample, TokenExample
from .seq import _read_seq, _SeqColumns
from .tables import (
    _EXTENSIONS,
    FORMATS,
    HEADER_NAMES,
    LABEL_NAMES,
    TAG_NAMES,
    TEXT_NAMES,
    TOKEN_NAMES,
    Column,
    Task,
    _check_exists,
)
from .token import _read_token, iob1_to_iob2

__all__ = ["FORMATS", "HEADER_NAMES", "LABEL_NAMES", "TAG_NAMES", "TEXT_NAMES", "TOKEN_NAMES", "detect_format",
           "iob1_to_iob2", "read_examples", "read_texts"]


def detect_format(path: str | Path, format: str | None = None, task: Task | None = None) -> str:
    """The reader format for `path`: `format` when given (checked), else from the
    extension; a folder is a saved `datasets` dataset; `.txt` is plain text (one text per
    line) for sequence tasks but CoNLL for token tasks (CoNLL files are often .txt); any
    other extension is CoNLL."""
    path = Path(path)
    if format is not None:
        if format not in FORMATS:
            raise DataError(f"unknown format {format!r} for {path}; use one of: {', '.join(FORMATS)}")
        return format
    if path.is_dir():
        return "hf-disk"
    suffix = path.suffix.lower()
    if suffix == ".txt" and task == "seq":
        return "text"
    return _EXTENSIONS.get(suffix, "conll")


def read_examples(
    path: str | Path,
    task: Task,
    *,
    format: str | None = None,
    text_column: Column | None = None,
    text_pair_column: Column | None = None,
    label_column: Column | None = None,
    token_column: Column | None = None,
    tag_column: Column | None = None,
    header: bool | None = None,
    require_labels: bool = True,
) -> list[SeqExample] | list[TokenExample]:
    """Read a data file into `SeqExample`s (task "seq") or `TokenExample`s (task "token").

    Columns are names or 0-based indexes; `header=None` auto-detects a CSV/TSV header.
    With `require_labels=False` a missing label column or empty label gives `label=None`.
    """
    if task not in ("seq", "token"):
        raise ValueError(f"task must be 'seq' or 'token', not {task!r}")
    path = Path(path)
    _check_exists(path)
    fmt = detect_format(path, format, task)
    check_column_options(path, task, text_column, text_pair_column, label_column, token_column, tag_column)
    if task == "seq":
        cols = _SeqColumns(text_column, text_pair_column, label_column)
        examples: list = _read_seq(path, fmt, cols, header, require_labels)
    else:
        examples = _read_token(path, fmt, token_column, tag_column, require_labels)
    if not examples:
        raise DataError(f"{path} has no examples; check that it is the right file and not empty")
    return examples


def check_column_options(path: Path, task: Task, text_column: Column | None, text_pair_column: Column | None,
                         label_column: Column | None, token_column: Column | None, tag_column: Column | None) -> None:
    if task == "seq" and (token_column is not None or tag_column is not None):
        raise DataError(f"{path}: --token-column/--tag-column are for token tasks; use --text-column/--label-column")
    if task == "token" and (text_column is not None or text_pair_column is not None or label_column is not None):
        raise DataError(f"{path}: --text-column/--text-pair-column/--label-column are for sequence tasks; use "
                        "--token-column/--tag-column")


def read_texts(
    path: str | Path,
    *,
    format: str | None = None,
    text_column: Column | None = None,
    text_pair_column: Column | None = None,
    label_column: Column | None = None,
    header: bool | None = None,
) -> list[SeqExample]:
    """Texts to classify, for prediction: labels are read when present, else None."""
    return read_examples(
        path,
        "seq",
        format=format,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        header=header,
        require_labels=False,
    )
