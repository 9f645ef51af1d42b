"""Strict readers: every malformed input is one DataError naming the file and the line (or
row); the valid look-alikes next to each rule still parse exactly."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lsllm.data.labels import build_label_set, check_labels
from lsllm.data.readers import FORMATS, read_examples, read_texts
from lsllm.data.records import SeqExample, TokenExample
from lsllm.errors import DataError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def read(path: Path, mode: str, **options):
    """mode: "train" (labels required), "predict" (labels optional), with a task prefix for tokens."""
    if mode == "train":
        return read_examples(path, "seq", **options)
    if mode == "predict":
        return read_texts(path, **options)
    if mode == "token-train":
        return read_examples(path, "token", **options)
    return read_examples(path, "token", require_labels=False, **options)


def assert_names(message: str, path: Path, unit: str, number: int, words: tuple[str, ...]) -> None:
    assert "\n" not in message, "one-line message"
    assert re.search(re.escape(f"{path}, {unit} {number}") + r"\b", message), message
    for word in words:
        assert word in message, (word, message)


# ---------------------------------------------------------------- bad text files
# (case id, file name, content, mode, options, line, words the message must hold)

BAD_FILES = [
    # 1. field counts
    ("extra-field", "train.csv", "text,label\ngood film,pos\nbad, slow film,neg\n", "train", {}, 3,
     ("3 fields but the header has 2", "unquoted comma", "quote the text")),
    ("missing-field", "train.csv", "text,label\ngood film,pos\nno label here\n", "train", {}, 3,
     ("1 field but the header has 2",)),
    ("extra-tab", "train.tsv", "sentence\tlabel\ngood\tpos\nbad\tslow\tneg\n", "train", {}, 3,
     ("3 fields but the header has 2", "unquoted tab")),
    ("headerless-extra", "d.csv", "good film,pos\nbad film,neg\nbad, slow,neg\n", "train", {}, 3,
     ("3 fields but the first row (line 1) has 2",)),
    ("headerless-fewer", "d.csv", "good film,pos\nbad film,neg\nokay\n", "train", {}, 3,
     ("1 field but the first row (line 1) has 2",)),
    ("trailing-delimiter", "train.csv", "text,label\ngood,pos\nbad,neg,\n", "train", {}, 3, ("3 fields",)),
    ("row-after-multiline", "train.csv", 'text,label\n"two\nlines",pos\nx,y,neg\n', "train", {}, 4, ("3 fields",)),
    ("headerless-three-columns", "d.csv", "0,pos0,pos\n", "train", {}, 1, ("no header and 3 columns", "--text-column",
                                                                         "--label-column")),
    ("headerless-three-columns-label-missing", "d.csv", "1,a,b\n2,c,d\n", "train", {"text_column": 1}, 1,
     ("--label-column",)),
    ("headerless-three-columns-predict", "d.csv", "1,a,b\n2,c,d\n", "predict", {}, 1, ("--text-column",)),
    ("predict-headerless-ragged", "p.csv", "Hello, world\nJust one text\n", "predict", {}, 2,
     ("1 field but the first row (line 1) has 2", "--format text")),
    # 1. quotes
    ("stray-quote", "train.csv", 'text,label\ngood,pos\n"bad" film,neg\n', "train", {}, 3, ("closing quote",)),
    ("unclosed-quote-to-eof", "train.csv", 'text,label\na,pos\nb,neg\nc,pos\n"d starts here,neg\ne,pos\n', "train", {},
     5, ("a quote opened here is never closed", "end of the file")),
    ("unclosed-quote-second-field", "train.csv", 'text,label\na,pos\nb,"neg\nc,pos\n', "train", {}, 3,
     ("never closed",)),
    ("swallowed-rows", "train.csv", 'text,label\na,pos\n"b,neg\nc,pos\nd",pos\ne,neg\n', "train", {}, 3,
     ("runs to line 5", "swallows lines that look like rows", "close the quote")),
    ("swallowed-one-row", "train.csv", 'text,label\na,pos\n"b,neg\nd",pos\ne,neg\n', "train", {}, 3,
     ("swallows",)),
    ("swallowed-label-first", "news.csv", '1,t1,d1\n2,t2,"d2\n1,t3,d3\n2,t4,d4"\n1,t5,d5\n', "train",
     {"text_column": 1, "label_column": 0}, 2, ("runs to line 4", "line 3: '1,t3,d3'")),
    ("fully-quoted-no-silent-swallow", "news.csv", '"1","t1","d1"\n"2","t2,"d2"\n"1","t3","d3"\n', "train",
     {"text_column": 1, "label_column": 0}, 2, ("closing quote",)),
    ("swallow-changes-field-count", "train.csv", 'text,label\na,pos\n"b,neg\nc,pos\nd"\ne,neg\n', "train", {}, 3,
     ("runs to line 5 inside a quoted field", "1 field but the header has 2")),
    ("swallowed-tsv", "train.tsv", 'sentence\tlabel\n"a\tpos\nb\tneg\nc"\tpos\nd\tneg\n', "train", {}, 2,
     ("swallows",)),
    ("swallowed-predict", "p.csv", 'text,label\na,pos\n"b,neg\nc",pos\nd,neg\n', "predict", {}, 3, ("swallows",)),
    ("swallowed-predict-headerless", "p.csv", 'a,pos\n"b,neg\nc",pos\nd,neg\ne,pos\n', "predict",
     {"text_column": "0", "label_column": "1"}, 2, ("swallows",)),
    ("predict-headerless-comma-text", "p.csv", 'good, fun film\nawful plot, really\n', "predict", {}, 1,
     ("no header and 2 columns", "--format text")),
    ("quote-edit-repairs-quotes", "train.csv", 'text,label\n""",pos\n",a\na",pos\nb,neg\n', "train", {}, 2,
     ("runs to line 3", "swallows lines that look like rows", "line 2")),  # '"""",pos' lost a quote
    ("swallowed-row-with-extra-fields", "train.csv", 'text,label\n"a\n,b,neg\nb",pos\nc,neg\n', "train", {}, 2,
     ("swallows",)),
    ("label-spans-lines", "train.tsv", 'text\tlabel\n"x"\tneg\n"""b"\t"pos\nb\tpos\nc\tneg\n"""\n,"\tneg\n', "train", {}, 3,
     ("runs to line 6", "label in column 'label' spans several lines")),
    ("swallowed-header", "train.csv", '"text,label\nb ",pos\nc,neg\nd,pos\n', "train", {}, 1,
     ("swallows lines that look like rows", "'text,label'")),
    ("closing-quote-then-text-lines-later", "train.csv", 'text,label\n"a,pos\nb,neg\n"c",pos\n', "train", {}, 2,
     ("closes on line 4",)),
    # 1. headers
    ("header-like", "train.csv", "txt,lbl\nI loved it!,pos\nawful.,neg\nmeh,neg\n", "train", {}, 1,
     ("looks like a header", "txt, lbl", "--header", "--no-header")),
    ("header-like-tsv", "train.tsv", "body\ttopic\nfine film.\tpos\nbad one.\tneg\n", "train", {}, 1,
     ("looks like a header",)),
    ("header-like-predict", "p.csv", "txt,lbl\nI loved it!,pos\nawful.,neg\nmeh,neg\n", "predict", {}, 1,
     ("looks like a header",)),
    ("repeated-header", "train.csv", "text,label\na,pos\ntext,label\nb,neg\n", "train", {}, 3,
     ("repeats the header",)),
    ("duplicate-column", "train.csv", "text,label,label\na,1,2\n", "train", {}, 1, ("'label' appears twice",)),
    ("duplicate-column-any-case", "train.csv", "Text,text,label\na,b,1\n", "train", {}, 1, ("appears twice",)),
    # 1. plain text
    ("plain-text-training", "train.txt", "a good film\n", "train", {}, 0, ()),  # checked separately below
    # 5. NUL, UTF-16
    ("nul-csv", "train.csv", b"text,label\ngood,1\nb\x00ad,0\n", "train", {}, 3, ("NUL byte", "UTF-8")),
    ("nul-jsonl", "train.jsonl", b'{"text": "a", "label": 1}\n{"text": "b\x00", "label": 0}\n', "train", {}, 2,
     ("NUL",)),
    ("nul-conll", "train.conll", b"a\tO\n\nb\x00\tB-X\n", "token-train", {}, 3, ("NUL",)),
    ("nul-txt", "p.txt", b"fine\nbad\x00\n", "predict", {}, 2, ("NUL",)),
    ("nul-escape-jsonl", "train.jsonl", '{"text": "a\\u0000b", "label": 1}\n', "train", {}, 1, ("NUL",)),
    ("utf16-bom", "train.csv", "text,label\na,1\n".encode("utf-16"), "train", {}, 1, ("UTF-16", "UTF-8")),
    ("utf16-no-bom", "train.csv", "text,label\na,1\n".encode("utf-16-le"), "train", {}, 1, ("NUL", "UTF-16")),
    # 6. empty text in prediction input too
    ("empty-quoted-text-predict", "p.csv", 'text\nfine\n"  "\n', "predict", {}, 3, ("empty text",)),
    ("empty-row-predict", "p.csv", "text,label\nfine,1\n ,\n", "predict", {}, 3, ("empty text",)),
    ("empty-text-jsonl-predict", "p.jsonl", '{"text": "a"}\n{"text": "   "}\n', "predict", {}, 2, ("empty text",)),
    ("empty-text-train", "train.csv", "text,label\nfine,1\n  ,0\n", "train", {}, 3, ("empty text",)),
    # 2. JSON types
    ("json-number-text", "d.jsonl", '{"text": "a", "label": 1}\n{"text": 5, "label": 0}\n', "train", {}, 2,
     ("'text'", "a number", "string")),
    ("json-bool-text", "d.jsonl", '{"text": true, "label": 0}\n', "predict", {}, 1, ("a boolean",)),
    ("json-list-text", "d.jsonl", '{"text": ["a"], "label": 0}\n', "train", {}, 1, ("a list",)),
    ("json-object-text", "d.jsonl", '{"text": {"a": 1}, "label": 0}\n', "train", {}, 1, ("an object",)),
    ("json-bool-label", "d.jsonl", '{"text": "a", "label": true}\n', "train", {}, 1, ("'label'", "a boolean")),
    ("json-list-label", "d.jsonl", '{"text": "a", "label": [1]}\n', "train", {}, 1, ("a list",)),
    ("json-object-label", "d.jsonl", '{"text": "a", "label": {"x": 1}}\n', "train", {}, 1, ("an object",)),
    ("json-fraction-label", "d.jsonl", '{"text": "a", "label": 0.5}\n', "train", {}, 1, ("a number (0.5)",)),
    ("json-pair-number", "d.jsonl", '{"text": "a", "pair": 3, "label": 1}\n', "train",
     {"text_pair_column": "pair"}, 1, ("'pair'", "text pair")),
    ("json-list-in-json-file", "d.json", '[\n {"text": "a", "label": 1},\n {"text": "b", "label": [0]}\n]', "train",
     {}, 3, ("a list",)),
    ("jsonl-duplicate-key", "d.jsonl", '{"text": "a", "label": 1, "label": 2}\n', "train", {}, 1,
     ("'label' appears twice",)),
    ("json-duplicate-key", "d.json", '[\n {"text": "a", "label": 1},\n {"text": "b",\n  "text": "c", "label": 0}\n]',
     "train", {}, 3, ("'text' appears twice",)),
    ("json-token-int", "t.jsonl", '{"tokens": ["a", 1], "tags": ["O", "O"]}\n', "token-train", {}, 1,
     ("a number (1)", "token")),
    ("json-tag-int-no-classlabel", "t.jsonl", '{"tokens": ["a"], "tags": [0]}\n', "token-train", {}, 1,
     ("as a tag", "ClassLabel")),
    ("json-tag-bool", "t.jsonl", '{"tokens": ["a"], "tags": [true]}\n', "token-train", {}, 1, ("a boolean",)),
    ("json-tokens-object", "t.jsonl", '{"tokens": {"a": 1}, "tags": ["O"]}\n', "token-train", {}, 1,
     ("should hold a list",)),
    # 4. tags without a type
    ("tag-b-no-type", "t.conll", "EU\tB-ORG\nsays\tO\n\nhi\tB-\n", "token-train", {}, 4, ("'B-'", "no entity type")),
    ("tag-i-no-type-plain-set", "t.conll", "a\tI-\nb\tO\n", "token-train", {}, 1, ("'I-'",)),
    ("tag-type-with-space", "t.conll", "a\tB-PER X\nb\tO\n", "token-train", {}, 1, ("'B-PER X'",)),
    ("tag-no-type-predict", "t.conll", "a\tO\nb\tB-\n", "token-predict", {}, 2, ("'B-'",)),
    ("tag-no-type-jsonl", "t.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["b"], "tags": ["B-"]}\n',
     "token-train", {}, 2, ("'B-'",)),
]


