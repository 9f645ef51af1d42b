"""Readers on tiny hand-written files: every format, and every error a user can hit."""
from __future__ import annotations

from pathlib import Path

import pytest

from lsllm.data.readers import detect_format, iob1_to_iob2, read_examples, read_texts
from lsllm.data.records import SeqExample, TokenExample
from lsllm.errors import DataError

ASSETS = Path(__file__).parent / "assets"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def error_of(path: Path, task: str = "seq", **options) -> str:
    with pytest.raises(DataError) as info:
        read_examples(path, task, **options)
    return str(info.value)


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.csv", "csv"), ("a.TSV", "tsv"), ("a.jsonl", "jsonl"), ("a.json", "json"),
     ("a.parquet", "parquet"), ("a.conll", "conll"), ("a.txt", "conll"), ("a.bio", "conll")],
)
def test_detect_format_by_extension(name: str, expected: str) -> None:
    assert detect_format(name) == expected
    assert detect_format(name, task="token") == expected


def test_txt_is_plain_text_for_sequence_tasks_only() -> None:
    assert detect_format("a.txt", task="seq") == "text"
    assert detect_format("a.txt", task="token") == "conll"


def test_detect_format_folder_and_override(tmp_path: Path) -> None:
    assert detect_format(tmp_path) == "hf-disk"
    assert detect_format("data.txt", "tsv") == "tsv"
    with pytest.raises(DataError, match="unknown format 'xlsx'"):
        detect_format("data.txt", "xlsx")


# ---------------------------------------------------------------- CSV / TSV


def test_csv_with_header_quotes_and_newlines() -> None:
    path = ASSETS / "seq_header.csv"
    examples = read_examples(path, "seq")
    assert [e.text for e in examples] == [
        "the movie was great", "the plot was thin", "dull, slow, and long", "a film\nover two lines",
    ]
    assert [e.label for e in examples] == ["1", "0", "0", "1"]
    # source lines are the real first line of each row, after the multi-line one too
    assert [e.source for e in examples] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert all(e.text_pair is None for e in examples)


def test_csv_without_header_defaults_to_first_and_last_column() -> None:
    examples = read_examples(ASSETS / "seq_noheader.csv", "seq")
    assert [(e.text, e.label) for e in examples] == [
        ("great fun", "pos"), ("boring mess", "neg"), ("funny, warm", "pos"),
    ]
    assert examples[0].source.endswith("seq_noheader.csv:1")


def test_tsv_strips_trailing_space_and_skips_blank_lines() -> None:
    path = ASSETS / "seq.tsv"
    examples = read_examples(path, "seq")
    assert [(e.text, e.label) for e in examples] == [("it is good", "1"), ("it is bad", "0"), ("not bad at all", "1")]
    assert examples[2].source == f"{path}:5"


def test_headerless_columns_by_index_with_text_pair(tmp_path: Path) -> None:
    path = write(tmp_path, "news.csv", '"3","Title one","Body, with comma"\n"1","Title two","Body two"\n')
    examples = read_examples(path, "seq", text_column=1, text_pair_column=2, label_column=0)
    assert examples[0] == SeqExample("Title one", "3", "Body, with comma", f"{path}:1")
    assert examples[1].label == "1"
    # string digits, as a command line passes them, mean indexes too
    assert read_examples(path, "seq", text_column="1", label_column="0")[1].text == "Title two"


def test_header_detected_from_requested_names(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "body,y\nhello,a\nworld,b\n")
    examples = read_examples(path, "seq", text_column="body", label_column="y")
    assert [(e.text, e.label) for e in examples] == [("hello", "a"), ("world", "b")]


def test_header_flag_forces_header(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "c1,c2\nhello,a\n")
    # unknown names that look like a header: refused rather than trained on as an example
    assert "looks like a header" in error_of(path)
    assert len(read_examples(path, "seq", header=False)) == 2
    examples = read_examples(path, "seq", header=True, text_column="c1", label_column="c2")
    assert [(e.text, e.label) for e in examples] == [("hello", "a")]
    examples = read_examples(path, "seq", header=True, text_column=0, label_column=-1)
    assert examples[0].source.endswith("d.csv:2")


