"""Token tagging: CoNLL files (one token per line) and tables with token/tag lists; IOB1 -> IOB2."""
from __future__ import annotations

import re
from pathlib import Path

from ..iob import has_prefixes, iob1_to_iob2, is_valid, untyped_problem
from lsllm.errors import DataError

from ..records import TokenExample
from .tables import (
    TAG_NAMES,
    TOKEN_NAMES,
    Column,
    Key,
    Row,
    _columns_text,
    _default,
    _get,
    _read_table,
    _read_text,
    _resolve,
    _Table,
)
from .values import string_list


def _read_token(
    path: Path, fmt: str, token_column: Column | None, tag_column: Column | None, require_labels: bool,
    data: bytes | None = None, table: _Table | None = None,
) -> list[TokenExample]:
    """`data` (a chunk of a text file, padded to its line numbers) or `table` (a Parquet batch) instead of the
    whole file, as in seq.py."""
    if fmt == "csv":
        raise DataError(f"{path}: CSV cannot hold token-tagged sentences; use CoNLL (one token per line), JSON Lines or Parquet")
    if fmt == "text":
        raise DataError(
            f"{path}: plain text (--format text) is for sequence classification; for token tagging use CoNLL "
            "(one token per line, blank line between sentences), JSON Lines or Parquet"
        )
    if fmt in ("conll", "tsv"):  # a .tsv of tagged tokens is CoNLL with tabs
        examples, lines = _read_conll(path, token_column, tag_column, require_labels, data)
    else:
        examples, lines = _read_token_table(path, fmt, token_column, tag_column, require_labels, data, table)
    _normalize_tags(path, examples, lines)
    return examples


def _read_conll(
    path: Path, token_column: Column | None, tag_column: Column | None, require_labels: bool,
    data: bytes | None = None,
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

    for n, line in enumerate(_read_text(path, data).split("\n"), start=1):
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
    path: Path, fmt: str, token_column: Column | None, tag_column: Column | None, require_labels: bool,
    data: bytes | None = None, table: _Table | None = None,
) -> tuple[list[TokenExample], list[list[int]]]:
    table = table if table is not None else _read_table(path, fmt, data)
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
    tokens = string_list(table, line, token_key, _get(row, token_key), "token")
    if not tokens:
        raise DataError(f"{table.where(line)}: empty token list in column {token_key!r}; fill it in or remove the row")
    tags = string_list(table, line, tag_key, _get(row, tag_key), "tag") if tag_key is not None else None
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


def _normalize_tags(path: Path, examples: list[TokenExample], lines: list[list[int]]) -> None:
    """Validate IOB tags and turn IOB1 into IOB2, in place.

    A tag set with no B-/I- tags (e.g. PER/O) passes through. Converting an IOB2
    sentence is the identity, so converting every sentence of a BIO file is the same
    as converting only when some `I-` starts an entity (IOB1).
    """
    tagged = [(e, ls) for e, ls in zip(examples, lines) if e.tags]
    _check_typed(path, tagged)
    if not has_prefixes(t for e, _ in tagged for t in e.tags):  # all typed, after _check_typed
        return
    for example, tag_lines in tagged:
        for tag, n in zip(example.tags, tag_lines):
            if not is_valid(tag):
                raise DataError(
                    f"{path}, line {n}: tag {tag!r} is not IOB; in a file with B-/I- tags every tag "
                    "must be O, B-TYPE or I-TYPE; fix the tag"
                )
        example.tags = iob1_to_iob2(example.tags)


def _check_typed(path: Path, tagged: list[tuple[TokenExample, list[int]]]) -> None:
    """`B-` (no type) or `B-A B` would otherwise become an entity type of its own."""
    for example, tag_lines in tagged:
        for tag, n in zip(example.tags, tag_lines):
            problem = untyped_problem(tag)
            if problem:
                raise DataError(f"{path}, line {n}: {problem}")
