"""Read labelled (or unlabelled) examples from CSV, TSV, JSON Lines, JSON, Parquet,
CoNLL and `datasets.save_to_disk` folders into plain records.

Every problem with the input is a `DataError` raised before any model work starts;
its message names the file, the line (or row) and what to do about it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .records import DataError, SeqExample, TokenExample

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "conll", "hf-disk")

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
# public API


def detect_format(path: str | Path, format: str | None = None) -> str:
    """The reader format for `path`: `format` when given (checked), else from the
    extension; a folder is a saved `datasets` dataset; any other extension is CoNLL."""
    path = Path(path)
    if format is not None:
        if format not in FORMATS:
            raise DataError(f"unknown format {format!r} for {path}; use one of: {', '.join(FORMATS)}")
        return format
    if path.is_dir():
        return "hf-disk"
    return _EXTENSIONS.get(path.suffix.lower(), "conll")


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
    fmt = detect_format(path, format)
    if task == "seq":
        if token_column is not None or tag_column is not None:
            raise ValueError("token_column/tag_column are for token tasks; use text_column/label_column")
        cols = _SeqColumns(text_column, text_pair_column, label_column)
        examples: list = _read_seq(path, fmt, cols, header, require_labels)
    else:
        if text_column is not None or text_pair_column is not None or label_column is not None:
            raise ValueError("text_column/label_column are for sequence tasks; use token_column/tag_column")
        examples = _read_token(path, fmt, token_column, tag_column, require_labels)
    if not examples:
        raise DataError(f"{path} has no examples; check that it is the right file and not empty")
    return examples


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


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2: an `I-X` that starts an entity (after `O`, at the start, or after
    another type) becomes `B-X`. An IOB2 sentence comes back unchanged."""
    out: list[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


# ---------------------------------------------------------------------------
# reading the bytes


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path} does not exist; check the path")


def _read_text(path: Path) -> str:
    """Decode the file as UTF-8 ourselves so a bad byte can be reported by line."""
    data = path.read_bytes()
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

    def where(self, line: int) -> str:
        return f"{self.path}, {self.unit} {line}"

    def ncols(self) -> int:
        if self.names is not None:
            return len(self.names)
        return len(self.rows[0][1]) if self.rows else 0


def _read_table(path: Path, fmt: str, header: bool | None, wanted: list[str]) -> _Table:
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, "," if fmt == "csv" else "\t", header, wanted)
    if fmt == "jsonl":
        return _dict_table(path, _read_jsonl(path))
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


def _read_delimited(path: Path, delimiter: str, header: bool | None, wanted: list[str]) -> _Table:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            # Trailing whitespace is noise (SST-2 has a space before each tab).
            fields = [f.strip() for f in row]
            if any(fields):  # skip blank lines
                rows.append((start, fields))
            start = reader.line_num + 1  # a quoted field may span several lines
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: cannot parse the row ({e}); check its quoting") from None
    names = None
    if rows and _is_header(rows[0][1], header, wanted):
        names = rows.pop(0)[1]
    return _Table(path, names, rows)


def _is_header(first: list[str], header: bool | None, wanted: list[str]) -> bool:
    if header is not None:
        return header
    lowered = {f.lower() for f in first}
    return any(w in first for w in wanted) or bool(lowered & HEADER_NAMES)


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    items = []
    for n, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}, line {n}: not valid JSON ({e.msg} at column {e.colno}); "
                "each line of a .jsonl file must be one JSON object"
            ) from None
    return items


def _read_json(path: Path) -> list[tuple[int, Any]]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg} at column {e.colno}); fix the file") from None
    if not isinstance(data, list):
        raise DataError(f"{path}, line 1: expected a JSON list of objects [{{...}}, ...]; convert it or use .jsonl")
    # Walk the array a second time only to learn the line each item starts on.
    decoder = json.JSONDecoder()
    skip = re.compile(r"[\s,]*")
    pos = text.index("[") + 1
    line, counted = 1, 0
    items = []
    for item in data:
        pos = skip.match(text, pos).end()
        line += text.count("\n", counted, pos)
        counted = pos
        items.append((line, item))
        _, pos = decoder.raw_decode(text, pos)
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
    rows = list(enumerate(arrow.to_pylist(), start=1))
    return _Table(path, list(arrow.column_names), rows, unit="row", dict_rows=True)


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
    return ", ".join(repr(f) for f in table.rows[0][1]) if table.rows else "(none)"


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