@pytest.mark.parametrize(("name", "content", "mode", "options", "line", "words"),
                         [c[1:] for c in BAD_FILES if c[0] != "plain-text-training"],
                         ids=[c[0] for c in BAD_FILES if c[0] != "plain-text-training"])
def test_bad_file_is_one_data_error_naming_file_and_line(tmp_path, name, content, mode, options, line, words):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read(path, mode, **options)
    assert_names(str(info.value), path, "line", line, words)


def test_plain_text_format(tmp_path):
    assert "text" in FORMATS
    path = write(tmp_path, "p.txt", 'A "quoted", text, with commas\n\n   \nsecond\ttext\r\n')
    assert read_texts(path) == [
        SeqExample('A "quoted", text, with commas', None, None, f"{path}:1"),
        SeqExample("second\ttext", None, None, f"{path}:4"),
    ]
    assert [e.text for e in read_texts(write(tmp_path, "p.dat", "x, y\n"), format="text")] == ["x, y"]
    with pytest.raises(DataError, match="plain text files have no labels; use CSV/TSV/JSONL for training"):
        read_examples(path, "seq")
    with pytest.raises(DataError, match="no columns"):
        read_texts(path, label_column=1)
    with pytest.raises(DataError, match="sequence classification"):
        read_examples(path, "token", format="text", require_labels=False)


