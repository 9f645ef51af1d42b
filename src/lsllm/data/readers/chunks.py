"""Big inputs piece by piece: `iter_chunks` reads a file of any size as chunks of whole records (rows,
lines, CoNLL sentences, Parquet batches), each checked by the same readers as a whole file and numbered by
the file's own lines, so an error in the millionth row names that row. Memory holds one chunk.

A text chunk is handed to the readers as its bytes preceded by the CSV/TSV header (when the file has one)
and one empty line per line before the chunk: every reader skips empty lines, so line numbers stay the
file's. JSON (one array) and saved `datasets` folders are read whole (use JSON Lines or Parquet for big
inputs)."""
from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lsllm.errors import DataError

from ..records import SeqExample, TokenExample
from .delimited import read_delimited
from .seq import _hint, _read_seq, _SeqColumns
from .tables import Column, Task, _check_exists, _check_unique_names, _Table
from .token import _read_token


FIRST_CSV_CHUNK = 1000
"""Rows in a CSV/TSV file's first chunk at least: whether the first row is a header is decided from the rows
after it (as reading the whole file does), so that chunk is not cut short."""


@dataclass
class Chunk:
    index: int
    """0-based chunk number: the same file and chunk size cut the same chunks."""
    examples: list
    first: int
    """0-based index in the whole file of the chunk's first example."""
    digest: str
    """sha256 of the chunk's bytes (rows, for Parquet): tells a resumed run whether the chunk changed."""


def iter_chunks(path: str | Path, task: Task, rows: int = 1000, *, format: str | None = None,
                text_column: Column | None = None, text_pair_column: Column | None = None,
                label_column: Column | None = None, token_column: Column | None = None,
                tag_column: Column | None = None, header: bool | None = None,
                require_labels: bool = False) -> Iterator[Chunk]:
    """Chunks of about `rows` records of `path` (the options of `read_examples`). Raises DataError for the
    first bad record, after yielding the chunks before it; for a file without any example."""
    from . import detect_format, check_column_options

    path = Path(path)
    _check_exists(path)
    if rows < 1:
        raise ValueError(f"rows must be at least 1, not {rows}")
    fmt = detect_format(path, format, task)
    check_column_options(path, task, text_column, text_pair_column, label_column, token_column, tag_column)
    cols = _SeqColumns(text_column, text_pair_column, label_column)

    def read(data: bytes | None = None, table: _Table | None = None, head: bool | None = header) -> list:
        if task == "seq":
            return _read_seq(path, fmt, cols, head, require_labels, data, table)
        return _read_token(path, fmt, token_column, tag_column, require_labels, data, table)

    if fmt == "parquet":
        pieces = ((1, None, table, digest) for table, digest in _parquet_batches(path, rows))
    elif fmt in ("json", "hf-disk"):
        pieces = iter([(1, None, None, _file_digest(path))])
    else:
        pieces = ((line, data, None, hashlib.sha256(data).hexdigest())
                  for line, data in _text_chunks(path, fmt, task, rows))
    header_bytes, head, first, seen = b"", header, 0, False
    for index, (line, data, table, digest) in enumerate(pieces):
        if data is not None and line > 1:  # empty lines in place of the lines before: line numbers stay
            data = header_bytes + b"\n" * (line - 1 - header_bytes.count(b"\n")) + data
        if index == 0 and data is not None and fmt in ("csv", "tsv") and task == "seq":
            # Parsed once here, so the header decision it makes can be kept for the later chunks.
            table = read_delimited(path, "," if fmt == "csv" else "\t", header, _hint(cols, require_labels), data)
            header_bytes, head = _header_of(table, data)
        examples = read(data, table, head)
        seen = seen or bool(examples)
        yield Chunk(index, examples, first, digest)
        first += len(examples)
    if not seen:
        raise DataError(f"{path} has no examples; check that it is the right file and not empty")


def _header_of(table: _Table, data: bytes) -> tuple[bytes, bool]:
    """(the header's lines, True) when reading the first chunk took its first row for a header, else
    (b"", False): later chunks are read the same way."""
    if table.names is None:
        return b"", False
    first_data_line = table.rows[0][0] if table.rows else 2
    return b"\n".join(data.split(b"\n")[:first_data_line - 1]) + b"\n", True


def _text_chunks(path: Path, fmt: str, task: Task, rows: int) -> Iterator[tuple[int, bytes]]:
    """(first line, bytes) of each chunk: whole records only (a CSV/TSV file's first chunk holds at least
    FIRST_CSV_CHUNK, and one more, its header if it has one)."""
    conll = task == "token" and fmt in ("conll", "tsv")
    delimited = fmt in ("csv", "tsv") and not conll
    with open(path, "rb") as f:
        pending: list[bytes] = []
        ends = (_csv_record_ends(f, "," if fmt == "csv" else "\t", pending) if delimited
                else _line_record_ends(f, pending, conll))
        start, records, limit = 1, 0, max(rows, FIRST_CSV_CHUNK) + 1 if delimited else rows
        for end, is_record in ends:
            records += is_record
            if records >= limit:
                yield start, b"".join(pending)
                pending.clear()
                start, records, limit = end + 1, 0, rows
        if pending:
            yield start, b"".join(pending)


def _line_record_ends(lines: Iterator[bytes], pending: list[bytes], conll: bool) -> Iterator[tuple[int, bool]]:
    """(line number, whether a record ended there) per line: a non-empty line is a record (JSONL, text); a
    CoNLL sentence ends at an empty line (or the file's end)."""
    n, in_sentence = 0, False
    for line in lines:
        n += 1
        pending.append(line)
        blank = not line.strip()
        if conll:
            ended = blank and in_sentence
            in_sentence = not blank
            yield n, ended
        else:
            yield n, not blank


def _csv_record_ends(lines: Iterator[bytes], delimiter: str, pending: list[bytes]) -> Iterator[tuple[int, bool]]:
    """(last line, True) per CSV/TSV record, found by csv itself (a quoted field may hold line breaks). At a
    quoting error the lines read so far end the chunk, whose reading then reports it."""

    def feed() -> Iterator[str]:
        for line in lines:
            pending.append(line)
            yield line.decode("utf-8", "replace")

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    try:
        for row in reader:
            yield reader.line_num, bool(row)
    except csv.Error:
        yield reader.line_num, True


def _parquet_batches(path: Path, rows: int) -> Iterator[tuple[_Table, str]]:
    import pyarrow.parquet as pq  # heavy; only when needed

    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot read as Parquet ({e}); check the file or pass --format") from None
    names = list(parquet.schema_arrow.names)
    _check_unique_names(path, names)
    done = 0
    for batch in parquet.iter_batches(batch_size=rows):
        items = batch.to_pylist()
        digest = hashlib.sha256(json.dumps(items, default=str, sort_keys=True).encode()).hexdigest()
        yield _Table(path, names, list(enumerate(items, start=done + 1)), unit="row", dict_rows=True), digest
        done += len(items)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    for file in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


__all__ = ["Chunk", "iter_chunks", "SeqExample", "TokenExample"]
