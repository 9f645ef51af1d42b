"""CSV and TSV, strictly. A CSV row that cannot be parsed exactly is an error, never a guess:

- every row has the header's field count (headerless: the first row's); an unquoted comma
  would otherwise cut the text and shift the label;
- quotes are parsed in csv's strict mode; an unclosed quote is reported where it opened, and
  a quote that closes later but swallowed lines that look like rows is refused;
- a first row is a header when it has a known column name or the caller says so; one that
  only looks like a header (short names, a "label" seen nowhere else) is refused rather than
  trained on as an example.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from lsllm.errors import DataError
from .tables import HEADER_NAMES, Key, _check_unique_names, _read_text, _Table

# A column name: a letter or _ first, then word characters, spaces, dots or dashes; no
# sentence punctuation (, ; : ! ? quotes).
_NAME = re.compile(r"[^\W\d][\w .-]{0,40}")


@dataclass
class HeaderHint:
    """What the caller knows that helps decide whether the first row is a header."""

    wanted: list[str]
    """Column names the caller asked for: a first row holding one is a header."""
    label_index: int | None
    """The label column by position, when given as a number."""
    labelled: bool
    """Reading labelled data (training, evaluation) rather than prediction input."""


def read_delimited(path: Path, delimiter: str, header: bool | None, hint: HeaderHint,
                   data: bytes | None = None) -> _Table:
    lines = _physical_lines(_read_text(path, data))
    rows, spans = _parse(path, lines, delimiter)
    names = _take_header(path, rows, spans, delimiter, header, hint)
    _check_field_counts(path, names, rows, spans, delimiter, hint)
    return _Table(path, names, rows, delimiter=delimiter, spans=spans)


def _physical_lines(text: str) -> list[str]:
    r"""Lines split at \n only, ends kept, so line numbers match the JSONL and CoNLL readers
    and a text editor ("\r\n" ends a line; a lone "\r" does not)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _parse(path: Path, lines: list[str], delimiter: str) -> tuple[list[tuple[int, list[str]]], dict[int, int]]:
    """(first line, raw fields) per row, and first -> last line for rows that span lines.
    Only whitespace-only lines are skipped as blank; a row of empty fields is a row."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    spans: dict[int, int] = {}
    start = 1
    try:
        for row in reader:
            end = reader.line_num
            if row and not (end == start and not lines[start - 1].strip()):
                rows.append((start, row))
                if end > start:
                    spans[start] = end
            start = end + 1
    except csv.Error as e:
        raise _parse_error(path, lines, start, reader.line_num, delimiter, str(e)) from None
    return rows, spans


def _parse_error(path: Path, lines: list[str], start: int, stop: int, delimiter: str, reason: str) -> DataError:
    opened = _quote_opened(lines, start, stop, delimiter)
    if ("end of data" in reason or "field larger" in reason) and opened is not None:
        runs = "to the end of the file" if "end of data" in reason else f"past line {stop}"
        return DataError(
            f"{path}, line {opened}: a quote opened here is never closed (the quoted field runs {runs}); "
            'close the quote, or write a quote inside quoted text as two quotes ""'
        )
    if "expected after" in reason:
        if opened is not None and opened < stop:
            return DataError(
                f"{path}, line {opened}: the quote opened here closes on line {stop} with more text right after it; "
                'close the quote where the field ends (a quote inside quoted text is written "")'
            )
        return DataError(
            f"{path}, line {stop}: text right after a closing quote (a stray \"?); "
            'write a quote inside quoted text as two quotes "", or do not start an unquoted field with a quote'
        )
    if "new-line character" in reason:
        return DataError(
            f"{path}, line {stop}: a carriage return (\\r) inside an unquoted field; "
            "quote the field or re-save the file with \\n line endings"
        )
    return DataError(f"{path}, line {stop}: cannot parse the row ({reason}); check its quoting")


def _quote_opened(lines: list[str], start: int, stop: int, delimiter: str) -> int | None:
    """The line where the last quoted field opened, reading lines start..stop the way csv's
    strict mode does (it stops at text after a closing quote); None if no field was quoted."""
    field_start, unquoted, quoted, closed = range(4)
    state, opened = field_start, None
    for n in range(start, stop + 1):
        for ch in lines[n - 1]:
            if state == quoted:
                if ch == '"':
                    state = closed
            elif state == closed:
                if ch == '"':  # "" is an escaped quote
                    state = quoted
                elif ch in (delimiter, "\n", "\r"):
                    state = field_start
                else:
                    return opened
            elif ch in (delimiter, "\n", "\r"):
                state = field_start
            elif state == field_start and ch == '"':
                state, opened = quoted, n
            else:
                state = unquoted
    return opened


# ---------------------------------------------------------------------------
# header


def _take_header(
    path: Path,
    rows: list[tuple[int, list[str]]],
    spans: dict[int, int],
    delimiter: str,
    header: bool | None,
    hint: HeaderHint,
) -> list[str] | None:
    """Pop and return the header row's names, or None when the file has no header."""
    if not rows:
        return None
    line, raw = rows[0]
    first = [f.strip() for f in raw]
    if header is None:
        header = _recognised(first, hint.wanted)
        if not header and _looks_like_header(first, rows[1:], hint):
            _check_field_counts(path, None, rows, spans, delimiter, hint)  # a broken row is the likelier problem
            raise DataError(
                f"{path}, line {line} looks like a header ({', '.join(first)}) but has none of the usual column "
                f"names (text, label, ...); pass --header if it is one, --no-header if it is data"
            )
    if not header:
        return None
    rows.pop(0)
    _check_unique_names(path, first, f", line {line}")
    return first