# ---------------------------------------------------------------- Parquet / saved datasets


def parquet(tmp_path: Path, columns: dict) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(("columns", "mode", "row", "words"), [
    ({"text": ["a", "b"], "label": [b"x", b"y"]}, "train", 1, ("bytes",)),
    ({"text": [b"a", b"b"], "label": ["x", "y"]}, "predict", 1, ("bytes", "'text'")),
    ({"text": ["a", "b"], "label": [True, False]}, "train", 1, ("a boolean",)),
    ({"text": ["a", "b"], "label": [1.0, 2.5]}, "train", 2, ("a number (2.5)",)),
    ({"text": ["a", "b"], "label": [[1], [2]]}, "train", 1, ("a list",)),
    ({"text": [1, 2], "label": ["x", "y"]}, "train", 1, ("a number",)),
    ({"text": ["a", "b\x00c"], "label": ["x", "y"]}, "predict", 2, ("NUL",)),
    ({"text": ["a", "b"], "label": ["x", "y\x00"]}, "train", 2, ("NUL",)),
    ({"tokens": [["a"], ["b"]], "tags": [[0], [1]]}, "token-train", 1, ("as a tag", "ClassLabel")),
    ({"tokens": [[b"a"], [b"b"]], "tags": [["O"], ["O"]]}, "token-predict", 1, ("bytes",)),
])
def test_bad_parquet_cells(tmp_path, columns, mode, row, words):
    path = parquet(tmp_path, columns)
    with pytest.raises(DataError) as info:
        read(path, mode)
    assert_names(str(info.value), path, "row", row, words)


