"""Reading big inputs in chunks (lsllm.data.readers.chunks): the same examples, sources (file:line) and
errors as reading the whole file, whatever the chunk size."""
from __future__ import annotations

import csv
import json
import random

import pytest

from lsllm.data.readers import read_examples
from lsllm.data.readers import chunks as chunks_module
from lsllm.data.readers.chunks import iter_chunks
from lsllm.errors import DataError
from tests.test_data_strict import BAD_FILES, assert_names, write


def chunked(path, task, rows, **options):
    return [e for c in iter_chunks(path, task, rows, **options) for e in c.examples]


def whole(path, task, **options):
    return read_examples(path, task, require_labels=False, **options)


def messy_csv(path, n, delimiter=",", header=True, terminator="\r\n"):
    """Texts with quotes, delimiters and line breaks inside quoted fields, so records span lines and
    chunk boundaries fall inside multi-line rows' neighbourhoods."""
    rng = random.Random(0)
    words = ["good", "bad", 'say "hi"', "a, b", "tab\there", "line\nbreak", "x"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator=terminator)
        if header:
            w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([" ".join(rng.choice(words) for _ in range(3)) + f" {i}", rng.choice(["pos", "neg"])])
    return path


@pytest.mark.parametrize("rows", [1, 3, 250])
@pytest.mark.parametrize(("delimiter", "header", "terminator"), [(",", True, "\r\n"), ("\t", False, "\n")])
def test_csv_and_tsv_chunks_equal_the_whole_file(tmp_path, monkeypatch, rows, delimiter, header, terminator):
    monkeypatch.setattr(chunks_module, "FIRST_CSV_CHUNK", 5)  # small files still cut into many chunks
    path = messy_csv(tmp_path / ("d.csv" if delimiter == "," else "d.tsv"), 40, delimiter, header, terminator)
    options = {} if header else {"text_column": 0, "label_column": 1}
    pieces = list(iter_chunks(path, "seq", rows, **options))
    assert [e for c in pieces for e in c.examples] == whole(path, "seq", **options)
    assert len(pieces) == (1 if rows == 250 else 1 + -(-(40 - 5 - (not header)) // rows))
    assert [c.first for c in pieces] == [sum(len(p.examples) for p in pieces[:k]) for k in range(len(pieces))]


def test_a_csv_header_is_decided_from_as_many_rows_as_reading_the_whole_file(tmp_path):
    # Headerless, and its first label occurs again only in row 3: a 2-row first chunk would take row 1 for a header.
    path = write(tmp_path, "h.csv", "".join(f"text {i},{['b0', 'x', 'b0'][i % 3] if i < 3 else 'x'}\n"
                                            for i in range(30)))
    assert chunked(path, "seq", 1, text_column=0, label_column=1) == whole(path, "seq", text_column=0,
                                                                           label_column=1)


@pytest.mark.parametrize("rows", [1, 4])
def test_jsonl_text_conll_and_parquet_chunks_equal_the_whole_file(tmp_path, rows):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = [f"text {i} with \"quotes\", commas" for i in range(11)]
    jsonl = write(tmp_path, "d.jsonl", "".join(json.dumps({"text": t, "label": str(i % 2)}) + ("\n\n" if i == 3 else "\n")
                                               for i, t in enumerate(texts)))
    plain = write(tmp_path, "d.txt", "\n".join(texts[:5]) + "\n\n  \n" + "\n".join(texts[5:]))
    conll = write(tmp_path, "d.conll", "-DOCSTART- -X- O O\n\n" + "".join(
        f"w{i} B-PER\nx O\n\n" + ("\n\n-DOCSTART- -X- O O\n\n" if i == 2 else "") for i in range(9)) + "last O")
    tokens = write(tmp_path, "t.jsonl", "".join(json.dumps({"tokens": ["a", f"b{i}"], "tags": ["O", "B-X"]}) + "\n"
                                                for i in range(7)))
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": list(range(11)), "text": texts, "label": [str(i % 3) for i in range(11)]}), parquet,
                   row_group_size=3)
    for path, task in [(jsonl, "seq"), (plain, "seq"), (conll, "token"), (tokens, "token"), (parquet, "seq")]:
        assert chunked(path, task, rows) == whole(path, task), path.name
        assert len(list(iter_chunks(path, task, rows))) > 1, path.name


MODES = {"train": ("seq", True), "predict": ("seq", False), "token-train": ("token", True),
         "token-predict": ("token", False)}


@pytest.mark.parametrize(("name", "content", "mode", "options", "line", "words"),
                         [c[1:] for c in BAD_FILES if c[0] != "plain-text-training"],
                         ids=[c[0] for c in BAD_FILES if c[0] != "plain-text-training"])
def test_every_bad_file_fails_in_chunks_naming_the_same_file_and_line(tmp_path, name, content, mode, options, line,
                                                                        words):
    # One record per chunk (CSV/TSV files: after a first chunk of up to FIRST_CSV_CHUNK rows, as the header needs).
    path = write(tmp_path, name, content)
    task, labelled = MODES[mode]
    with pytest.raises(DataError) as info:
        for _ in iter_chunks(path, task, 1, require_labels=labelled, **options):
            pass
    assert_names(str(info.value), path, "line", line, words)


def test_a_bad_row_deep_in_a_file_fails_at_its_line_after_the_chunks_before_it(tmp_path, monkeypatch):
    monkeypatch.setattr(chunks_module, "FIRST_CSV_CHUNK", 10)
    rows = [f"text {i},pos\n" if i != 1500 else "text, with an unquoted comma,pos\n" for i in range(2000)]
    path = write(tmp_path, "big.csv", "text,label\n" + "".join(rows))
    done = []
    with pytest.raises(DataError) as info:
        for chunk in iter_chunks(path, "seq", 100):
            done.append(chunk)
    assert_names(str(info.value), path, "line", 1502, ("3 fields",))
    assert sum(len(c.examples) for c in done) == 1500 and done[-1].examples[-1].source == f"{path}:1501"


def test_chunk_digests_change_only_where_the_file_changed(tmp_path):
    lines = [json.dumps({"text": f"t{i}"}) + "\n" for i in range(20)]
    path = write(tmp_path, "d.jsonl", "".join(lines))
    before = [c.digest for c in iter_chunks(path, "seq", 5)]
    lines[12] = json.dumps({"text": "changed"}) + "\n"
    path.write_text("".join(lines))
    after = [c.digest for c in iter_chunks(path, "seq", 5)]
    assert [b == a for b, a in zip(before, after)] == [True, True, False, True]
