"""Bad input, configs and faults, tried as a user would from the command line.

Every case must end with exit code 2, exactly one line on stderr starting with `error:` that names the
file (and line) at fault, and the disk exactly as it was: nothing written, nothing deleted.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from lsllm.cli import main
from tests.test_workflow import write_conll, write_seq_csv

STEPS = ["--max-steps", "2", "--batch-size", "8", "--eval-every", "2"]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, mode and content hash."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            state[rel] = ("dir", path.stat().st_mode)
        else:
            state[rel] = ("file", path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(code: int, err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_models):
    """A workspace: valid data files and one finished run of a tiny Llama (sequence) and tagger (token)."""
    root = tmp_path_factory.mktemp("ws")
    write_seq_csv(root / "train.csv", 32, 0)
    write_seq_csv(root / "dev.csv", 8, 1)
    write_conll(root / "train.conll", 24, 0)
    model = str(tiny_models["llama"])
    assert main(["train", "--model", model, "--train", str(root / "train.csv"), "--validation",
                 str(root / "dev.csv"), *STEPS, "--output", str(root / "run")]) == 0
    assert main(["train", "--model", model, "--task", "token", "--train", str(root / "train.conll"), *STEPS,
                 "--output", str(root / "ner")]) == 0
    return {"root": root, "model": model}


def _train(ws, *extra, data="train.csv"):
    return ["train", "--model", ws["model"], "--train", ws["root"] / data, *STEPS, "--output",
            ws["root"] / "new-run", *extra]


def _write(ws, name: str, content: str | bytes) -> Path:
    path = ws["root"] / "cases" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


# (id, build args from the workspace, substrings the error line must contain)
FLAG_CASES = [
    ("lr-negative", lambda ws: _train(ws, "--lr", "-1"), ["lr must be a positive number"]),
    ("lr-nan", lambda ws: _train(ws, "--lr", "nan"), ["lr must be a positive number"]),
    ("epochs-nan", lambda ws: _train(ws, "--epochs", "nan"), ["epochs"]),
    ("max-steps-0", lambda ws: _train(ws, "--max-steps", "0"), ["max_steps must be at least 1"]),
    ("max-steps-negative", lambda ws: _train(ws, "--max-steps", "-3"), ["max_steps must be at least 1"]),
    ("eval-every-0", lambda ws: _train(ws, "--eval-every", "0"), ["eval_every must be at least 1"]),
    ("evals-per-epoch-0", lambda ws: _train(ws, "--evals-per-epoch", "0"), ["evals_per_epoch must be at least 1"]),
    ("lora-rank-0", lambda ws: _train(ws, "--lora-rank", "0"), ["lora_rank must be at least 1"]),
    ("early-stopping-negative", lambda ws: _train(ws, "--early-stopping", "-1"), ["early_stopping"]),
    ("batch-size-0", lambda ws: _train(ws, "--batch-size", "0"), ["batch_size"]),
    ("target-metric-percent", lambda ws: _train(ws, "--target-metric", "85", "--validation", ws["root"] / "dev.csv"),
     ["target_metric must be in (0, 1]"]),
    ("target-metric-no-validation", lambda ws: _train(ws, "--target-metric", "0.85"),
     ["target_metric needs a validation split"]),
    ("max-length-tiny", lambda ws: _train(ws, "--max-length", "2"), ["max_length"]),
    ("seed-negative", lambda ws: _train(ws, "--seed", "-5"), ["seed"]),
    ("tag-column-on-seq", lambda ws: _train(ws, "--tag-column", "1"), ["--tag-column is for --task token"]),
    ("text-column-on-token", lambda ws: _train(ws, "--task", "token", "--text-column", "text", data="train.conll"),
     ["--text-column is for --task seq"]),
    ("unknown-method", lambda ws: _train(ws, "--method", "magic"), ["method 'magic'"]),
    ("unknown-format", lambda ws: _train(ws, "--format", "xml"), ["format 'xml'"]),
    ("unknown-pooling", lambda ws: _train(ws, "--pooling", "median"), ["pooling 'median'"]),
    ("duplicate-labels", lambda ws: _train(ws, "--labels", "pos,pos"), ["labels"]),
    ("missing-train-file", lambda ws: _train(ws, data="nope.csv"), ["nope.csv", "does not exist"]),
    ("not-an-int", lambda ws: _train(ws, "--max-steps", "many"), ["--max-steps", "integer"]),
    ("unknown-option", lambda ws: _train(ws, "--learning-rate", "1"), ["--learning-rate"]),
    ("mistyped-alias", lambda ws: _train(ws)[:1] + ["--model", "smollm2-13m"] + _train(ws)[3:], ["smollm2-13m"]),
    ("missing-model-folder", lambda ws: _train(ws)[:1] + ["--model", "./models/mine"] + _train(ws)[3:],
     ["models/mine"]),
    ("truncated-gguf", lambda ws: _train(ws)[:1] + ["--model", _write(ws, "bad.gguf", b"GGUF\x03\x00\x00")]
     + _train(ws)[3:], ["bad.gguf"]),
    ("output-unwritable", lambda ws: _train(ws)[:-1] + ["/sys/lsllm-test/run"], ["cannot write", "/sys/lsllm-test"]),
    ("output-exists", lambda ws: _train(ws)[:-1] + [ws["root"] / "run"], ["already exists"]),
    ("nothing-to-resume", lambda ws: _train(ws, "--resume"), ["nothing to resume"]),
    ("output-holds-data", lambda ws: _train(ws)[:-1] + [ws["root"]], ["holds the data files"]),
]

YAML_CASES = [
    ("yaml-section-list", "train: [1, 2]\n", ["section 'train' must be a mapping"]),
    ("yaml-section-number", "model: 3\n", ["section 'model' must be a mapping"]),
    ("yaml-wrong-type", "train:\n  max_steps: lots\n", ["train.max_steps", "whole number"]),
    ("yaml-bool-type", "train:\n  compile: maybe\n", ["train.compile", "true or false"]),
    ("yaml-unknown-key", "train:\n  learning_rate: 0.1\n", ["unknown keys", "train.learning_rate"]),
    ("yaml-syntax", "train:\n  lr: [1e-4\n", ["not valid YAML", "line"]),
    ("yaml-not-mapping", "- a\n- b\n", ["expected a mapping"]),
    ("yaml-lr-zero", "train:\n  lr: 0\n", ["lr must be a positive number"]),
]


@pytest.mark.parametrize("case", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_train_yaml_errors(case, ws, capsys):
    _, text, needles = case
    config = _write(ws, "config.yaml", text)
    before = snapshot(ws["root"])
    code, _, err = run_cli(["train", config, *_train(ws)[1:]], capsys)
    line = assert_one_error(code, err, *needles)
    if "unknown keys" in needles or "section" in needles[0]:
        assert "config.yaml" in line
    assert snapshot(ws["root"]) == before


def test_yaml_reads_1e_minus_4_as_a_number(tmp_path):
    from lsllm.config import RunConfig

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-4\n  max_steps: 5\ndata:\n  text_column: 0\n")
    config = RunConfig.from_yaml(path)
    assert config.train.lr == 1e-4 and config.train.max_steps == 5 and config.data.text_column == "0"


DATA_CASES = [
    ("csv-extra-field", "text,label\ngood film,pos\nbad, dull film,neg\n", "csv", ["line 3"]),
    ("csv-unclosed-quote", "text,label\ngood film,pos\n\"bad film,neg\nfun plot,pos\n", "csv", ["line 3"]),
    ("csv-unknown-header", "txt,lbl\ngood film,pos\nbad film,neg\nfun,pos\n", "csv", ["line 1", "--header"]),
    ("csv-one-class", "text,label\ngood film,pos\ngreat film,pos\n", "csv", ["pos"]),
    ("csv-mixed-labels", "text,label\ngood film,1\nbad film,0\nok film,positive\n", "csv", ["positive"]),
    ("csv-nul-byte", "text,label\ngood\x00 film,pos\nbad film,neg\n", "csv", ["line 2", "NUL"]),
    ("jsonl-bool-label", '{"text": "good", "label": true}\n{"text": "bad", "label": false}\n', "jsonl", ["line 1"]),
    ("jsonl-list-text", '{"text": ["good"], "label": "pos"}\n{"text": "bad", "label": "neg"}\n', "jsonl",
     ["line 1"]),
    ("jsonl-number-text", '{"text": 12, "label": "pos"}\n{"text": "bad", "label": "neg"}\n', "jsonl", ["line 1"]),
    ("conll-empty-type", "john\tB-\nlives\tO\n\nmary\tB-PER\n", "conll", ["line 1"]),
    ("conll-wrong-columns", "john\tB-PER\tx\nlives\tO\n\nmary\tB-PER\n", "conll", ["line 2"]),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_train_data_errors(case, ws, capsys):
    name, content, ext, needles = case
    path = _write(ws, f"{name}.{ext}", content)
    before = snapshot(ws["root"])
    task = ["--task", "token"] if ext == "conll" else []
    code, _, err = run_cli(["train", "--model", ws["model"], "--train", path, *task, *STEPS, "--output",
                            ws["root"] / "new-run"], capsys)
    assert_one_error(code, err, path.name, *needles)
    assert snapshot(ws["root"]) == before


def test_parquet_bytes_text_is_an_error(ws, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = ws["root"] / "cases" / "bytes.parquet"
    path.parent.mkdir(exist_ok=True)
    pq.write_table(pa.table({"text": [b"good film", b"bad film"], "label": ["pos", "neg"]}), path)
    before = snapshot(ws["root"])
    code, _, err = run_cli(["train", "--model", ws["model"], "--train", path, *STEPS, "--output",
                            ws["root"] / "new-run"], capsys)
    assert_one_error(code, err, "bytes.parquet", "row 1")
    assert snapshot(ws["root"]) == before


PREDICT_CASES = [
    ("empty-text", lambda ws: ["predict", ws["root"] / "run", "--text", ""], ["--text 1 is empty"]),
    ("blank-text", lambda ws: ["predict", ws["root"] / "run", "--text", "ok", "--text", "   "], ["--text 2"]),
    ("text-and-input", lambda ws: ["predict", ws["root"] / "run", "--text", "a", "--input", ws["root"] / "dev.csv"],
     ["exactly one"]),
    ("no-input", lambda ws: ["predict", ws["root"] / "run"], ["exactly one"]),
    ("missing-input", lambda ws: ["predict", ws["root"] / "run", "--input", ws["root"] / "nope.csv"], ["nope.csv"]),
    ("output-is-input", lambda ws: ["predict", ws["root"] / "run", "--input", ws["root"] / "dev.csv", "--output",
                                    ws["root"] / "dev.csv"], ["dev.csv", "input file"]),
    ("output-unwritable", lambda ws: ["predict", ws["root"] / "run", "--text", "good", "--output",
                                      "/sys/lsllm-test/p.jsonl"], ["cannot write"]),
    ("output-is-folder", lambda ws: ["predict", ws["root"] / "run", "--text", "good", "--output",
                                     ws["root"] / "run"], ["is a folder"]),
    ("not-a-run", lambda ws: ["predict", ws["root"] / "cases", "--text", "good"], ["lsllm.json"]),
    ("missing-run", lambda ws: ["predict", ws["root"] / "no-such-run", "--text", "good"], ["no-such-run"]),
    ("token-column-on-seq", lambda ws: ["predict", ws["root"] / "run", "--input", ws["root"] / "dev.csv",
                                        "--token-column", "0"], ["token"]),
    ("eval-split-name", lambda ws: ["eval", ws["root"] / "run", "--data", ws["root"] / "dev.csv", "--split-name",
                                    "../../escape"], ["--split-name"]),
    ("eval-unknown-label", lambda ws: ["eval", ws["root"] / "run", "--data",
                                       _write(ws, "other.csv", "text,label\ngood film,meh\nbad,pos\n")], ["meh"]),
    ("export-existing-folder", lambda ws: ["export", ws["root"] / "run", "--output", ws["root"] / "cases"],
     ["already exists"]),
    ("export-overwrite-user-folder", lambda ws: ["export", ws["root"] / "run", "--output", ws["root"] / "cases",
                                                 "--overwrite"], ["not an lsllm export"]),
    ("export-onto-itself", lambda ws: ["export", ws["root"] / "run", "--output", ws["root"] / "run", "--overwrite"],
     ["overlaps the run"]),
    ("export-into-run", lambda ws: ["export", ws["root"] / "run", "--output", ws["root"] / "run" / "exp", "--merge"],
     ["overlaps the run"]),
    ("export-over-model", lambda ws: ["export", ws["root"] / "run", "--output", ws["root"] / "run" / "model",
                                      "--overwrite", "--merge"], ["overlaps the run"]),
]


@pytest.mark.parametrize("case", FLAG_CASES + PREDICT_CASES, ids=[c[0] for c in FLAG_CASES + PREDICT_CASES])
def test_command_errors(case, ws, capsys):
    """train flags, predict, eval and export: each bad command line is one error and changes nothing."""
    _, build, needles = case
    args = build(ws)
    before = snapshot(ws["root"])
    code, _, err = run_cli(args, capsys)
    assert_one_error(code, err, *needles)
    assert snapshot(ws["root"]) == before


def test_incomplete_folder_not_made_by_lsllm_is_never_deleted(ws, capsys, tmp_path):
    user = tmp_path / "mine.incomplete"
    user.mkdir()
    (user / "notes.txt").write_text("my notes")
    code, _, err = run_cli(_train(ws)[:-1] + [tmp_path / "mine"], capsys)
    assert_one_error(code, err, "not made by lsllm")
    assert (user / "notes.txt").read_text() == "my notes"


def test_spec_with_unknown_key_is_an_error(ws, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ws["root"] / "run", run)
    spec = json.loads((run / "model" / "lsllm.json").read_text())
    spec["surprise"] = 1
    (run / "model" / "lsllm.json").write_text(json.dumps(spec))
    code, _, err = run_cli(["predict", run, "--text", "good"], capsys)
    assert_one_error(code, err, "lsllm.json", "surprise")