def test_parquet_integer_valued_floats_are_integer_labels(tmp_path):
    path = parquet(tmp_path, {"text": ["a", "b", "c"], "label": [1.0, 0.0, None]})
    assert [e.label for e in read_texts(path)] == ["1", "0", None]


def test_hf_disk_class_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    folder = tmp_path / "seq"
    datasets.Dataset.from_dict({"text": ["bad", "good", "?"], "label": [0, 1, -1]},
                               features=features).save_to_disk(str(folder))
    assert [(e.text, e.label) for e in read_texts(folder)] == [("bad", "neg"), ("good", "pos"), ("?", None)]
    with pytest.raises(DataError) as info:  # -1 is "no label": fine to predict, not to train on
        read_examples(folder, "seq")
    assert_names(str(info.value), folder, "row", 3, ("missing label",))


# ---------------------------------------------------------------- labels


def seq(*labels):
    return [SeqExample(f"t{i}", label, source=f"train.csv:{i + 2}") for i, label in enumerate(labels)]


def tok(*sentences):
    return [TokenExample(["w"] * len(tags), tags, source=f"train.conll:{i * 3 + 1}") for i, tags in enumerate(sentences)]


@pytest.mark.parametrize(("task", "examples", "words"), [
    ("seq", seq("0", "1", "positive", "1"), ("train.csv:4", "mix integers", "0, 1", "positive")),
    ("seq", seq("good", "1", "bad", "good"), ("train.csv:3", "mix integers")),
    ("seq", seq("-1", "neutral"), ("mix integers",)),
    ("seq", seq("pos", "pos", None), ("only one label 'pos'", "at least two", "train.csv")),
    ("seq", seq("3"), ("only one label '3'",)),
    ("token", tok(["O", "O"], ["O"]), ("'O'", "no entities", "train.conll")),
    ("token", tok(["O", "B-"]), ("'B-'", "train.conll:1")),
])
def test_bad_training_labels(task, examples, words):
    with pytest.raises(DataError) as info:
        build_label_set(task, examples)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_good_training_labels():
    assert build_label_set("seq", seq("0", "1", "positive"), given=["0", "1", "positive"]).names == ["0", "1", "positive"]
    labels = build_label_set("seq", seq("neg", "pos"))
    check_labels(labels, seq("pos"), "validation")  # a one-label evaluation split is fine
    tags = build_label_set("token", tok(["O", "B-PER"]))
    check_labels(tags, tok(["O"], ["O"]), "test")  # so is one without entities
    assert build_label_set("token", tok(["PER", "O"], ["LOC"])).names == ["O", "LOC", "PER"]