def _as_str(table: _Table, key: Key, value: Any) -> str | None:
    """A cell as a stripped string; None for missing/NaN; integers (and 1.0) as "1"."""
    if type(value) is str:  # the common case, first
        return value.strip()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        names = (table.label_names or {}).get(key)  # ClassLabel id -> name
        return names[value] if names and 0 <= value < len(names) else str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# ---------------------------------------------------------------------------
# sequence classification


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


# ---------------------------------------------------------------------------
# token tagging


def _read_token(
    path: Path, fmt: str, token_column: Column | None, tag_column: Column | None, require_labels: bool
) -> list[TokenExample]:
    if fmt == "csv":
        raise DataError(f"{path}: CSV cannot hold token-tagged sentences; use CoNLL (one token per line), JSON Lines or Parquet")
    if fmt in ("conll", "tsv"):  # a .tsv of tagged tokens is CoNLL with tabs
        examples, lines = _read_conll(path, token_column, tag_column, require_labels)
    else:
        examples, lines = _read_token_table(path, fmt, token_column, tag_column, require_labels)
    _normalize_tags(path, examples, lines)
    return examples


def _read_conll(
    path: Path, token_column: Column | None, tag_column: Column | None, require_labels: bool
) -> tuple[list[TokenExample], list[list[int]]]:
    token_i = _conll_index(token_column, 0, "token", "--token-column")
    tag_i = _conll_index(tag_column, -1, "tag", "--tag-column")
    examples: list[TokenExample] = []
    tag_lines: list[list[int]] = []
    sentence: list[tuple[int, list[str]]] = []
    expected: int | None = None
    split_tabs = False

    def flush() -> None:
        if sentence:
            example, lines = _conll_sentence(path, sentence, expected, token_i, tag_i, require_labels)
            examples.append(example)
            tag_lines.append(lines)
            sentence.clear()

    for n, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            flush()
            continue
        if expected is None:
            split_tabs = "\t" in line  # the first data line decides tab vs space columns
        fields = [f.strip() for f in line.rstrip("\r\n").split("\t")] if split_tabs else line.split()
        if fields[0] == "-DOCSTART-":  # document marker: not a sentence, ends one
            flush()
            continue
        if expected is None:
            expected = len(fields)
        if len(fields) != expected:
            raise DataError(
                f"{path}, line {n}: expected {expected} columns (like the first data line) but found {len(fields)}; "
                "fix the line (columns are separated by " + ("tabs" if split_tabs else "spaces") + ")"
            )
        sentence.append((n, fields))
    flush()
    return examples, tag_lines


def _conll_index(spec: Column | None, default: int, role: str, flag: str) -> int:
    if spec is None:
        return default
    if isinstance(spec, str) and re.fullmatch(r"-?\d+", spec):
        return int(spec)
    if isinstance(spec, int):
        return spec
    raise DataError(f"CoNLL files have no column names; pass {flag} as a 0-based number, not {spec!r}")


def _conll_sentence(
    path: Path,
    sentence: list[tuple[int, list[str]]],
    ncols: int,
    token_i: int,
    tag_i: int,
    require_labels: bool,
) -> tuple[TokenExample, list[int]]:
    first = sentence[0][0]
    for index, role, flag in ((token_i, "token", "--token-column"), (tag_i, "tag", "--tag-column")):
        if not -ncols <= index < ncols:
            raise DataError(f"{path}, line {first}: {role} column {index} is out of range for {ncols} columns; pass {flag}")
    has_tags = tag_i % ncols != token_i % ncols  # a one-column file has tokens only
    if not has_tags and require_labels:
        raise DataError(
            f"{path}, line {first}: the file has {ncols} column(s) and no tag column; "
            "add tags (last column by default) or pass --tag-column"
        )
    tokens = [fields[token_i] for _, fields in sentence]
    tags = [fields[tag_i] for _, fields in sentence] if has_tags else None
    for n, fields in sentence:
        if not fields[token_i]:
            raise DataError(f"{path}, line {n}: empty token; fill it in or remove the line")
        if has_tags and not fields[tag_i] and require_labels:
            raise DataError(f"{path}, line {n}: empty tag; fill it in (O for no entity)")
    return TokenExample(tokens=tokens, tags=tags, source=f"{path}:{first}"), [n for n, _ in sentence]