def test_default_column_names_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "id,Tweet,Target\n1,hi there,x\n")
    assert read_examples(path, "seq")[0] == SeqExample("hi there", "x", None, f"{path}:2")


def test_read_texts_without_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "text\nfirst\nsecond\n")
    examples = read_texts(path)
    assert [(e.text, e.label) for e in examples] == [("first", None), ("second", None)]
    headerless = write(tmp_path, "p.tsv", "only text here\nand more\n")
    assert [e.label for e in read_texts(headerless)] == [None, None]
    # labels are kept when present; empty ones become None
    labelled = write(tmp_path, "l.csv", "text,label\na,1\nb,\n")
    assert [e.label for e in read_texts(labelled)] == ["1", None]


# ---------------------------------------------------------------- JSON Lines / JSON


def test_jsonl_ints_become_strings_and_lines_are_real() -> None:
    path = ASSETS / "seq.jsonl"
    examples = read_examples(path, "seq")
    assert [(e.text, e.label) for e in examples] == [("loved it", "1"), ("hated it", "0"), ("fine", "2")]
    assert [e.source for e in examples] == [f"{path}:{n}" for n in (1, 3, 4)]


def test_json_list_with_default_names_and_lines() -> None:
    path = ASSETS / "seq.json"
    examples = read_examples(path, "seq")
    assert [(e.text, e.label) for e in examples] == [("good phone", "pos"), ("bad battery", "neg")]
    assert [e.source for e in examples] == [f"{path}:2", f"{path}:3"]


def test_jsonl_token_task(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", '{"words": ["New", "York"], "tags": ["B-LOC", "I-LOC"]}\n')
    assert read_examples(path, "token") == [TokenExample(["New", "York"], ["B-LOC", "I-LOC"], f"{path}:1")]


# ---------------------------------------------------------------- Parquet / saved datasets


def test_parquet_seq_and_token(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    seq = tmp_path / "s.parquet"
    pd.DataFrame({"content": ["up", "down"], "labels": [1, 0]}).to_parquet(seq)
    examples = read_examples(seq, "seq")
    assert [(e.text, e.label, e.source) for e in examples] == [("up", "1", f"{seq}:1"), ("down", "0", f"{seq}:2")]

    tok = tmp_path / "t.parquet"
    pd.DataFrame({"tokens": [["a", "b"], ["c"]], "ner_tags": [["B-X", "I-X"], ["O"]]}).to_parquet(tok)
    assert [e.tags for e in read_examples(tok, "token")] == [["B-X", "I-X"], ["O"]]


def test_parquet_missing_label_is_none_for_prediction(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = tmp_path / "s.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": [1.0, float("nan")]}).to_parquet(path)
    assert [e.label for e in read_texts(path)] == ["1", None]
    message = error_of(path)
    assert "s.parquet" in message and "row 2" in message and "missing label" in message


def test_hf_disk_class_labels_map_to_names(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    folder = tmp_path / "ner"
    datasets.Dataset.from_dict(
        {"tokens": [["Ann", "Lee", "sings"]], "ner_tags": [[1, 2, 0]]}, features=features
    ).save_to_disk(str(folder))
    examples = read_examples(folder, "token")
    assert examples == [TokenExample(["Ann", "Lee", "sings"], ["B-PER", "I-PER", "O"], f"{folder}:1")]

    seq_folder = tmp_path / "seq"
    datasets.Dataset.from_dict({"sentence": ["ok", "no"], "label": [1, 0]}).save_to_disk(str(seq_folder))
    assert [(e.text, e.label) for e in read_examples(seq_folder, "seq")] == [("ok", "1"), ("no", "0")]


def test_hf_disk_dataset_dict_asks_for_split(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    split = datasets.Dataset.from_dict({"text": ["a"], "label": [0]})
    datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "dd"))
    message = error_of(tmp_path / "dd")
    assert "train, validation" in message and str(tmp_path / "dd" / "train") in message


def test_plain_folder_is_not_a_dataset(tmp_path: Path) -> None:
    assert "save_to_disk" in error_of(tmp_path)


# ---------------------------------------------------------------- CoNLL


def test_conll_two_columns_tab() -> None:
    path = ASSETS / "ner_tab.conll"
    examples = read_examples(path, "token")
    assert examples == [
        TokenExample(["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"], f"{path}:1"),
        TokenExample(["Peter", "Blackburn"], ["B-PER", "I-PER"], f"{path}:6"),
    ]


def test_conll_four_columns_spaces_with_docstart() -> None:
    path = ASSETS / "ner_space4.txt"
    examples = read_examples(path, "token")
    # the second -DOCSTART- has no blank line before the next sentence: it still splits
    assert [(e.tokens, e.tags, e.source) for e in examples] == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"], f"{path}:3"),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"], f"{path}:8"),
    ]
    # other columns on request: POS tags as the tag column
    assert read_examples(path, "token", tag_column=1)[0].tags == ["NNP", "VBZ", "JJ"]