# ---------------------------------------------------------------- valid look-alikes


GOOD_FILES = [
    ("quoted-commas", "d.csv", 'text,label\n"good, really good",pos\n"bad, slow",neg\n', "train", {},
     [("good, really good", "pos", 2), ("bad, slow", "neg", 3)]),
    ("multiline-paragraphs", "d.csv",
     'text,label\n"First paragraph, with a comma.\n\nSecond one, positively\nends here",pos\nshort,neg\n', "train", {},
     [("First paragraph, with a comma.\n\nSecond one, positively\nends here", "pos", 2), ("short", "neg", 6)]),
    ("multiline-field-with-a-label-word", "d.csv", 'text,label\n"Verdict:\npos",pos\nshort,neg\n', "train", {},
     [("Verdict:\npos", "pos", 2), ("short", "neg", 4)]),
    ("multiline-with-quotes-and-commas", "d.csv",
     'text,label\n"He said ""no"", twice\n""fine"", then, left",pos\nshort,neg\n', "train", {},
     [('He said "no", twice\n"fine", then, left', "pos", 2), ("short", "neg", 4)]),
    ("escaped-quotes", "d.csv", 'text,label\n"she said ""hi, there""",pos\nok,neg\n', "train", {},
     [('she said "hi, there"', "pos", 2), ("ok", "neg", 3)]),
    ("quote-inside-unquoted-field", "d.csv", 'text,label\na 5" screen,pos\nok,neg\n', "train", {},
     [('a 5" screen', "pos", 2), ("ok", "neg", 3)]),
    ("headerless-two-columns", "d.csv", "great fun,pos\nboring mess,neg\n\"funny, warm\",pos\n", "train", {},
     [("great fun", "pos", 1), ("boring mess", "neg", 2), ("funny, warm", "pos", 3)]),
    ("headerless-predict-no-gold", "d.csv", "great fun,pos\nboring mess,neg\n", "predict", {"text_column": 0},
     [("great fun", None, 1), ("boring mess", None, 2)]),
    ("headerless-predict-named-label", "d.csv", "great fun,pos\nboring mess,neg\nnice,pos\n", "predict",
     {"label_column": 1}, [("great fun", "pos", 1), ("boring mess", "neg", 2), ("nice", "pos", 3)]),
    ("header-predict-gold", "d.csv", "text,label\ngreat fun,pos\nboring,\n", "predict", {},
     [("great fun", "pos", 2), ("boring", None, 3)]),
    ("bom-crlf", "d.csv", '\ufefftext,label\r\n"two\r\nlines",1\r\nplain,0\r\n', "train", {},
     [("two\r\nlines", "1", 2), ("plain", "0", 4)]),
    ("no-final-newline", "d.tsv", "sentence\tlabel\na\t1\nb\t0", "train", {}, [("a", "1", 2), ("b", "0", 3)]),
    ("blank-lines", "d.csv", "text,label\n\na,1\n   \nb,0\n\n", "train", {}, [("a", "1", 3), ("b", "0", 5)]),
    ("explicit-header", "d.csv", "txt,lbl\nhello,a\nbye,b\n", "train",
     {"header": True, "text_column": "txt", "label_column": "lbl"},
     [("hello", "a", 2), ("bye", "b", 3)]),
    ("explicit-no-header", "d.csv", "txt,lbl\nhello,a\nbye,b\n", "train", {"header": False},
     [("txt", "lbl", 1), ("hello", "a", 2), ("bye", "b", 3)]),
    ("header-shaped-data-with-repeated-label", "d.csv", "fine,pos\nbad,neg\ngood,pos\n", "train", {},
     [("fine", "pos", 1), ("bad", "neg", 2), ("good", "pos", 3)]),
    ("unicode", "d.tsv", "text\tlabel\n日本語のテキスト\t正\n«ça va», dit-il\tnég\n", "train", {},
     [("日本語のテキスト", "正", 2), ("«ça va», dit-il", "nég", 3)]),
    ("int-labels-jsonl", "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": -2}\n{"text": "c", "label": 1.0}\n',
     "train", {}, [("a", "1", 1), ("b", "-2", 2), ("c", "1", 3)]),
    ("null-label-predict", "d.jsonl", '{"text": "a", "label": null}\n{"text": "b"}\n', "predict", {},
     [("a", None, 1), ("b", None, 2)]),
]


