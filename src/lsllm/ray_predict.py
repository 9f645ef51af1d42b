"""`lsllm predict RUN --input DATA --output DIR --engine ray`: bulk prediction on Ray Data, on one machine or a
cluster. Ray Data reads the input (Parquet, JSON Lines and CSV with its own distributed readers; every other
format through lsllm's chunk reader on the driver), `map_batches` runs one lsllm predictor per actor (the model
loaded once per actor; within a block, texts go through the model in length-sorted batches as offline
prediction does), and the result is written as Parquet shards: the input's columns plus `label`, `score` and
`prob_<label>` (sequence tasks) or `tags`, `scores` and `entities` as JSON (token tasks).

Without an address a local Ray cluster is started (and stopped) here; `--address ray://HEAD:10001` or `auto`
joins a running cluster, which is how it runs on many machines (the run folder and the input must then be
readable at the same path on every node: a shared file system or object storage).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lsllm.data.readers import TEXT_NAMES, TOKEN_NAMES, detect_format
from lsllm.errors import DataError, LsllmError
from lsllm.files import temp_prefix
from lsllm.streaming import add_prediction_columns

# Formats Ray Data reads itself (distributed); the rest go through lsllm's reader on the driver.
RAY_READERS = {"parquet": "read_parquet", "jsonl": "read_json", "csv": "read_csv"}


@dataclass
class RaySummary:
    rows: int
    files: int
    workers: int
    output: Path


class BatchPredictor:
    """One per Ray actor: the run is loaded once; each call predicts one pandas batch and returns it with the
    prediction columns added."""

    def __init__(self, run: str, text_column: str, tokens_column: str | None, threads: int):
        import torch

        from lsllm.predict import load_predictor, run_info

        torch.set_num_threads(threads)
        self.task = run_info(run)[0]
        self.predictor = load_predictor(run)
        self.text_column, self.tokens_column = text_column, tokens_column

    def __call__(self, frame):
        from lsllm.data.records import SeqExample, TokenExample
        from lsllm.spans import split_words

        if self.task == "token":
            if self.tokens_column is not None:
                tokens = [_tokens(value, self.tokens_column) for value in frame[self.tokens_column]]
                texts = None
            else:
                texts = [_text(value, self.text_column) for value in frame[self.text_column]]
                tokens = [split_words(t) for t in texts]
            rows = self.predictor.rows([TokenExample(tokens=t) for t in tokens], texts)
        else:
            rows = self.predictor.rows([SeqExample(text=_text(v, self.text_column)) for v in frame[self.text_column]])
        return add_prediction_columns(frame, rows)


def _text(value, column: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        raise DataError(f"a row has no text in column {column!r}; fill it in or remove the row")
    text = str(value).strip()
    if not text:
        raise DataError(f"a row has an empty text in column {column!r}; fill it in or remove the row")
    return text


def _tokens(value, column: str) -> list[str]:
    tokens = [str(t) for t in (value.tolist() if hasattr(value, "tolist") else value or [])]
    if not tokens or any(not t for t in tokens):
        raise DataError(f"a row has an empty token list or token in column {column!r}; fix the row")
    return tokens


def predict_on_ray(run: str | Path, input: str | Path, output: str | Path, *, workers: int | None = None,
                   address: str | None = None, batch_size: int = 256, format: str | None = None,
                   text_column: str | None = None, token_column: str | None = None, **columns) -> RaySummary:
    """Predict `input` on Ray Data into the Parquet folder `output` (which must not exist yet)."""
    import ray

    from lsllm.predict import run_info

    task = run_info(run)[0]
    input, output = Path(input), Path(output)
    if output.exists():
        raise LsllmError(f"--output {output} exists; --engine ray writes a new folder of Parquet shards: pass a "
                         "new name (lsllm never replaces a folder)")
    fmt = detect_format(input, format, task)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 **({} if address else {"num_cpus": os.cpu_count()}))
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = workers or cpus
        threads = max(1, cpus // workers)
        dataset, text_column, tokens_column = _dataset(ray, input, fmt, task, text_column, token_column, columns)
        predicted = dataset.map_batches(
            BatchPredictor, fn_constructor_kwargs={"run": str(Path(run).resolve()), "text_column": text_column,
                                                   "tokens_column": tokens_column, "threads": threads},
            # Each actor runs `threads` torch threads but the actors claim one logical CPU less than the cluster has
            # between them: claiming every CPU would leave Ray Data's read and write tasks (1 CPU each) none, and
            # the pipeline would wait forever.
            batch_size=batch_size, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=min(threads, max(cpus - 1, 0.5) / workers))
        temp = output.with_name(f"{temp_prefix(output)}{os.getpid()}")
        try:
            predicted.write_parquet(str(temp))
            os.replace(temp, output)  # the folder appears complete or not at all
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    except Exception as err:  # Ray wraps a worker's DataError in its own exception types
        cause = _data_error(err)
        if cause is not None:
            raise DataError(f"{input}: {cause}") from None
        raise
    finally:
        if started:
            ray.shutdown()
    import pyarrow.parquet as pq

    files = sorted(output.glob("*.parquet"))
    return RaySummary(sum(pq.ParquetFile(f).metadata.num_rows for f in files), len(files), workers, output)


def _dataset(ray, input: Path, fmt: str, task: str, text_column, token_column, columns: dict):
    if fmt in RAY_READERS and not columns:
        dataset = getattr(ray.data, RAY_READERS[fmt])(str(input.resolve()))
        names = dataset.schema().names
        if task == "token":
            tokens = token_column or next((n for n in names if n.lower() in TOKEN_NAMES), None)
            if tokens is not None and tokens not in names:
                raise DataError(f"column {tokens!r} not in {input}; columns are: {', '.join(names)}")
            if tokens is not None:
                return dataset, None, tokens
        text = text_column or next((n for n in names if n.lower() in TEXT_NAMES), None)
        if text is None or text not in names:
            raise DataError(f"no text column {text or ''} in {input}; columns are: {', '.join(names)}; "
                            "pass --text-column")
        return dataset, text, None
    # Formats Ray has no reader for (CoNLL, TSV, plain text, ...), or lsllm's column options: read here.
    from lsllm.data.readers.chunks import iter_chunks

    items = []
    for chunk in iter_chunks(input, task, format=fmt, text_column=text_column, token_column=token_column,
                             **columns):
        for k, example in enumerate(chunk.examples):
            item = {"row": chunk.first + k}
            item.update({"tokens": example.tokens} if task == "token" else {"text": example.text})
            items.append(item)
    return ray.data.from_items(items), (None if task == "token" else "text"), ("tokens" if task == "token" else None)


def _data_error(err: BaseException) -> str | None:
    """The DataError message inside Ray's wrapping exceptions, if that is what failed."""
    seen = err
    while seen is not None:
        if isinstance(seen, DataError):
            return str(seen)
        if "DataError" in type(seen).__name__ or "lsllm.errors.DataError" in str(seen):
            text = str(seen)
            return text.split("DataError: ", 1)[-1].strip().splitlines()[0] if "DataError: " in text else text
        seen = seen.__cause__ or seen.__context__
    return None


__all__ = ["BatchPredictor", "RaySummary", "predict_on_ray"]