def test_conll_whitespace_only_line_separates_sentences(tmp_path: Path) -> None:
    path = write(tmp_path, "w.conll", "a\tO\n\t\nb\tB-X\n")
    assert [e.tokens for e in read_examples(path, "token")] == [["a"], ["b"]]


def test_conll_tokens_only_for_prediction(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "Hello\nworld\n\nBye\n")
    examples = read_examples(path, "token", require_labels=False)
    assert [(e.tokens, e.tags) for e in examples] == [(["Hello", "world"], None), (["Bye"], None)]
    message = error_of(path, "token")
    assert "p.txt" in message and "line 1" in message and "tag column" in message


def test_tsv_extension_for_tokens_reads_as_conll(tmp_path: Path) -> None:
    path = write(tmp_path, "t.tsv", "a\tO\nb\tB-X\n")
    assert read_examples(path, "token")[0].tags == ["O", "B-X"]


# ---------------------------------------------------------------- IOB


def test_iob1_to_iob2() -> None:
    assert iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]
    assert iob1_to_iob2(["I-ORG", "B-ORG", "I-ORG"]) == ["B-ORG", "B-ORG", "I-ORG"]
    assert iob1_to_iob2(["I-PER", "I-LOC"]) == ["B-PER", "B-LOC"]
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]
    assert iob1_to_iob2(iob2) == iob2
    assert iob1_to_iob2([]) == []


def test_iob1_file_converted_to_iob2() -> None:
    examples = read_examples(ASSETS / "ner_iob1.txt", "token")
    assert [e.tags for e in examples] == [
        ["B-PER", "I-PER", "O", "B-LOC"],
        ["B-ORG", "I-ORG", "B-ORG"],
    ]


def test_plain_tags_pass_through() -> None:
    examples = read_examples(ASSETS / "ner_plain.txt", "token")
    assert [e.tags for e in examples] == [["PER", "O"], ["O", "LOC"]]


def test_mixed_iob_and_plain_tags_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "m.conll", "a B-PER\nb I-PER\n\nc LOC\n")
    message = error_of(path, "token")
    assert "m.conll" in message and "line 4" in message and "'LOC'" in message and "not IOB" in message


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.csv")
    assert "nope.csv" in message and "does not exist" in message


@pytest.mark.parametrize(("name", "content"), [("e.csv", ""), ("h.csv", "text,label\n"), ("e.jsonl", "\n\n"), ("e.conll", "\n")])
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    task = "token" if name.endswith(".conll") else "seq"
    message = error_of(write(tmp_path, name, content), task)
    assert name in message and "no examples" in message


