"""Cells to strings, strictly: a text must be a string and a label a string or an integer.

JSON, Parquet and saved datasets carry types; turning a list, a boolean or bytes into its
Python repr (`[1]`, `True`, `b'..'`) would train on text nobody wrote, so those are refused
with the file, the line (or row), the column and the type found.
"""
from __future__ import annotations

import math
from typing import Any

from lsllm.errors import DataError
from .tables import Key, _key_name, _Table


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", bytes: "bytes", list: "a list",
             tuple: "a list", dict: "an object"}
    kind = kinds.get(type(value), f"a {type(value).__name__}")
    shown = repr(value)
    return f"{kind} ({shown[:40] + '...' if len(shown) > 40 else shown})"


def _checked_str(table: _Table, line: int, key: Key, value: str, role: str) -> str:
    if "\x00" in value:
        raise DataError(
            f"{table.where(line)}: the {role} in column {_key_name(table, key)} contains a NUL character; "
            "remove it (the data may have been decoded from binary or UTF-16)"
        )
    return value.strip()


def text_value(table: _Table, line: int, key: Key, value: Any, role: str = "text") -> str | None:
    """A text cell, stripped; None when missing. Only strings are text."""
    if isinstance(value, str):
        return _checked_str(table, line, key, value, role)
    if _missing(value):
        return None
    raise DataError(
        f"{table.where(line)}: column {_key_name(table, key)} holds {_describe(value)}, but a {role} must be a "
        "string; store the column as strings"
    )


def label_value(table: _Table, line: int, key: Key, value: Any, role: str = "label") -> str | None:
    """A label cell as a string; None when missing (or -1, "no label", for a ClassLabel column).
    Integers (and integer-valued floats such as pandas' 1.0) become "1"; ClassLabel ids become names."""
    if isinstance(value, str):
        return _checked_str(table, line, key, value, role)
    if _missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        names = (table.label_names or {}).get(key)
        if not names:
            return str(value)
        if value == -1:  # the datasets convention for an unlabelled row
            return None
        if 0 <= value < len(names):
            return names[value]
        raise DataError(
            f"{table.where(line)}: {role} id {value} in column {_key_name(table, key)} is out of range for its "
            f"{len(names)} class names ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); fix the id"
        )
    raise DataError(
        f"{table.where(line)}: column {_key_name(table, key)} holds {_describe(value)}, but a {role} must be a "
        "string or a whole number; store the labels as strings or integers"
    )


def string_list(table: _Table, line: int, key: Key, value: Any, role: str) -> list[str] | None:
    """A token or tag list: one string per token. Tags may be integers only where a ClassLabel
    names them; a missing entry becomes "" (reported as empty by the caller)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise DataError(
            f"{table.where(line)}: column {_key_name(table, key)} should hold a list (one {role} per word), "
            f"got {_describe(value)}"
        )
    names = (table.label_names or {}).get(key) if role == "tag" else None
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(_checked_str(table, line, key, item, role))
        elif item is None:
            out.append("")
        elif names and isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(names):
            out.append(names[item])
        else:
            fix = "store tag names such as B-PER (or save the column as a ClassLabel)" if role == "tag" else \
                "store the tokens as strings"
            raise DataError(
                f"{table.where(line)}: column {_key_name(table, key)} holds {_describe(item)} as a {role}, but "
                f"each {role} must be a string; {fix}"
            )
    return out