def _recognised(first: list[str], wanted: list[str]) -> bool:
    return any(w in first for w in wanted) or bool({f.lower() for f in first} & HEADER_NAMES)


def _is_name(field: str) -> bool:
    return bool(_NAME.fullmatch(field)) and len(field.split()) <= 4 and not field.endswith(".")


def _looks_like_header(first: list[str], rest: list[tuple[int, list[str]]], hint: HeaderHint) -> bool:
    """Short identifier-like names whose "label" occurs nowhere else in the label column.

    Labelled data: the label column is the given one, else the last. Prediction input has no
    label column to lean on, so there the last column must also look like labels (a value
    repeats) before its unique first value counts as a name."""
    if not rest or not all(_is_name(f) for f in first):
        return False
    column = hint.label_index
    if column is None:
        if len(first) < 2:
            return False  # the only column is the text
        column = len(first) - 1
    if not -len(first) <= column < len(first):
        return False
    others = [row[column].strip() for _, row in rest if -len(row) <= column < len(row)]
    if first[column] in others:
        return False
    return hint.labelled or hint.label_index is not None or len(set(others)) < len(others)


# ---------------------------------------------------------------------------
# rows


def _check_field_counts(
    path: Path,
    names: list[str] | None,
    rows: list[tuple[int, list[str]]],
    spans: dict[int, int],
    delimiter: str,
    hint: HeaderHint,
) -> None:
    """Every row has the header's field count (headerless: the first row's). A trailing
    delimiter makes an extra empty field and is refused too: it is not what the header says."""
    if not rows:
        return
    expected = len(names) if names is not None else len(rows[0][1])
    against = "the header has" if names is not None else f"the first row (line {rows[0][0]}) has"
    sep = "comma" if delimiter == "," else "tab"
    for line, row in rows:
        if len(row) == expected:
            if names is not None and [f.strip() for f in row] == names:  # files concatenated with their headers
                raise DataError(f"{path}, line {line}: repeats the header row; remove it")
            continue
        found = f"{len(row)} field{'s' if len(row) != 1 else ''} but {against} {expected}"
        if line in spans:
            message = (f"the row starting here runs to line {spans[line]} inside a quoted field and has {found}; "
                       "check for a quote that is never closed")
        elif len(row) > expected:
            message = f"{found} (an unquoted {sep}?); quote the text or fix the row"
        else:
            message = f"{found} (a missing field or {sep}?); fill in the missing field or fix the row"
        if names is None and not hint.labelled:
            message += "; if each line is one text, use a .txt file or --format text"
        raise DataError(f"{path}, line {line}: {message}")


def check_swallowed_rows(table: _Table, key: Key | None, label: bool = False) -> None:
    """A quote opened (or closed) by mistake re-pairs the quotes after it: a quoted field runs on
    until some later quote closes it, and every line in between becomes part of one field. A
    quoted text over several lines is fine (paragraphs), unless

    - one of its lines reads as a row of this file: split at the delimiter (quotes taken
      literally, as a stray quote leaves them), the file's field count with a value in column
      `key` that the column holds, or the header's names (a swallowed header); or
    - the field is the label column (`label`): a label never holds a line break, so a quote
      that opened in the row's text and closed in a later row's label has swallowed a row."""
    ncols = table.ncols()
    if not table.spans or key is None or table.delimiter is None:
        return
    values = {v for _, row in table.rows if (v := row[key].strip())} if ncols >= 2 else set()
    for start, row in table.rows:
        if start not in table.spans:
            continue
        opened = start
        for column, field in enumerate(row):
            segments = field.split("\n")  # one per physical line the field covers
            last = opened + len(segments) - 1
            if len(segments) > 1:
                runs = f"{table.path}, line {opened}: the quote opened here runs to line {last}"
                if label and column == key:
                    raise DataError(
                        f"{runs}, so the label in column {_column_name(table, key)} spans several lines and "
                        "swallows what looks like the rest of a row; close the quote"
                    )
                for k, segment in enumerate(segments):
                    if ncols >= 2 and _row_like(segment, table.delimiter, ncols, key, values, table.names):
                        raise DataError(
                            f"{runs} and swallows lines that look like rows (line {opened + k}: {segment.strip()!r}); "
                            "close the quote"
                        )
            opened = last


def _column_name(table: _Table, key: Key) -> str:
    return repr(table.names[key]) if table.names and isinstance(key, int) else f"{key}"


def _row_like(segment: str, delimiter: str, ncols: int, key: Key, values: set[str], names: list[str] | None) -> bool:
    """A line that reads as a row: quotes are taken literally (a stray quote is what made the field
    run on, so a swallowed row often holds one, or the escaped half of a quoted one)."""
    fields = [f.strip().strip('"').strip() for f in segment.rstrip("\r").split(delimiter)]
    if len(fields) < ncols:
        return False
    value = fields[-1] if key in (-1, ncols - 1) else fields[key] if len(fields) == ncols else None
    if value in values:
        return True
    if len(fields) != ncols:
        return False
    lowered = [f.lower() for f in fields]
    return lowered == [n.lower() for n in names] if names else all(f in HEADER_NAMES for f in lowered)
