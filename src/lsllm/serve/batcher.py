"""Dynamic batching: one model worker serves every client. Requests are split into their texts and queued.
Once a forward pass's worth is queued, or the oldest text has waited `wait_ms`, the worker takes the queued
texts (oldest first, then those nearest its length), sorts them by length and cuts them into forward passes
where padding would cost more than another pass would (`plan_passes`); each request is answered as soon as
its last text is done."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lsllm.inference.batched import Evaluation


@dataclass
class Limits:
    max_batch_tokens: int = 8192
    """Padded tokens per batch (rows x longest row): what a forward pass costs."""
    max_batch_size: int = 32
    wait_ms: float = 5.0
    """How long the oldest queued text may wait for others to share its batch."""
    overhead_tokens: float = 32.0
    """What one more forward pass costs, in padded tokens (measured at start-up: `ServedModel.calibrate`)."""
    pool: int = 4
    """The worker takes up to pool x max_batch_size queued texts at once, so it can sort them into passes."""


def plan_passes(tokens: list[int], max_rows: int, max_tokens: int, overhead: float) -> list[list[int]]:
    """Indices of `tokens` (lengths) cut into forward passes of at most max_rows rows and max_tokens padded
    tokens (a longer text goes alone), minimising padded tokens + overhead per pass: sorted by length,
    the best cut points by dynamic programming (O(n x max_rows))."""
    order = sorted(range(len(tokens)), key=lambda i: tokens[i])
    lengths = [tokens[i] for i in order]
    best = [0.0] + [float("inf")] * len(order)
    start = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for first in range(end, max(0, end - max_rows), -1):  # the pass is order[first-1:end]
            rows = end - first + 1
            if rows > 1 and lengths[end - 1] * rows > max_tokens:
                break
            cost = best[first - 1] + lengths[end - 1] * rows + overhead
            if cost < best[end]:
                best[end], start[end] = cost, first - 1
    passes, end = [], len(order)
    while end:
        passes.append(order[start[end]:end])
        end = start[end]
    return passes[::-1]


@dataclass
class ItemResult:
    """One text's share of a batch's Evaluation."""

    prediction: object
    probabilities: np.ndarray | None
    logits: np.ndarray | None
    raw: str | None


@dataclass
class _Job:
    future: Future
    results: list
    remaining: int


@dataclass
class _Item:
    job: _Job
    index: int
    example: object
    tokens: int
    queued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What the worker did, for /metrics (read without the lock: the numbers are only ever added to)."""

    batches: int = 0
    texts: int = 0
    tokens: int = 0
    padded_tokens: int = 0


class DynamicBatcher:
    """`submit(examples, token_counts)` returns a Future of one ItemResult per example. `evaluate` is the
    predictor's (LS or prompting): it receives each batch as a list of examples and returns an Evaluation.
    `on_batch(size, tokens)` is called after every batch (metrics)."""

    def __init__(self, evaluate: Callable[[list], Evaluation], limits: Limits,
                 on_batch: Callable[[int, int], None] | None = None):
        self.evaluate, self.limits, self.on_batch = evaluate, limits, on_batch
        self.stats = BatchStats()
        self._pending: list[_Item] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._worker = threading.Thread(target=self._run, name="lsllm-batcher", daemon=True)
        self._worker.start()

    @property
    def queued(self) -> int:
        return len(self._pending)

    def submit(self, examples: list, token_counts: list[int]) -> Future:
        job = _Job(Future(), [None] * len(examples), len(examples))
        if not examples:
            job.future.set_result([])
            return job.future
        with self._cond:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._pending.extend(_Item(job, i, e, n) for i, (e, n) in enumerate(zip(examples, token_counts)))
            self._cond.notify()
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._worker.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return  # stopping, nothing left
                # Wait for company until the oldest text has waited wait_ms or a full batch is queued.
                while not self._stopping and not self._full():
                    left = self._pending[0].queued + self.limits.wait_ms / 1000 - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                passes = self._take()
            for batch in passes:
                self._process(batch)

    def _full(self) -> bool:
        limits = self.limits
        if len(self._pending) >= limits.max_batch_size:
            return True
        longest = max(item.tokens for item in self._pending)
        return longest * len(self._pending) >= limits.max_batch_tokens

    def _take(self) -> list[list[_Item]]:
        """The oldest text (so none starves), then up to pool x max_batch_size queued texts nearest its length,
        cut into forward passes by `plan_passes`: little padding, as offline prediction's length-sorted batches."""
        limits = self.limits
        first, rest = self._pending[0], self._pending[1:]
        nearest = sorted(rest, key=lambda it: abs(it.tokens - first.tokens))
        pool = [first] + nearest[:limits.pool * limits.max_batch_size - 1]
        chosen = {id(item) for item in pool}
        self._pending = [item for item in self._pending if id(item) not in chosen]
        passes = plan_passes([item.tokens for item in pool], limits.max_batch_size, limits.max_batch_tokens,
                             limits.overhead_tokens)
        return [[pool[i] for i in indices] for indices in passes]

    def _process(self, batch: list[_Item]) -> None:
        try:
            evaluation = self.evaluate([item.example for item in batch])
        except Exception as err:  # a bug or an out-of-memory: those requests fail, the server goes on
            for job in {id(item.job): item.job for item in batch}.values():
                if not job.future.done():
                    job.future.set_exception(err)
            return
        # Counted before anyone is answered, so a client that reads /metrics after its answer sees its texts.
        tokens = sum(item.tokens for item in batch)
        self.stats.batches += 1
        self.stats.texts += len(batch)
        self.stats.tokens += tokens
        self.stats.padded_tokens += max(item.tokens for item in batch) * len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), tokens)
        for k, item in enumerate(batch):
            item.job.results[item.index] = ItemResult(
                prediction=evaluation.predictions[k],
                probabilities=None if evaluation.probabilities is None else evaluation.probabilities[k],
                logits=None if evaluation.logits is None else evaluation.logits[k],
                raw=None if evaluation.raw is None else evaluation.raw[k])
            item.job.remaining -= 1
            if item.job.remaining == 0 and not item.job.future.done():
                item.job.future.set_result(item.job.results)
