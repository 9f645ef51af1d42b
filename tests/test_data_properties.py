"""Property tests: valid CSV/TSV, JSON Lines and CoNLL files with known rows, then one random
mutation (delete or insert a quote, comma, tab, newline, space or brace; duplicate a line;
truncate). Whatever the mutation, the reader either raises DataError or returns rows that

1. are exactly what a strict parse of the mutated bytes says (Python's csv module in strict
   mode for CSV/TSV, json.loads per line for JSON Lines): the reader never guesses; and
2. are not shifted: compared with the original rows, one local edit can change one row's text
   or its label, never both, and can neither merge rows (a swallowed row) nor cut a text to
   make a label out of the rest. A duplicated line may add a copy of a row; truncation may
   drop rows and cut the last one's label short, nothing else.

The unmutated file always reads back exactly (unless a multi-line text holds a line that is
itself a row of the file, the one case the swallowed-row check refuses on purpose).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsllm.data.readers import HEADER_NAMES, read_examples
from lsllm.errors import DataError

# database=None: no replay of examples saved by earlier runs, so every run (CI included) draws the same ones.
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STRUCTURAL = '",\t\n {}'

# Texts full of the characters that matter to the formats, plus any printable unicode.
_CHARS = st.one_of(st.sampled_from(list('ab,;:"\'\t\n {}[]\\é日')),
                   st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")))
TEXTS = st.text(_CHARS, min_size=1, max_size=25).map(str.strip).filter(
    lambda t: t and t.lower() not in HEADER_NAMES)
LABEL_SETS = st.sampled_from([("pos", "neg", "neutral"), ("0", "1", "2"), ("World", "Sci/Tech", "Sports")])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("props")


@st.composite
def labelled_rows(draw) -> list[tuple[str, str]]:
    labels = draw(LABEL_SETS)
    rows = draw(st.lists(st.tuples(TEXTS, st.sampled_from(labels)), min_size=2, max_size=8))
    if sum(label == rows[0][1] for _, label in rows) < 2:
        rows.append((draw(TEXTS), rows[0][1]))  # a headerless first row needs its label seen again
    return rows


@st.composite
def mutated(draw, content: str, chars: str = STRUCTURAL) -> tuple[str, str]:
    kind = draw(st.sampled_from(["delete", "insert", "duplicate", "truncate"]))
    if kind == "delete":
        spots = [i for i, c in enumerate(content) if c in chars]
        if not spots:
            return content, "none"
        i = draw(st.sampled_from(spots))
        return content[:i] + content[i + 1:], kind
    if kind == "insert":
        # Half the time at a field boundary, where an inserted quote opens or closes a field.
        edges = [i for i in range(len(content) + 1)
                 if i in (0, len(content)) or content[i - 1] in ",\t\n" or content[i] in ",\t\r\n"]
        i = draw(st.one_of(st.integers(0, len(content)), st.sampled_from(edges)))
        return content[:i] + draw(st.sampled_from(chars)) + content[i:], kind
    if kind == "duplicate":
        lines = content.split("\n")
        i = draw(st.integers(0, len(lines) - 1))
        return "\n".join(lines[: i + 1] + lines[i:]), kind
    return content[: draw(st.integers(0, len(content) - 1))], kind


def assert_not_shifted(got: list, original: list, kind: str) -> None:
    """`got` is `original` after one local edit (see the module docstring)."""
    if got == original:
        return
    if kind == "truncate":
        k = len(got)
        assert got[:-1] == original[: k - 1], "truncation changed rows before the cut"
        (text, label), (text0, label0) = got[-1], original[k - 1]
        assert text == text0 and label0.startswith(label), "truncation shifted the last row"
        return
    if kind == "duplicate" and len(got) == len(original) + 1:
        assert any(got[:i] + got[i + 1:] == original and got[i] == got[i - 1] for i in range(1, len(got))), \
            "a duplicated line added something other than a copy of a row"
        return
    assert len(got) == len(original), f"rows merged or split by a {kind}: {got} vs {original}"
    changed = [(g, o) for g, o in zip(got, original) if g != o]
    assert len(changed) == 1, f"one edit changed several rows: {changed}"
    (text, label), (text0, label0) = changed[0]
    assert text == text0 or label == label0, f"both text and label changed (a shift): {changed[0]}"


def read_pairs(path: Path, task: str = "seq") -> list:
    examples = read_examples(path, task)
    if task == "seq":
        return [(e.text, e.label) for e in examples]
    return [(token, tag) for e in examples for token, tag in zip(e.tokens, e.tags)]


# ---------------------------------------------------------------- CSV / TSV


def write_delimited(rows: list[tuple[str, str]], delimiter: str, header: bool, terminator: str, loose: bool) -> str:
    """csv.writer's output, or with `loose` quoting as people write by hand: a field is quoted only
    when it must be (a delimiter or line break in it, or a quote first), so `a 5" screen` stays
    bare. Both read back the same under a strict parse."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator)
    lines = [["text", "label"]] if header else []
    for row in lines + [list(r) for r in rows]:
        if loose and not any(delimiter in f or "\n" in f or "\r" in f or f.startswith('"') for f in row):
            out.write(delimiter.join(row) + terminator)
        else:
            writer.writerow(row)
    return out.getvalue()


