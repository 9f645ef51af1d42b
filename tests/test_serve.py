"""`lsllm serve` on a real loopback port with tiny trained runs: every route, every error status, the API key,
/metrics, answers equal to `lsllm predict`, concurrent clients, loading, overload and SIGTERM draining."""
from __future__ import annotations

import json
import math
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
import uvicorn

from lsllm.data.records import SeqExample
from lsllm.inference.batched import Evaluation
from lsllm.predict import Predictor
from lsllm.serve import ServeLimits, create_app
from lsllm.serve.batcher import DynamicBatcher, Limits, plan_passes
from lsllm.serve.model import load_served_model
from lsllm.serve.process import ServerProcess, free_port

SEQ_TEXTS = ["the movie was good", "awful boring plot", "a fine film with a great actor and fun plot", "dull"]
TOKEN_TEXTS = ["john in paris .", "mary said the film in london was fun", "the plot"]


def call(base: str, method: str, path: str, payload=None, headers=None, raw: bytes | None = None):
    """(status, parsed JSON or text) of one HTTP request."""
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body, kind = response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        status, body, kind = err.code, err.read(), err.headers.get("content-type", "")
    return status, (json.loads(body) if "json" in kind else body.decode())


@contextmanager
def running(load, limits=None, api_key=None):
    """A real uvicorn server for the app on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    app = create_app(load, limits or ServeLimits(), api_key)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield base, app
    finally:
        server.should_exit = True
        thread.join(30)


def wait_ready(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while call(base, "GET", "/health")[0] != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def seq_server(tiny_runs):
    model = load_served_model(tiny_runs["seq"])
    # A fixed pass overhead far above any padding: queued texts always share a pass (the start-up measurement
    # varies with the machine's load, and the concurrency test asserts that clients share passes).
    limits = ServeLimits(batch_wait_ms=50, max_client_batch_size=8, pass_overhead_tokens=10_000)
    with running(lambda: model, limits) as (base, app):
        wait_ready(base)
        yield base, app


@pytest.fixture(scope="module")
def token_server(tiny_runs):
    model = load_served_model(tiny_runs["token"])
    with running(lambda: model) as (base, app):
        wait_ready(base)
        yield base, app


def test_predict_and_classify_equal_lsllm_predict(tiny_runs, seq_server):
    base, _ = seq_server
    offline = Predictor(tiny_runs["seq"]).predict_rows(SEQ_TEXTS)
    status, single = call(base, "POST", "/predict", {"inputs": SEQ_TEXTS[0]})
    assert status == 200
    assert [s["score"] for s in single] == sorted((s["score"] for s in single), reverse=True)
    status, batch = call(base, "POST", "/predict", {"inputs": SEQ_TEXTS})
    assert status == 200 and batch[0] == single
    for row, answer in zip(offline, batch):
        assert answer[0]["label"] == row["label"]
        assert {s["label"] for s in answer} == set(row["probs"])
        for s in answer:
            assert abs(s["score"] - row["probs"][s["label"]]) < 1e-4
    status, raw = call(base, "POST", "/predict", {"inputs": SEQ_TEXTS[0], "raw_scores": True})
    logits = np.array([s["score"] for s in raw])
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert status == 200 and np.allclose(softmax, [s["score"] for s in single], atol=1e-5)
    status, pair = call(base, "POST", "/predict", {"inputs": [["a good film", "the plot was fun"]]})
    assert status == 200 and len(pair) == 1 and len(pair[0]) == 2

    status, answer = call(base, "POST", "/classify", {"model": tiny_runs["seq"].name, "input": SEQ_TEXTS})
    assert status == 200 and answer["object"] == "list" and answer["model"] == tiny_runs["seq"].name
    assert answer["usage"]["prompt_tokens"] > 0
    for i, (row, item) in enumerate(zip(offline, answer["data"])):
        assert item["index"] == i and item["label"] == row["label"] and item["num_classes"] == 2
        assert np.allclose(item["probs"], list(row["probs"].values()), atol=1e-4)
    status, err = call(base, "POST", "/classify", {"model": "another-model", "input": "good"})
    assert status == 404 and err["error_type"] == "not_found"
    status, info = call(base, "GET", "/info")
    assert status == 200 and info["task"] == "seq" and info["labels"] == ["neg", "pos"]
    assert info["attention"] in ("causal", "bidirectional") and info["max_input_tokens"] > 0
    status, err = call(base, "POST", "/tag", {"inputs": "john"})
    assert status == 400 and "/predict" in err["error"]


def test_tag_equals_lsllm_predict_entities(tiny_runs, token_server):
    base, _ = token_server
    offline = Predictor(tiny_runs["token"]).predict_rows(TOKEN_TEXTS)
    status, answers = call(base, "POST", "/tag", {"inputs": TOKEN_TEXTS})
    assert status == 200 and len(answers) == len(TOKEN_TEXTS)
    for text, row, entities in zip(TOKEN_TEXTS, offline, answers):
        assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == [
            (e["type"], e["start"], e["end"]) for e in row["entities"]]
        for e in entities:
            assert text[e["start"]:e["end"]] == e["word"] and 0 < e["score"] <= 1
    status, words = call(base, "POST", "/tag", {"inputs": TOKEN_TEXTS[1], "aggregation_strategy": "none"})
    assert status == 200
    tags = offline[1]["tags"]
    assert [w["index"] for w in words] == [i for i, t in enumerate(tags) if t != "O"]
    for w in words:
        assert w["entity"] == tags[w["index"]] and TOKEN_TEXTS[1][w["start"]:w["end"]] == w["word"]
    status, split = call(base, "POST", "/tag", {"tokens": [r["tokens"] for r in offline]})
    assert status == 200 and split["tags"] == [r["tags"] for r in offline]
    status, err = call(base, "POST", "/predict", {"inputs": "john"})
    assert status == 400 and "/tag" in err["error"]


@pytest.mark.parametrize("raw, status, kind", [
    (b"{not json", 400, "malformed"),
    (b"", 400, "empty"),
    (b'{"inputs": ""}', 400, "empty"),
    (b'{"inputs": []}', 400, "empty"),
    (b'{"inputs": ["good", "   "]}', 400, "empty"),
    (b'{"inputs": 5}', 422, "validation"),
    (b'{"inputs": ["good", 5]}', 422, "validation"),
    (b'{"inputs": [["a", "b", "c"]]}', 422, "validation"),
    (b'{"inputs": "good", "truncate": "yes"}', 422, "validation"),
    (b'{"text": "good"}', 422, "validation"),
    (b'["good"]', 422, "validation"),
    (json.dumps({"inputs": ["good"] * 9}).encode(), 413, "payload_too_large"),
    (json.dumps({"inputs": "good " * 500_000}).encode(), 413, "payload_too_large"),
    (json.dumps({"inputs": "good " * 300}).encode(), 422, "validation"),  # over max-input-tokens, no truncate
])
def test_bad_requests_get_their_status_and_never_hurt_the_server(seq_server, raw, status, kind):
    base, _ = seq_server
    got, body = call(base, "POST", "/predict", raw=raw)
    assert (got, body["error_type"]) == (status, kind) and body["error"]
    assert call(base, "POST", "/predict", {"inputs": "good film"})[0] == 200


def test_oversize_inputs_are_refused_while_the_model_encodes_other_texts(tiny_runs):
    """The input limit holds under load: request handlers count tokens while the batcher thread encodes other
    texts with truncation. They once shared one fast tokenizer, whose truncation setting lives in its Rust object,
    so a count sometimes came back truncated and an oversize text was served (serve_load's mixed run, 1 of 40).
    Here one thread encodes truncated batches the way predictions do while this one counts a 300-word text."""
    from lsllm.data.encode import encode

    model = load_served_model(tiny_runs["seq"])
    long = [SeqExample(text="good " * 300)]
    expected = model.count_tokens(long)[0]
    assert expected > model.max_length
    stop = threading.Event()

    def predict_in_background():
        examples = [SeqExample(text=f"a fine film number {i} " * 20) for i in range(16)]
        while not stop.is_set():
            encode(examples, "seq", model.predictor.tokenizer, None, 8, False)

    worker = threading.Thread(target=predict_in_background)
    worker.start()
    try:
        counts = [model.count_tokens(long)[0] for _ in range(400)]
    finally:
        stop.set()
        worker.join()
    assert set(counts) == {expected}


def test_truncate_and_unknown_routes(seq_server):
    base, _ = seq_server
    assert call(base, "POST", "/predict", {"inputs": "good " * 300, "truncate": True})[0] == 200
    status, body = call(base, "GET", "/nowhere")
    assert status == 404 and body["error_type"] == "not_found"
    status, body = call(base, "GET", "/predict")
    assert status == 405 and "error" in body


def test_metrics_count_requests_and_batches(seq_server):
    base, _ = seq_server
    call(base, "POST", "/predict", {"inputs": SEQ_TEXTS})
    call(base, "POST", "/predict", raw=b"{oops")
    status, text = call(base, "GET", "/metrics")
    assert status == 200
    assert 'lsllm_requests_total{route="/predict",status="200"}' in text
    assert 'lsllm_requests_total{route="/predict",status="400"}' in text
    count = [line for line in text.splitlines() if line.startswith("lsllm_batch_size_count")]
    assert count and float(count[0].split()[-1]) >= 1
    assert "lsllm_queue_depth" in text and "lsllm_request_seconds_bucket" in text


def test_concurrent_clients_are_batched_and_get_their_own_answers(seq_server):
    base, app = seq_server
    texts = [f"{w} film the plot" for w in ("good", "bad", "great", "awful", "fun", "dull", "fine", "boring")] * 4
    expected = {t: call(base, "POST", "/predict", {"inputs": t})[1] for t in set(texts)}
    stats = app.state.lsllm.batcher.stats
    batches, served = stats.batches, stats.texts
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: call(base, "POST", "/predict", {"inputs": t}), texts))
    assert all(status == 200 for status, _ in answers)
    for text, (_, answer) in zip(texts, answers):
        assert [s["label"] for s in answer] == [s["label"] for s in expected[text]]
        assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(answer, expected[text]))
    assert stats.texts - served == len(texts)
    assert stats.batches - batches < len(texts)  # clients shared batches


def test_api_key_guards_every_route_but_the_page_and_health(tiny_runs):
    model = load_served_model(tiny_runs["seq"])
    with running(lambda: model, api_key="s3cret") as (base, _):
        wait_ready(base)
        for method, path, payload in [("POST", "/predict", {"inputs": "good"}), ("GET", "/info", None),
                                      ("GET", "/metrics", None), ("POST", "/classify", {"input": "good"})]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                status, body = call(base, method, path, payload, headers)
                assert status == 401 and body["error_type"] == "unauthorized", (path, headers)
            assert call(base, method, path, payload, {"Authorization": "Bearer s3cret"})[0] == 200
        assert call(base, "GET", "/health")[0] == 200
        status, page = call(base, "GET", "/")
        assert status == 200 and "<html" in page.lower()


def test_loading_answers_503_then_serves(tiny_runs):
    gate = threading.Event()
    model = load_served_model(tiny_runs["seq"])

    def slow_load():
        gate.wait(30)
        return model

    with running(slow_load) as (base, _):
        status, body = call(base, "GET", "/health")
        assert status == 503 and body["status"] == "loading"
        status, body = call(base, "POST", "/predict", {"inputs": "good"})
        assert status == 503 and body["error_type"] == "unhealthy"
        gate.set()
        wait_ready(base)
        assert call(base, "POST", "/predict", {"inputs": "good"})[0] == 200

    def broken_load():
        raise OSError("model.safetensors: truncated file")

    with running(broken_load) as (base, _):
        time.sleep(0.2)
        status, body = call(base, "GET", "/health")
        assert status == 503 and body["status"] == "failed" and "truncated" in body["error"]


def test_full_queue_answers_429_and_a_failing_batch_500_without_stopping(tiny_runs):
    model = load_served_model(tiny_runs["seq"])
    gate, evaluate = threading.Event(), model.evaluate

    def gated(examples):
        if examples[0].text in ("good", "bad"):  # not the start-up calibration's texts
            gate.wait(30)
        if any(e.text == "explode" for e in examples):
            raise RuntimeError("boom")
        return evaluate(examples)

    model.evaluate = gated
    with running(lambda: model, ServeLimits(max_concurrent_requests=1)) as (base, _):
        wait_ready(base)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(call, base, "POST", "/predict", {"inputs": "good"})
            time.sleep(0.3)
            status, body = call(base, "POST", "/predict", {"inputs": "bad"})
            assert status == 429 and body["error_type"] == "overloaded"
            gate.set()
            assert first.result()[0] == 200
        status, body = call(base, "POST", "/predict", {"inputs": "explode"})
        assert status == 500 and "boom" in body["error"]
        assert call(base, "POST", "/predict", {"inputs": "good"})[0] == 200


def test_batcher_sorts_queued_texts_into_passes_within_the_limits_and_splits_requests():
    seen = []

    def evaluate(examples):
        seen.append([e.text for e in examples])
        return Evaluation(predictions=[e.text.upper() for e in examples], probabilities=None, metrics=None)

    batcher = DynamicBatcher(evaluate, Limits(max_batch_tokens=40, max_batch_size=3, wait_ms=200, overhead_tokens=32))
    try:
        texts, lengths = ["a", "b", "c", "d", "e", "long"], [5, 5, 5, 6, 5, 30]
        future = batcher.submit([SeqExample(text=t) for t in texts], lengths)
        assert [r.prediction for r in future.result(10)] == [t.upper() for t in texts]
        size = dict(zip(texts, lengths))
        for batch in seen:
            assert len(batch) <= 3 and (len(batch) == 1 or max(size[t] for t in batch) * len(batch) <= 40)
        assert ["long"] in seen and sorted(t for b in seen for t in b) == sorted(texts)
        assert batcher.stats.texts == 6 and batcher.stats.batches == len(seen) == 3
    finally:
        batcher.close(5)


def test_batcher_cuts_what_is_queued_into_passes_by_padding_against_pass_overhead():
    for overhead, expected in [(1, [["l"] * 4, ["s"] * 4]), (1_000, [["l"] * 4 + ["s"] * 4])]:
        seen = []

        def evaluate(examples):
            seen.append([e.text for e in examples])
            return Evaluation(predictions=[e.text for e in examples], probabilities=None, metrics=None)

        batcher = DynamicBatcher(evaluate, Limits(max_batch_tokens=10_000, max_batch_size=8, wait_ms=500,
                                                  overhead_tokens=overhead))
        try:
            texts = ["s", "l"] * 4
            batcher.submit([SeqExample(text=t) for t in texts], [10 if t == "s" else 50 for t in texts]).result(10)
            assert sorted(map(sorted, seen)) == expected
        finally:
            batcher.close(5)


def test_plan_passes_weighs_padding_against_another_pass():
    lengths = [10, 10, 10, 10, 50, 50, 50, 50]
    cheap_passes = plan_passes(lengths, max_rows=8, max_tokens=10_000, overhead=1)
    assert sorted(map(sorted, cheap_passes)) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # no padding
    assert len(plan_passes(lengths, max_rows=8, max_tokens=10_000, overhead=1_000)) == 1  # one pass, padded
    assert all(len(p) <= 3 for p in plan_passes(lengths, max_rows=3, max_tokens=10_000, overhead=1_000))
    assert plan_passes([], 4, 100, 10) == []


def test_sigterm_drains_requests_in_flight_then_exits(tiny_runs):
    with ServerProcess(tiny_runs["seq"], "--batch-wait-ms", "1500", timeout=120) as server:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(call, server.url, "POST", "/predict", {"inputs": "good film"})
            time.sleep(0.5)  # queued, waiting for company
            server.proc.send_signal(signal.SIGTERM)
            status, answer = pending.result(60)
        assert status == 200 and math.isclose(sum(s["score"] for s in answer), 1, abs_tol=1e-4)
        assert server.proc.wait(60) == 0
        assert "serving seq" in server.output()


def test_serve_cli_refuses_a_missing_run_and_a_busy_port(tiny_runs, tmp_path):
    from typer.testing import CliRunner

    from lsllm.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such run folder" in result.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = CliRunner().invoke(app, ["serve", str(tiny_runs["seq"]), "--port", str(busy.getsockname()[1])])
    assert result.exit_code == 2 and "can't listen" in result.output


def test_huggingface_hub_inference_client_works_unchanged(seq_server, token_server, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    # CI sets HF_HUB_OFFLINE=1 (nothing may reach the Hub), which huggingface_hub also applies to a local URL.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    base, _ = seq_server
    expected = call(base, "POST", "/predict", {"inputs": "good film"})[1]
    answer = InferenceClient(model=base).text_classification("good film", top_k=2)
    assert [(a.label, round(a.score, 5)) for a in answer] == [(e["label"], round(e["score"], 5)) for e in expected]
    base, _ = token_server
    expected = call(base, "POST", "/tag", {"inputs": TOKEN_TEXTS[0]})[1]
    answer = InferenceClient(model=base).token_classification(TOKEN_TEXTS[0])
    assert [(a.entity_group, a.start, a.end) for a in answer] == [(e["entity_group"], e["start"], e["end"])
                                                                  for e in expected]


def test_a_zero_shot_prompting_run_is_served_like_any_run(tiny_models, tmp_path):
    from lsllm.cli import main
    from lsllm.predict import load_predictor
    from tests.test_workflow import write_seq_csv

    data = write_seq_csv(tmp_path / "dev.csv", 8, 1)
    run = tmp_path / "zero"
    assert main(["train", "--method", "zero-shot", "--model", str(tiny_models["llama"]), "--train", str(data),
                 "--validation", str(data), "--label-names", "neg=negative,pos=positive", "--output", str(run)]) == 0
    offline = load_predictor(run).predict_rows(SEQ_TEXTS)
    model = load_served_model(run)
    with running(lambda: model) as (base, _):
        wait_ready(base)
        status, info = call(base, "GET", "/info")
        assert status == 200 and info["method"] == "zero-shot" and info["labels"] == ["neg", "pos"]
        status, answers = call(base, "POST", "/predict", {"inputs": SEQ_TEXTS})
        assert status == 200
        for row, answer in zip(offline, answers):
            assert answer[0]["label"] == row["label"]
            assert all(abs(s["score"] - row["probs"][s["label"]]) < 1e-4 for s in answer)
        status, err = call(base, "POST", "/predict", {"inputs": "good", "raw_scores": True})
        assert status == 422 and "raw_scores" in err["error"]
