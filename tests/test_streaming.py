"""`lsllm predict --input` chunk by chunk: the same predictions as predicting the whole file at once, in JSONL,
CSV and Parquet; a killed run resumes; a bad row keeps what was predicted before it; shards cover every row
once; Spark-style `predict_batches`."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lsllm.cli import main
from lsllm.errors import DataError, LsllmError
from lsllm.predict import predict
from lsllm.streaming import iter_predictions, predict_batches, predict_to_file
from tests.test_workflow import write_conll, write_seq_csv


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(autouse=True)
def small_first_csv_chunk(monkeypatch):
    from lsllm.data.readers import chunks

    monkeypatch.setattr(chunks, "FIRST_CSV_CHUNK", 4)  # CSV files of a few dozen rows still cut into chunks


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    return {"seq": write_seq_csv(root / "texts.csv", 37, 5), "token": write_conll(root / "sents.conll", 23, 5)}


@pytest.mark.parametrize("task", ["seq", "token"])
def test_chunked_jsonl_equals_predicting_the_whole_file(tiny_runs, inputs, tmp_path, task):
    expected = predict(tiny_runs[task], input=inputs[task])
    out = tmp_path / "p.jsonl"
    summary = predict_to_file(tiny_runs[task], inputs[task], out, chunk_rows=4)
    assert summary.rows == len(expected) and summary.chunks > 3
    assert jsonl(out) == json.loads(json.dumps(expected))
    assert not (tmp_path / "p.jsonl.parts").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]
    assert [r for rows in iter_predictions(tiny_runs[task], inputs[task], chunk_rows=5) for r in rows] == expected


def test_csv_and_parquet_outputs_carry_label_score_and_probabilities(tiny_runs, inputs, tmp_path):
    import pyarrow.parquet as pq

    expected = predict(tiny_runs["seq"], input=inputs["seq"])
    predict_to_file(tiny_runs["seq"], inputs["seq"], tmp_path / "p.csv", chunk_rows=6)
    with open(tmp_path / "p.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["label"] for r in table] == [r["label"] for r in expected]
    assert [float(r["prob_pos"]) for r in table] == [r["probs"]["pos"] for r in expected]
    predict_to_file(tiny_runs["seq"], inputs["seq"], tmp_path / "p.parquet", chunk_rows=6)
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert [r["text"] for r in rows] == [r["text"] for r in expected]
    assert [(r["label"], r["score"], r["prob_neg"], r["gold"]) for r in rows] == [
        (r["label"], max(r["probs"].values()), r["probs"]["neg"], r["gold"]) for r in expected]
    predict_to_file(tiny_runs["token"], inputs["token"], tmp_path / "t.parquet", chunk_rows=6)
    tagged = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert [r["tags"] for r in tagged] == [r["tags"] for r in predict(tiny_runs["token"], input=inputs["token"])]


def test_a_killed_run_resumes_to_the_same_output(tiny_runs, tmp_path):
    data = tmp_path / "many.jsonl"
    data.write_text("".join(json.dumps({"text": f"film number {i} was " + ("good" if i % 3 else "bad")}) + "\n"
                            for i in range(3000)))
    out = tmp_path / "p.jsonl"
    command = [sys.executable, "-m", "lsllm.cli", "predict", str(tiny_runs["seq"]), "--input", str(data), "--output",
               str(out), "--chunk-rows", "25"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "p.jsonl.parts" / "state.json"
    deadline = time.monotonic() + 120
    while not (state.is_file() and len(json.loads(state.read_text())["chunks"]) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended or stalled before 3 chunks"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # never a shortened output
    kept = len(json.loads(state.read_text())["chunks"])
    with pytest.raises(LsllmError, match="pass --resume"):
        predict_to_file(tiny_runs["seq"], data, out, chunk_rows=25)
    with pytest.raises(LsllmError, match="chunk_rows 25 .now 50"):
        predict_to_file(tiny_runs["seq"], data, out, chunk_rows=50, resume=True)
    summary = predict_to_file(tiny_runs["seq"], data, out, chunk_rows=25, resume=True)
    assert summary.reused_chunks >= kept - 1 and summary.reused_chunks >= 2
    assert jsonl(out) == json.loads(json.dumps(predict(tiny_runs["seq"], input=data)))
    assert not (tmp_path / "p.jsonl.parts").exists()


def test_a_bad_row_keeps_what_was_predicted_and_resume_goes_on_after_the_fix(tiny_runs, tmp_path):
    data = write_seq_csv(tmp_path / "in.csv", 60, 3)
    good = data.read_text().splitlines(keepends=True)
    bad = good[:45] + ["a text, with an unquoted comma,pos\n"] + good[46:]
    data.write_text("".join(bad))
    out = tmp_path / "p.csv"
    with pytest.raises(DataError) as info:
        predict_to_file(tiny_runs["seq"], data, out, chunk_rows=10)
    message = str(info.value)
    assert f"{data}, line 46" in message and "--resume" in message and "p.csv.parts" in message
    # chunks: header + 10 rows (lines 1-11), then lines 12-21, 22-31, 32-41; lines 42-51 hold the bad row
    assert not out.exists() and len(json.loads((tmp_path / "p.csv.parts" / "state.json").read_text())["chunks"]) == 4
    data.write_text("".join(good))  # fixed: the chunks before the bad row are unchanged, so they are kept
    assert predict_to_file(tiny_runs["seq"], data, out, chunk_rows=10, resume=True).reused_chunks == 4
    fresh = tmp_path / "fresh.csv"
    predict_to_file(tiny_runs["seq"], data, fresh, chunk_rows=10)
    assert out.read_text() == fresh.read_text()


def test_shards_cover_every_row_once(tiny_runs, inputs, tmp_path):
    expected = predict(tiny_runs["seq"], input=inputs["seq"])
    rows = []
    for i in range(3):
        assert main(["predict", str(tiny_runs["seq"]), "--input", str(inputs["seq"]), "--output",
                     str(tmp_path / f"s{i}.jsonl"), "--shard", f"{i}/3", "--chunk-rows", "4"]) == 0
        rows += jsonl(tmp_path / f"s{i}.jsonl")
    assert sorted(r["row"] for r in rows) == list(range(len(expected)))
    assert [{k: v for k, v in r.items() if k != "row"} for r in sorted(rows, key=lambda r: r["row"])] == \
        json.loads(json.dumps(expected))
    for bad in ("3/3", "a/b", "-1/2"):
        with pytest.raises(LsllmError, match="--shard"):
            predict_to_file(tiny_runs["seq"], inputs["seq"], tmp_path / "x.jsonl", shard=bad)


def test_predict_batches_maps_pandas_frames(tiny_runs):
    pd = pytest.importorskip("pandas")
    from lsllm.predict import load_predictor

    predictor = load_predictor(tiny_runs["seq"])
    frames = [pd.DataFrame({"id": [1, 2], "text": ["good film", "bad plot"]}), pd.DataFrame({"id": [3], "text": ["ok"]})]
    out = list(predict_batches(tiny_runs["seq"], iter(frames), predictor=predictor))
    expected = predictor.predict_rows(["good film", "bad plot", "ok"])
    assert list(pd.concat(out)["id"]) == [1, 2, 3]
    assert list(pd.concat(out)["label"]) == [r["label"] for r in expected]
    assert list(pd.concat(out)["prob_pos"]) == [r["probs"]["pos"] for r in expected]


def test_cli_streams_to_stdout_and_refuses_resume_without_output(tiny_runs, inputs, capsys):
    assert main(["predict", str(tiny_runs["seq"]), "--input", str(inputs["seq"]), "--chunk-rows", "5"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == json.loads(json.dumps(predict(tiny_runs["seq"], input=inputs["seq"])))
    assert main(["predict", str(tiny_runs["seq"]), "--input", str(inputs["seq"]), "--resume"]) != 0
    assert "--resume needs --output" in capsys.readouterr().err
    assert os.environ.get("LSLLM_NEVER_SET") is None