def strict_parse(content: str, delimiter: str, header: bool) -> list[tuple[str, str]] | None:
    """The rows Python's csv module reads in strict mode, as (text, label); None when it refuses
    (or when a row does not have two fields, which the reader must refuse too)."""
    try:
        rows = list(csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True))
    except csv.Error:
        return None
    rows = [r for r in rows if r and not (len(r) == 1 and not r[0].strip())]
    if header:
        rows = rows[1:]
    if any(len(r) != 2 for r in rows):
        return None
    return [(t.strip(), label.strip()) for t, label in rows]


def row_like_line_inside(rows: list[tuple[str, str]], delimiter: str) -> bool:
    labels = {label for _, label in rows}
    for text, _ in rows:
        for line in text.split("\n") if "\n" in text else []:
            fields = strict_parse(line, delimiter, False)
            if fields and fields[0][1] in labels:
                return True
    return False


@SETTINGS
@given(rows=labelled_rows(), delimiter=st.sampled_from([",", "\t"]), header=st.booleans(),
       terminator=st.sampled_from(["\n", "\r\n"]), loose=st.booleans(), data=st.data())
def test_csv_mutations_read_exactly_or_fail(folder, rows, delimiter, header, terminator, loose, data):
    content = write_delimited(rows, delimiter, header, terminator, loose)
    path = folder / ("d.csv" if delimiter == "," else "d.tsv")
    path.write_text(content, encoding="utf-8", newline="")
    if not row_like_line_inside(rows, delimiter):
        assert read_pairs(path) == rows

    changed, kind = data.draw(mutated(content))
    path.write_text(changed, encoding="utf-8", newline="")
    try:
        got = read_pairs(path)
    except DataError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert got == strict_parse(changed, delimiter, header), "the reader disagrees with a strict csv parse"
    assert_not_shifted(got, rows, kind)


QUOTY_TEXTS = st.text(st.sampled_from(list('ab ,"\n\t')), min_size=1, max_size=6).map(str.strip).filter(bool)


@st.composite
def quote_edit(draw, content: str, delimiter: str) -> str:
    """Mostly insert a quote where it opens a field (the start of a field, where a stray one
    can swallow rows); else delete a quote."""
    quotes = [i for i, c in enumerate(content) if c == '"']
    if quotes and draw(st.integers(0, 2)) == 0:
        i = draw(st.sampled_from(quotes))
        return content[:i] + content[i + 1:]
    starts = [i for i in range(len(content)) if i == 0 or content[i - 1] in delimiter + "\n"]
    i = draw(st.sampled_from(starts))
    return content[:i] + '"' + content[i:]


@settings(SETTINGS, max_examples=250)  # a clean-closing swallow is rare: ~1 in 20 edits
@given(rows=st.lists(st.tuples(QUOTY_TEXTS, st.sampled_from(["pos", "neg"])), min_size=3, max_size=8),
       delimiter=st.sampled_from([",", "\t"]), data=st.data())
def test_csv_quote_edits_never_swallow_or_shift_rows(folder, rows, delimiter, data):
    """The quote class on its own: texts dense in quotes, commas and line breaks, loosely quoted
    (so a stray quote can close cleanly further on), and one quote added or removed."""
    content = write_delimited(rows, delimiter, True, "\n", loose=True)
    path = folder / ("q.csv" if delimiter == "," else "q.tsv")
    changed = data.draw(quote_edit(content, delimiter))
    path.write_text(changed, encoding="utf-8", newline="")
    try:
        got = read_pairs(path)
    except DataError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert got == strict_parse(changed, delimiter, True), "the reader disagrees with a strict csv parse"
    assert_not_shifted(got, rows, "quote")


