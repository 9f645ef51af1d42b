"""`lsllm predict --engine ray` on a real local Ray cluster (2 CPUs): the same predictions as single-process
prediction, every row exactly once, Parquet shards carrying the input's columns."""
from __future__ import annotations

import pytest

from lsllm.cli import main
from lsllm.errors import LsllmError
from lsllm.predict import load_predictor, predict
from tests.test_workflow import write_conll

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def shards(folder):
    import pyarrow.parquet as pq

    return [row for f in sorted(folder.glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


def test_two_ray_workers_predict_every_row_once_as_a_single_process_does(tiny_runs, cluster, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lsllm.ray_predict import predict_on_ray

    texts = [f"film {i} was " + ["good fun", "bad", "dull plot", "great"][i % 4] for i in range(240)]
    pq.write_table(pa.table({"id": list(range(240)), "text": texts, "source": ["web"] * 240}), tmp_path / "in.parquet",
                   row_group_size=60)
    summary = predict_on_ray(tiny_runs["seq"], tmp_path / "in.parquet", tmp_path / "out", workers=2, batch_size=50)
    rows = sorted(shards(tmp_path / "out"), key=lambda r: r["id"])
    assert summary.rows == 240 and summary.workers == 2 and [r["id"] for r in rows] == list(range(240))
    expected = load_predictor(tiny_runs["seq"]).predict_rows(texts)
    assert [r["label"] for r in rows] == [e["label"] for e in expected]
    assert max(abs(r["prob_pos"] - e["probs"]["pos"]) for r, e in zip(rows, expected)) < 1e-5
    assert all(r["source"] == "web" and r["score"] == max(r["prob_pos"], r["prob_neg"]) for r in rows)
    with pytest.raises(LsllmError, match="exists"):
        predict_on_ray(tiny_runs["seq"], tmp_path / "in.parquet", tmp_path / "out")


def test_a_conll_file_is_read_by_lsllm_and_tagged_on_ray(tiny_runs, cluster, tmp_path):
    from lsllm.ray_predict import predict_on_ray

    data = write_conll(tmp_path / "in.conll", 30, 4)
    predict_on_ray(tiny_runs["token"], data, tmp_path / "tags", workers=2)
    rows = sorted(shards(tmp_path / "tags"), key=lambda r: r["row"])
    assert [r["tags"] for r in rows] == [r["tags"] for r in predict(tiny_runs["token"], input=data)]


def test_cli_engine_flags_are_checked_before_any_work(tiny_runs, tmp_path, capsys):
    base = ["predict", str(tiny_runs["seq"]), "--input", str(tmp_path / "x.csv")]
    for extra, message in [(["--engine", "spark"], "--engine 'spark'"), (["--engine", "ray"], "--output FOLDER"),
                           (["--workers", "2", "--output", "o.jsonl"], "--engine ray")]:
        assert main(base + extra) != 0
        assert message in capsys.readouterr().err
