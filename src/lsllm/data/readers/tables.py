"""Bytes and tables: every non-CoNLL format (CSV, TSV, JSON Lines, JSON, Parquet, `save_to_disk`) becomes
column names plus (line, row) pairs, with the helpers that resolve columns and report problems by line.
CSV/TSV parsing lives in delimited.py, cell checking in values.py."""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lsllm.errors import DataError

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "conll", "hf-disk", "text")

# Column names tried in order when the caller names none.
TEXT_NAMES = ("text", "sentence", "content", "review", "document", "tweet")
LABEL_NAMES = ("label", "labels", "category", "class", "target")
TOKEN_NAMES = ("tokens", "words")
TAG_NAMES = ("ner_tags", "tags", "labels")
# A first CSV/TSV row holding any of these is taken for a header.
HEADER_NAMES = frozenset(
    TEXT_NAMES + LABEL_NAMES + ("title", "description", "text_pair", "id", "idx", "index_id")
)

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}

Column = str | int
Key = str | int  # a resolved column: an index into a list row or a key of a dict row
Row = Sequence[str] | dict[str, Any]
Task = Literal["seq", "token"]

# ---------------------------------------------------------------------------
# reading the bytes


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path} does not exist; check the path")


def _read_text(path: Path, data: bytes | None = None) -> str:
    """Decode the file (or `data`, a chunk of it padded to its line numbers) as UTF-8 ourselves so a bad
    byte can be reported by line."""
    data = path.read_bytes() if data is None else data
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(
            f"{path}, line 1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); re-save it as UTF-8"
        )
    nul = data.find(b"\x00")
    if nul >= 0:  # valid UTF-8, but never in text: a binary or UTF-16 file read by mistake
        line = data.count(b"\n", 0, nul) + 1
        raise DataError(
            f"{path}, line {line}: contains a NUL byte; the file may be binary or UTF-16; re-save it as UTF-8"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}, line {line}: byte {e.start - line_start} of the line (file offset {e.start}) "
            f"is not valid UTF-8 ({e.reason}); re-save the file as UTF-8"
        ) from None


# ---------------------------------------------------------------------------
# tables: every non-CoNLL format becomes column names plus (line, row) pairs


@dataclass
class _Table:
    path: Path
    names: list[str] | None
    """Column names, or None for a headerless CSV/TSV."""
    rows: list[tuple[int, Row]]
    """(1-based line or row number, row) pairs; rows are lists (CSV) or dicts (others)."""
    unit: str = "line"
    """How to name a position in messages: "line" for text files, "row" for binary ones."""
    dict_rows: bool = False
    """Rows are dicts keyed by column name (all formats but CSV/TSV)."""
    label_names: dict[str, list[str]] | None = None
    """ClassLabel names per column (saved datasets only), to turn integer labels into names."""
    delimiter: str | None = None
    """CSV/TSV only: the field delimiter."""
    spans: dict[int, int] = field(default_factory=dict)
    """CSV/TSV only: first line -> last line of each row that spans several lines (a quoted newline)."""

    def where(self, line: int) -> str:
        return f"{self.path}, {self.unit} {line}"

    def ncols(self) -> int:
        if self.names is not None:
            return len(self.names)
        return len(self.rows[0][1]) if self.rows else 0


def _read_table(path: Path, fmt: str, data: bytes | None = None) -> _Table:
    """Any table format but CSV/TSV (see delimited.py), which need the caller's column hints."""
    if fmt == "jsonl":
        return _dict_table(path, _read_jsonl(path, data))
    if fmt == "json":
        return _dict_table(path, _read_json(path))
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt == "hf-disk":
        return _read_hf_disk(path)
    raise DataError(
        f"{path} is read as {fmt}, which holds token-tagged sentences, not rows of text; "
        "pass --format csv/tsv/jsonl/json/parquet, or use a file with one of those extensions"
    )


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: plain json keeps the last of two equal keys, silently dropping the first."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _duplicate_key_error(path: Path, line: int, key: str) -> DataError:
    return DataError(f"{path}, line {line}: key {key!r} appears twice in one JSON object; keep only one")


def _read_jsonl(path: Path, data: bytes | None = None) -> list[tuple[int, Any]]:
    items = []
    for n, line in enumerate(_read_text(path, data).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append((n, json.loads(line, object_pairs_hook=_no_duplicate_keys)))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}, line {n}: not valid JSON ({e.msg} at column {e.colno}); "
                "each line of a .jsonl file must be one JSON object"
            ) from None
        except _DuplicateKey as e:
            raise _duplicate_key_error(path, n, e.args[0]) from None
    return items