# ---------------------------------------------------------------- JSON Lines


def jsonl_rows(draw_rows: list[tuple[str, str]]) -> list[tuple[str, str | int]]:
    return [(t, int(label) if label.isdigit() else label) for t, label in draw_rows]


def strict_jsonl(content: str) -> list[tuple[str, str]] | None:
    rows = []
    for line in content.split("\n"):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(item, dict) or set(item) != {"text", "label"} or not isinstance(item["text"], str):
            return None
        label = item["label"]
        if type(label) is not str and type(label) is not int:
            return None
        rows.append((item["text"].strip(), str(label).strip()))
    return rows


@SETTINGS
@given(rows=labelled_rows(), ascii_only=st.booleans(), data=st.data())
def test_jsonl_mutations_read_exactly_or_fail(folder, rows, ascii_only, data):
    items = jsonl_rows(rows)
    content = "".join(json.dumps({"text": t, "label": label}, ensure_ascii=ascii_only) + "\n" for t, label in items)
    path = folder / "d.jsonl"
    path.write_text(content, encoding="utf-8")
    original = [(t, str(label)) for t, label in items]
    assert read_pairs(path) == original

    changed, kind = data.draw(mutated(content))
    path.write_text(changed, encoding="utf-8")
    try:
        got = read_pairs(path)
    except DataError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert got == strict_jsonl(changed), "the reader disagrees with json.loads per line"
    assert_not_shifted(got, original, kind)


# ---------------------------------------------------------------- CoNLL

TOKENS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Z")), min_size=1, max_size=8).filter(
    lambda t: t != "-DOCSTART-")


@st.composite
def tagged_sentences(draw) -> list[list[tuple[str, str]]]:
    """IOB2 sentences (so IOB1 -> IOB2 conversion leaves them unchanged)."""
    sentences = []
    for _ in range(draw(st.integers(1, 4))):
        tags, prev = [], "O"
        for _ in range(draw(st.integers(1, 5))):
            options = ["O", "B-PER", "B-LOC"] + ([f"I-{prev[2:]}"] if prev != "O" else [])
            prev = draw(st.sampled_from(options))
            tags.append(prev)
        sentences.append([(draw(TOKENS), tag) for tag in tags])
    if all(tag == "O" for s in sentences for _, tag in s):
        sentences[0][0] = (sentences[0][0][0], "B-PER")
    return sentences


@SETTINGS
@given(sentences=tagged_sentences(), separator=st.sampled_from(["\t", " "]), data=st.data())
def test_conll_mutations_read_exactly_or_fail(folder, sentences, separator, data):
    content = "\n\n".join("\n".join(f"{tok}{separator}{tag}" for tok, tag in s) for s in sentences) + "\n"
    path = folder / "d.conll"
    path.write_text(content, encoding="utf-8")
    examples = read_examples(path, "token")
    assert [list(zip(e.tokens, e.tags)) for e in examples] == sentences
    original = [pair for s in sentences for pair in s]

    changed, kind = data.draw(mutated(content, STRUCTURAL + "-"))
    path.write_text(changed, encoding="utf-8")
    try:
        got = read_pairs(path, "token")
    except DataError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    widths = {len(line.split()) for line in changed.splitlines() if line.strip()}
    if len(widths) == 1 and widths != {2}:  # e.g. two rows joined into one "token extra tag" row: every row
        return                               # now has the same wider layout, a well-formed CoNLL file
    assert_token_pairs(got, original, kind)


def assert_token_pairs(got: list, original: list, kind: str) -> None:
    def loose(pairs):  # B-X and I-X are one entity type: a new sentence boundary converts I- to B-
        return [(tok, tag[2:] if tag[:2] in ("B-", "I-") else tag) for tok, tag in pairs]

    if kind == "truncate":
        k = len(got)
        assert loose(got[:-1]) == loose(original[: k - 1])
        (tok, tag), (tok0, tag0) = got[-1], original[k - 1]
        # The cut row's tag is a prefix of the original one ("B" of "B-PER"; "I-P" of "I-PER" read as "B-P").
        cut_tag = tag0.startswith(tag) or tag0[2:].startswith(tag[2:]) and tag[:2] in ("B-", "I-")
        assert (tok == tok0 and cut_tag) or (tok0.startswith(tok) and loose([(tok, tag)]) == loose([(tok, tag0)]))
        return
    assert_not_shifted(loose(got), loose(original), kind)
