"""The HTTP service: routes, API key, limits, errors as JSON, Prometheus metrics. The model loads in the
background (503 until it is ready); every prediction goes through one DynamicBatcher."""
from __future__ import annotations

import asyncio
import hmac
import threading
import time
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from lsllm.serve.batcher import DynamicBatcher, Limits
from lsllm.serve.model import ServedModel
from lsllm.serve.requests import ServeError, classify_request, parse_body, predict_request, tag_request
from lsllm.serve.responses import pipeline_entities, tei_scores, vllm_classify, word_score

OPEN = {("GET", "/"), ("GET", "/health")}
"""Answered without the API key: the page (static; it asks for the key) and the load balancer's probe."""


@dataclass
class ServeLimits:
    max_batch_tokens: int = 8192
    max_batch_size: int = 32
    batch_wait_ms: float = 5.0
    max_concurrent_requests: int = 512
    max_input_tokens: int | None = None
    """Longest input accepted with `truncate: false` (None: the model's max_length; token runs: 64x it)."""
    max_client_batch_size: int = 256
    max_request_bytes: int = 2_000_000
    pass_overhead_tokens: float | None = None
    """What one more forward pass costs in padded tokens; None: measured at start-up (ServedModel.calibrate)."""


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lsllm_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram("lsllm_request_seconds", "Request latency by route", ["route"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.queue = Gauge("lsllm_queue_depth", "Texts waiting for the model", registry=r)
        self.inflight = Gauge("lsllm_requests_in_flight", "Prediction requests being answered", registry=r)
        self.batch_size = Histogram("lsllm_batch_size", "Texts per model batch", registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.tokens = Counter("lsllm_tokens", "Input tokens run through the model", registry=r)
        self.texts = Counter("lsllm_texts", "Texts predicted", registry=r)

    def on_batch(self, size: int, tokens: int) -> None:
        self.batch_size.observe(size)
        self.tokens.inc(tokens)
        self.texts.inc(size)


def error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


class State:
    """What the routes share: the model once loaded, the batcher, the in-flight count."""

    def __init__(self, limits: ServeLimits):
        self.limits = limits
        self.model: ServedModel | None = None
        self.batcher: DynamicBatcher | None = None
        self.load_error: str | None = None
        self.inflight = 0
        self.overhead_tokens: float | None = None

    def max_input_tokens(self) -> int:
        if self.limits.max_input_tokens is not None:
            return self.limits.max_input_tokens
        return self.model.max_length * (64 if self.model.task == "token" else 1)


def create_app(load: Callable[[], ServedModel], limits: ServeLimits | None = None, api_key: str | None = None,
               on_load_error: Callable[[str], None] | None = None) -> FastAPI:
    """The app; `load` runs in a background thread at start-up (503 until it returns)."""
    limits = limits or ServeLimits()
    state, metrics = State(limits), Metrics()
    metrics.queue.set_function(lambda: state.batcher.queued if state.batcher else 0)

    def load_in_background() -> None:
        try:
            model = load()
            state.overhead_tokens = limits.pass_overhead_tokens or model.calibrate()
            state.batcher = DynamicBatcher(model.evaluate, Limits(limits.max_batch_tokens, limits.max_batch_size,
                                                                  limits.batch_wait_ms, state.overhead_tokens),
                                           metrics.on_batch)
            state.model = model
        except Exception as err:  # noqa: BLE001 - reported on /health and by `lsllm serve`, which exits
            state.load_error = " ".join(str(err).split()) or type(err).__name__
            if on_load_error is not None:
                on_load_error(state.load_error)

    async def lifespan(app):
        threading.Thread(target=load_in_background, name="lsllm-load", daemon=True).start()
        yield
        if state.batcher is not None:  # uvicorn has drained the requests in flight; finish the queue
            state.batcher.close(timeout=60)

    app = FastAPI(title="lsllm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.lsllm = state

    @app.middleware("http")
    async def guard_and_count(request: Request, call_next):
        route, started = request.url.path, time.perf_counter()
        if api_key and (request.method, route) not in OPEN and not _authorized(request, api_key):
            response = error(401, "missing or wrong API key; send 'Authorization: Bearer <key>'", "unauthorized")
        else:
            try:
                response = await call_next(request)
            except Exception as err:  # noqa: BLE001 - a bug answers 500 as JSON; the server goes on
                response = error(500, f"internal error: {type(err).__name__}: {err}", "backend")
        known = route if route in KNOWN_ROUTES else "other"
        metrics.requests.labels(known, str(response.status_code)).inc()
        metrics.latency.labels(known).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ServeError)
    async def serve_error(_, err: ServeError):
        return error(err.status, err.message, err.error_type)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, err: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http")
        return error(err.status_code, str(err.detail), kind)

    def ready() -> ServedModel:
        if state.model is None:
            if state.load_error:
                raise ServeError(503, f"the model failed to load: {state.load_error}", "unhealthy")
            raise ServeError(503, "the model is still loading; retry shortly", "unhealthy")
        return state.model

    async def run(model: ServedModel, parsed, truncate: bool) -> list:
        """Queue the examples (after the input limit and the concurrency limit) and wait for their results."""
        counts = model.count_tokens(parsed.examples)
        longest = state.max_input_tokens()
        for i, n in enumerate(counts):
            if n > longest and not truncate:
                where = "the input" if parsed.single else f"input {i}"
                raise ServeError(422, f"{where} has {n} tokens; the limit is {longest} (--max-input-tokens); send "
                                      "shorter text or \"truncate\": true", "validation")
        if state.inflight >= limits.max_concurrent_requests:
            raise ServeError(429, f"{state.inflight} requests are already queued (--max-concurrent-requests); retry "
                                  "shortly", "overloaded")
        state.inflight += 1
        metrics.inflight.inc()
        try:
            capped = [min(n, model.max_length) for n in counts] if model.task == "seq" else counts
            try:
                future = state.batcher.submit(parsed.examples, capped)
            except RuntimeError as err:  # submitted while shutting down
                raise ServeError(503, str(err), "unhealthy") from None
            return await asyncio.wrap_future(future)
        finally:
            state.inflight -= 1
            metrics.inflight.dec()

    def sequence_model() -> ServedModel:
        model = ready()
        if model.task != "seq":
            raise ServeError(400, f"{model.name} tags tokens; use POST /tag", "validation")
        return model

    @app.get("/health")
    async def health():
        if state.model is None:
            status = "failed" if state.load_error else "loading"
            return JSONResponse({"status": status, "error": state.load_error}, status_code=503)
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        model = ready()
        limit_info = asdict(limits) | {"max_input_tokens": state.max_input_tokens(),
                                       "pass_overhead_tokens": round(state.overhead_tokens, 1)}
        return model.info | limit_info | {"auth": bool(api_key)}

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(_page_html())

    async def body(request: Request) -> dict:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_request_bytes:  # refused without keeping it
            drained = 0  # read and dropped (up to 64 MB), so the client sees the 413, not a broken pipe
            async for chunk in request.stream():
                drained += len(chunk)
                if drained > 64_000_000:
                    break
            raise ServeError(413, f"request body is {declared} bytes; the limit is {limits.max_request_bytes}",
                             "payload_too_large")
        return parse_body(await request.body(), limits.max_request_bytes)

    @app.post("/")
    async def root(request: Request):
        """The Hugging Face Inference API's shape, where huggingface_hub's InferenceClient posts
        (`{"inputs", "parameters"}`): a classifier answers a list of label lists (top_k of them when asked),
        a tagger the pipeline's entities (its aggregation_strategy from the parameters)."""
        payload, model = await body(request), ready()
        parameters = payload.pop("parameters", None) or {}
        if not isinstance(parameters, dict):
            raise ServeError(422, "'parameters' must be a JSON object", "validation")
        if model.task == "token":
            if "aggregation_strategy" in parameters:
                payload["aggregation_strategy"] = parameters["aggregation_strategy"]
            return await tag_payload(payload)
        answers, single = await predict_payload(payload)
        top_k = parameters.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ServeError(422, "'parameters.top_k' must be a positive integer", "validation")
        return [a[:top_k] if top_k else a for a in (answers if not single else [answers])]

    @app.post("/predict")
    async def predict(request: Request):
        answers, _ = await predict_payload(await body(request))
        return answers

    async def predict_payload(payload: dict) -> tuple[list, bool]:
        model = sequence_model()
        parsed, truncate, raw_scores = predict_request(payload, limits.max_client_batch_size)
        if raw_scores and not model.has_logits:
            raise ServeError(422, "raw_scores needs an LS sequence model; this run scores labels by prompting",
                             "validation")
        results = await run(model, parsed, truncate)
        answers = [tei_scores(r, model.labels, raw_scores) for r in results]
        return (answers[0] if parsed.single else answers), parsed.single

    @app.post("/classify")
    async def classify(request: Request):
        payload = await body(request)
        model = sequence_model()
        name = payload.get("model")
        if name is not None and name != model.name:
            raise ServeError(404, f"the model '{name}' does not exist; this server serves '{model.name}'",
                             "not_found")
        parsed = classify_request(payload, limits.max_client_batch_size)
        truncate = payload.get("truncate_prompt_tokens") is not None
        results = await run(model, parsed, truncate)
        tokens = sum(min(n, model.max_length) for n in model.count_tokens(parsed.examples))
        return vllm_classify(results, model.labels, model.name, tokens)

    @app.post("/tag")
    async def tag(request: Request):
        return await tag_payload(await body(request))

    async def tag_payload(payload: dict):
        model = ready()
        if model.task != "token":
            raise ServeError(400, f"{model.name} classifies sequences; use POST /predict or /classify",
                             "validation")
        parsed, aggregation = tag_request(payload, limits.max_client_batch_size)
        results = await run(model, parsed, truncate=False)
        if parsed.texts is None:
            return {"tags": [r.prediction for r in results], "scores": [word_score(r) for r in results]}
        answers = [pipeline_entities(e.tokens, t, r, aggregation)
                   for e, t, r in zip(parsed.examples, parsed.texts, results)]
        return answers[0] if parsed.single else answers

    return app


KNOWN_ROUTES = {"/", "/health", "/info", "/metrics", "/predict", "/classify", "/tag"}


def _authorized(request: Request, api_key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


def _page_html() -> str:
    return resources.files("lsllm.serve").joinpath("page.html").read_text(encoding="utf-8")