@pytest.mark.parametrize(("name", "content", "mode", "options", "expected"), [c[1:] for c in GOOD_FILES],
                         ids=[c[0] for c in GOOD_FILES])
def test_valid_look_alikes_parse_exactly(tmp_path, name, content, mode, options, expected):
    path = write(tmp_path, name, content)
    examples = read(path, mode, **options)
    assert [(e.text, e.label, e.source) for e in examples] == [(t, lab, f"{path}:{n}") for t, lab, n in expected]


def test_iob1_and_plain_tags_still_read(tmp_path):
    iob1 = write(tmp_path, "iob1.conll", "Ann I-PER\nLee I-PER\nin O\nRome I-LOC\n")
    assert read_examples(iob1, "token")[0].tags == ["B-PER", "I-PER", "O", "B-LOC"]
    plain = write(tmp_path, "plain.txt", "Ann PER\nsings O\n")
    assert read_examples(plain, "token")[0].tags == ["PER", "O"]
    crlf = write(tmp_path, "crlf.conll", "\ufeffAnn\tB-PER\r\nsings\tO\r\n\r\nBob\tB-PER\r\n")
    assert [(e.tokens, e.tags) for e in read_examples(crlf, "token")] == [(["Ann", "sings"], ["B-PER", "O"]),
                                                                         (["Bob"], ["B-PER"])]


def test_hf_disk_tag_ids_map_through_class_label(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"]))})
    folder = tmp_path / "ner"
    datasets.Dataset.from_dict({"tokens": [["Ann", "Lee"]], "ner_tags": [[1, 2]]}, features=features).save_to_disk(
        str(folder))
    assert read_examples(folder, "token")[0].tags == ["B-PER", "I-PER"]