def _read_token_table(
    path: Path, fmt: str, token_column: Column | None, tag_column: Column | None, require_labels: bool
) -> tuple[list[TokenExample], list[list[int]]]:
    table = _read_table(path, fmt, None, [])
    if not table.rows:
        raise DataError(f"{path} has no examples (no rows); check that it is the right file")
    token_key = _resolve(table, token_column, "token", "--token-column")
    if token_key is None:
        token_key = _default(table, TOKEN_NAMES)
    if token_key is None:
        raise DataError(f"no token column in {path}; columns are: {_columns_text(table)}; pass --token-column")
    tag_key = _resolve(table, tag_column, "tag", "--tag-column")
    if tag_key is None:
        tag_key = _default(table, TAG_NAMES)
    if tag_key is None and require_labels:
        raise DataError(f"no tag column in {path}; columns are: {_columns_text(table)}; pass --tag-column")
    examples, lines = [], []
    for line, row in table.rows:
        examples.append(_token_row(table, line, row, token_key, tag_key, require_labels))
        lines.append([line] * len(examples[-1].tokens))
    return examples, lines


def _token_row(
    table: _Table, line: int, row: Row, token_key: Key, tag_key: Key | None, require_labels: bool
) -> TokenExample:
    tokens = _as_list(table, line, token_key, _get(row, token_key))
    if not tokens:
        raise DataError(f"{table.where(line)}: empty token list in column {token_key!r}; fill it in or remove the row")
    tags = _as_list(table, line, tag_key, _get(row, tag_key)) if tag_key is not None else None
    if not tags:
        if require_labels:
            raise DataError(f"{table.where(line)}: missing tags in column {tag_key!r}; give one tag per token")
        tags = None
    elif len(tags) != len(tokens):
        raise DataError(
            f"{table.where(line)}: {len(tokens)} tokens but {len(tags)} tags; give exactly one tag per token"
        )
    if any(not t for t in tokens) or (tags and any(not t for t in tags)):
        raise DataError(f"{table.where(line)}: empty token or tag; fill it in")
    return TokenExample(tokens=tokens, tags=tags, source=f"{table.path}:{line}")


def _as_list(table: _Table, line: int, key: Key, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise DataError(
            f"{table.where(line)}: column {key!r} should hold a list (one entry per token), got {type(value).__name__}"
        )
    return [_as_str(table, key, v) or "" for v in value]


# ---------------------------------------------------------------------------
# IOB tags


_BIO = re.compile(r"[BI]-.+")


def _normalize_tags(path: Path, examples: list[TokenExample], lines: list[list[int]]) -> None:
    """Validate IOB tags and turn IOB1 into IOB2, in place.

    A tag set with no B-/I- tags (e.g. PER/O) passes through. Converting an IOB2
    sentence is the identity, so converting every sentence of a BIO file is the same
    as converting only when some `I-` starts an entity (IOB1).
    """
    tagged = [(e, ls) for e, ls in zip(examples, lines) if e.tags]
    if not any(_BIO.fullmatch(t) for e, _ in tagged for t in e.tags):
        return
    for example, tag_lines in tagged:
        for tag, n in zip(example.tags, tag_lines):
            if tag != "O" and not _BIO.fullmatch(tag):
                raise DataError(
                    f"{path}, line {n}: tag {tag!r} is not IOB; in a file with B-/I- tags every tag "
                    "must be O, B-TYPE or I-TYPE; fix the tag"
                )
        example.tags = iob1_to_iob2(example.tags)