def test_non_utf8_bytes_named_by_line_and_byte(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", b"text,label\ngood,1\ncaf\xe9 time,0\n")
    message = error_of(path)
    assert "latin.csv" in message and "line 3" in message and "byte 3" in message and "UTF-8" in message


def test_missing_column_lists_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "train.csv", "text,label\nhi,1\n")
    message = error_of(path, text_column="txt")
    assert message == "column 'txt' not in " + str(path) + "; columns are: text, label; pass --text-column"
    assert "--label-column" in error_of(path, label_column="y")


def test_named_column_in_headerless_file(tmp_path: Path) -> None:
    path = write(tmp_path, "nohead.tsv", "hello\tpos\n")
    message = error_of(path, text_column="body")
    assert "nohead.tsv" in message and "no header row" in message and "'body'" in message


def test_column_index_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, "two.csv", "a,b\n")
    message = error_of(path, text_column=0, label_column=5)
    assert "two.csv" in message and "out of range" in message and "2 columns" in message


def test_no_text_or_label_column(tmp_path: Path) -> None:
    path = write(tmp_path, "cols.csv", "text,note\nhi,x\n")
    message = error_of(path)
    assert "no label column in" in message and "cols.csv" in message and "text, note" in message
    assert read_texts(path)[0].label is None  # fine for prediction
    path = write(tmp_path, "cols2.csv", "body,label\nhi,x\n")
    assert "no text column in" in error_of(path)


def test_empty_text(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "text,label\nfine,1\n  ,0\n")
    message = error_of(path)
    assert "t.csv" in message and "line 3" in message and "empty text" in message


def test_empty_label(tmp_path: Path) -> None:
    path = write(tmp_path, "t.tsv", "sentence\tlabel\nfine\t1\nno label\t \n")
    message = error_of(path)
    assert "t.tsv" in message and "line 3" in message and "missing label" in message


def test_short_row_is_a_field_count_error(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "a,1\nb\n")
    message = error_of(path)
    assert "s.csv" in message and "line 2" in message and "1 field but the first row (line 1) has 2" in message


def test_error_line_after_multiline_quoted_field(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", 'text,label\n"two\nlines",1\n"",0\n')
    message = error_of(path)
    assert "line 4" in message and "empty text" in message


def test_conll_wrong_column_count(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.conll", "EU NNP B-ORG\nrejects VBZ O\n\nGerman B-MISC\n")
    message = error_of(path, "token")
    assert "bad.conll" in message and "line 4" in message and "expected 3" in message and "found 2" in message


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 0}\n')
    message = error_of(path)
    assert "bad.jsonl" in message and "line 2" in message and "not valid JSON" in message


def test_jsonl_line_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "list.jsonl", '{"text": "a", "label": 1}\n["b", 0]\n')
    message = error_of(path)
    assert "list.jsonl" in message and "line 2" in message and "JSON object" in message


def test_invalid_json_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '[\n {"text": "a", "label": 1},\n {"text": }\n]\n')
    message = error_of(path)
    assert "bad.json" in message and "line 3" in message and "not valid JSON" in message
    obj = write(tmp_path, "obj.json", '{"text": "a"}')
    assert "list of objects" in error_of(obj)


def test_token_lengths_must_match(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b"], "tags": ["O"]}\n')
    message = error_of(path, "token")
    assert "t.jsonl" in message and "line 2" in message and "2 tokens but 1 tags" in message


def test_csv_cannot_hold_tokens(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "a,O\n")
    assert "CSV cannot hold token-tagged sentences" in error_of(path, "token")


def test_seq_task_on_conll_file(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "hello\t1\n")
    message = error_of(path)
    assert "t.txt" in message and "--format" in message
    assert read_examples(path, "seq", format="tsv")[0].label == "1"


def test_wrong_options_for_task() -> None:
    with pytest.raises(ValueError, match="--token-column"):
        read_examples(ASSETS / "seq.tsv", "seq", token_column=0)
    with pytest.raises(ValueError, match="--text-column"):
        read_examples(ASSETS / "ner_tab.conll", "token", text_column=0)