def _read_json(path: Path) -> list[tuple[int, Any]]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg} at column {e.colno}); fix the file") from None
    if not isinstance(data, list):
        raise DataError(f"{path}, line 1: expected a JSON list of objects [{{...}}, ...]; convert it or use .jsonl")
    # Decode the array item by item to learn the line each item starts on (and to report a
    # duplicate key by the line of its object).
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)
    skip = re.compile(r"[\s,]*")
    pos = text.index("[") + 1
    line, counted = 1, 0
    items = []
    for _ in data:
        pos = skip.match(text, pos).end()
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            item, pos = decoder.raw_decode(text, pos)
        except _DuplicateKey as e:
            raise _duplicate_key_error(path, line, e.args[0]) from None
        items.append((line, item))
    return items


def _dict_table(path: Path, items: list[tuple[int, Any]]) -> _Table:
    names: dict[str, None] = {}  # ordered union of keys
    for line, item in items:
        if not isinstance(item, dict):
            raise DataError(f"{path}, line {line}: expected a JSON object {{\"text\": ..., \"label\": ...}}, got {type(item).__name__}")
        names.update(dict.fromkeys(item))
    return _Table(path, list(names), items, dict_rows=True)


def _read_parquet(path: Path) -> _Table:
    import pyarrow.parquet as pq  # heavy; only when needed

    try:
        arrow = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot read as Parquet ({e}); check the file or pass --format") from None
    names = list(arrow.column_names)
    _check_unique_names(path, names)
    rows = list(enumerate(arrow.to_pylist(), start=1))
    return _Table(path, names, rows, unit="row", dict_rows=True)


def _read_hf_disk(path: Path) -> _Table:
    if (path / "dataset_dict.json").exists():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        example = path / (splits[0] if splits else "train")
        raise DataError(
            f"{path} holds several splits ({', '.join(splits)}); pass the folder of one split, e.g. {example}"
        )
    if not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
        raise DataError(f"{path} is a folder but not a dataset saved with datasets.Dataset.save_to_disk; pass a file or such a folder")
    import datasets  # heavy; only when needed

    ds = datasets.load_from_disk(str(path))
    label_names = {}
    for name, feature in ds.features.items():
        inner = getattr(feature, "feature", feature)  # List(ClassLabel) for tags
        if isinstance(inner, datasets.ClassLabel):
            label_names[name] = list(inner.names)
    rows = list(enumerate(ds.to_list(), start=1))
    return _Table(path, list(ds.column_names), rows, unit="row", dict_rows=True, label_names=label_names)


def _check_unique_names(path: Path, names: Sequence[str], where: str = "") -> None:
    """Two columns with one name (any case): a lookup by name would silently take one of them."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.strip().lower()
        if key and key in seen:
            raise DataError(
                f"{path}{where}: the column name {name!r} appears twice in the header; rename one of the columns"
            )
        seen[key] = name


# ---------------------------------------------------------------------------
# columns


def _resolve(table: _Table, spec: Column | None, role: str, flag: str) -> Key | None:
    """Turn a column name or index into a key for the table's rows (None when spec is None)."""
    if spec is None:
        return None
    if isinstance(spec, str) and (table.names is None or spec not in table.names) and re.fullmatch(r"-?\d+", spec):
        spec = int(spec)  # "2" from a command line
    if isinstance(spec, int):
        n = table.ncols()
        index = spec + n if spec < 0 else spec
        if not 0 <= index < n:
            raise DataError(f"{role} column {spec} is out of range: {table.path} has {n} columns (0-based); pass {flag}")
        return table.names[index] if table.dict_rows else index
    if table.names is None:
        raise DataError(
            f"{role} column {spec!r}: {table.path} has no header row (first line: {_first_row(table)}); "
            f"pass {flag} as a 0-based column number, or --header if the first line is a header"
        )
    if spec not in table.names:
        raise DataError(
            f"column {spec!r} not in {table.path}; columns are: {', '.join(table.names)}; pass {flag}"
        )
    return spec if table.dict_rows else table.names.index(spec)


def _default(table: _Table, candidates: Sequence[str]) -> Key | None:
    """The first candidate name (any case) that the table has, as a row key."""
    if table.names is None:
        return None
    lowered = [n.lower() for n in table.names]
    for c in candidates:
        if c in lowered:
            i = lowered.index(c)
            return table.names[i] if table.dict_rows else i
    return None


def _first_row(table: _Table) -> str:
    return ", ".join(repr(f.strip()) for f in table.rows[0][1]) if table.rows else "(none)"


def _columns_text(table: _Table) -> str:
    return ", ".join(table.names) if table.names else f"{table.ncols()} unnamed columns"


def _get(row: Row, key: Key) -> Any:
    if isinstance(row, dict):
        return row.get(key)
    return row[key] if key < len(row) else None


def _key_name(table: _Table, key: Key) -> str:
    if isinstance(key, str):
        return repr(key)
    return repr(table.names[key]) if table.names else f"{key}"
