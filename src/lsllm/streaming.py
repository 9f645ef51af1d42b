"""Prediction over inputs of any size: read, predict and write chunk by chunk, so memory holds one chunk
whatever the file's size; resumable after a kill or a bad row; shardable for users who fan out on their own
scheduler (Slurm arrays, Spark: `predict_batches`).

Each chunk's predictions go to `<output>.parts/part-NNNNNN.jsonl` (written atomically), and
`<output>.parts/state.json` records which chunks are done with a digest of their input bytes. Only when every
chunk is done is the output assembled beside its final name and renamed to it, and the parts folder removed:
a killed run never leaves a shortened output. `resume=True` re-reads the input, skips every chunk whose digest
still matches (a fixed bad row re-predicts only its own chunk and those after it) and goes on from there.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lsllm.data.readers.chunks import iter_chunks
from lsllm.errors import DataError, LsllmError
from lsllm.files import check_writable, json_default, output_lock, write_bytes_atomic, write_json_atomic
from lsllm.writers import flatten_row

STATE = "state.json"
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
                  ".pq": "parquet"}
DEFAULT_CHUNK_ROWS = 1000


@dataclass
class StreamSummary:
    rows: int
    """Rows written (this shard's, when sharded)."""
    chunks: int
    reused_chunks: int
    """Chunks a resumed run took from the parts folder instead of predicting again."""
    output: Path | None


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """"i/N" (0-based i) -> (i, N)."""
    if shard is None or isinstance(shard, tuple):
        return shard
    try:
        i, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise LsllmError(f"--shard {shard!r}: expected i/N, e.g. 0/4 for the first of 4 shards") from None
    if n < 1 or not 0 <= i < n:
        raise LsllmError(f"--shard {shard}: i must be in 0..N-1 and N at least 1 (0/4, 1/4, 2/4, 3/4 for N=4)")
    return i, n


def iter_predictions(run: str | Path, input: str | Path, *, shard: str | tuple[int, int] | None = None,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS, predictor=None, **columns) -> Iterator[list[dict]]:
    """Prediction rows of `input`, one list per chunk. The first chunk is read (and checked) before the model
    loads. Sharded, each row carries `row`, its 0-based example index in the whole file."""
    from lsllm.predict import load_predictor, run_info

    task = run_info(run)[0]
    shard = parse_shard(shard)
    for chunk in iter_chunks(input, task, chunk_rows, **columns):
        examples, index = _shard_of(chunk, shard)
        if not examples:
            yield []
            continue
        predictor = predictor or load_predictor(run)
        yield _rows(predictor, examples, index, shard)


def predict_to_file(run: str | Path, input: str | Path, output: str | Path, *, resume: bool = False,
                    shard: str | tuple[int, int] | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                    progress: bool = False, **columns) -> StreamSummary:
    """`lsllm predict RUN --input FILE --output OUT`: JSONL, CSV or Parquet (by OUT's extension)."""
    from tqdm import tqdm

    from lsllm.predict import load_predictor, run_info

    task = run_info(run)[0]
    output, shard = Path(output), parse_shard(shard)
    fmt = output_format(output)
    if Path(input).resolve() == output.resolve():
        raise DataError(f"--output {output} is the input file; write predictions to a new file")
    check_writable(output)
    parts = output.with_name(output.name + ".parts")
    settings = {"run": str(Path(run).resolve()), "input": str(Path(input).resolve()), "chunk_rows": chunk_rows,
                "shard": list(shard) if shard else None, "columns": {k: v for k, v in sorted(columns.items())}}
    with output_lock(output, "prediction output"):
        state = _open_state(parts, settings, resume)
        predictor, rows, reused, count = None, 0, 0, 0
        bar = tqdm(unit=" rows", desc="predict", disable=not progress, dynamic_ncols=True)
        try:
            for chunk in iter_chunks(input, task, chunk_rows, **columns):
                count = chunk.index + 1
                bar.update(len(chunk.examples))
                done = state["chunks"].get(str(chunk.index))
                part = parts / f"part-{chunk.index:06d}.jsonl"
                if done and done["digest"] == chunk.digest and part.is_file():
                    rows, reused = rows + done["rows"], reused + 1
                    continue
                _forget_from(state, parts, chunk.index)  # this chunk changed: it and all after it are redone
                examples, index = _shard_of(chunk, shard)
                if examples and predictor is None:
                    predictor = load_predictor(run)
                chunk_rows_out = _rows(predictor, examples, index, shard) if examples else []
                parts.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(part, lambda f: f.write(_jsonl(chunk_rows_out)))
                flat: dict[str, None] = {}
                for row in chunk_rows_out:
                    flat.update(dict.fromkeys(flatten_row(row)))
                state["chunks"][str(chunk.index)] = {"digest": chunk.digest, "rows": len(chunk_rows_out),
                                                     "columns": list(flat)}
                write_json_atomic(parts / STATE, state)
                rows += len(chunk_rows_out)
        except DataError as err:
            if parts.is_dir() and state["chunks"]:
                raise DataError(f"{err}. The predictions before it are kept in {parts}: fix the file and run the "
                                "same command with --resume to go on from there") from None
            raise
        finally:
            bar.close()
        _forget_from(state, parts, count)  # the input got shorter since the interrupted run
        _assemble(parts, state, count, output, fmt, task)
        shutil.rmtree(parts, ignore_errors=True)
    return StreamSummary(rows, count, reused, output)


def predict_batches(run: str | Path, batches: Iterable, text_column: str = "text", predictor=None) -> Iterator:
    """Spark's `mapInPandas` (or any loop over pandas DataFrames): for each DataFrame of texts, the same
    DataFrame with `label`, `score` and `prob_<label>` columns (sequence tasks) or `tags` and `entities` (token
    tasks, texts split into words). The model loads once per call.

    >>> df.mapInPandas(lambda it: predict_batches("runs/sst2", it), schema)   # doctest: +SKIP
    """
    from lsllm.predict import load_predictor

    predictor = predictor or load_predictor(run)
    for frame in batches:
        texts = [str(t) for t in frame[text_column].tolist()]
        yield add_prediction_columns(frame.copy(), predictor.predict_rows(texts) if texts else [])


def add_prediction_columns(frame, rows: list[dict]):
    """`frame` (pandas) with its rows' predictions as columns: `label`, `score` and `prob_<label>`, or `tags`,
    `scores` and `entities` (JSON). Shared by `predict_batches` and the Ray engine's actors."""
    if rows and "label" in rows[0]:
        frame["label"] = [r["label"] for r in rows]
        if "probs" in rows[0]:
            frame["score"] = [max(r["probs"].values()) for r in rows]
            for name in rows[0]["probs"]:
                frame[f"prob_{name}"] = [r["probs"][name] for r in rows]
    elif rows:
        frame["tags"] = [r["tags"] for r in rows]
        frame["scores"] = [r.get("scores") for r in rows]
        frame["entities"] = [json.dumps(r["entities"], ensure_ascii=False, default=json_default) for r in rows]
    return frame


def output_format(output: Path) -> str:
    fmt = OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise LsllmError(f"--output {output}: name it .jsonl, .csv or .parquet (the extension picks the format)")
    return fmt


# ---------------------------------------------------------------------------


def _shard_of(chunk, shard: tuple[int, int] | None) -> tuple[list, list[int]]:
    indexes = [chunk.first + k for k in range(len(chunk.examples))]
    if shard is None:
        return chunk.examples, indexes
    i, n = shard
    keep = [k for k, index in enumerate(indexes) if index % n == i]
    return [chunk.examples[k] for k in keep], [indexes[k] for k in keep]


def _rows(predictor, examples: list, index: list[int], shard) -> list[dict]:
    rows = predictor.rows(examples)
    if shard is not None:
        rows = [{"row": i, **row} for i, row in zip(index, rows)]
    return rows


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, default=json_default) + "\n" for r in rows).encode("utf-8")


def _open_state(parts: Path, settings: dict, resume: bool) -> dict:
    if not parts.exists():
        return {"version": 1, **settings, "chunks": {}}
    if not (parts / STATE).is_file():
        raise LsllmError(f"{parts} exists but was not left by lsllm predict; move it away (lsllm writes its "
                         "unfinished predictions there)")
    if not resume:
        raise LsllmError(f"{parts} holds the predictions of an interrupted run; pass --resume to go on from where "
                         "it stopped, or delete the folder to start over")
    state = json.loads((parts / STATE).read_text(encoding="utf-8"))
    changed = [key for key, value in settings.items() if state.get(key) != value]
    if changed:
        was = ", ".join(f"{key} {state.get(key)!r} (now {settings[key]!r})" for key in changed)
        raise LsllmError(f"--resume: {parts} was started with other settings: {was}; use the same ones, or delete "
                         "the folder to start over")
    return state


def _forget_from(state: dict, parts: Path, first: int) -> None:
    for key in [k for k in state["chunks"] if int(k) >= first]:
        del state["chunks"][key]
        (parts / f"part-{int(key):06d}.jsonl").unlink(missing_ok=True)


def _part_rows(parts: Path, count: int) -> Iterator[list[dict]]:
    for index in range(count):
        with open(parts / f"part-{index:06d}.jsonl", encoding="utf-8") as f:
            yield [json.loads(line) for line in f]


def _assemble(parts: Path, state: dict, count: int, output: Path, fmt: str, task: str) -> None:
    """The output from the parts, atomically (written beside it, then renamed)."""
    if fmt == "jsonl":
        def write(f) -> None:
            for index in range(count):
                with open(parts / f"part-{index:06d}.jsonl", "rb") as part:
                    shutil.copyfileobj(part, f)
    elif fmt == "csv":
        import csv
        import io

        columns: dict[str, None] = {}
        for index in range(count):
            columns.update(dict.fromkeys(state["chunks"][str(index)]["columns"]))

        def write(f) -> None:
            text = io.TextIOWrapper(f, encoding="utf-8", newline="")
            writer = csv.DictWriter(text, fieldnames=list(columns), restval="", lineterminator="\n")
            if columns:
                writer.writeheader()
            for rows in _part_rows(parts, count):
                writer.writerows(flatten_row(r) for r in rows)
            text.flush()
            text.detach()
    else:
        write = _parquet_writer(parts, state, count, task)
    write_bytes_atomic(output, write)


def _parquet_row(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if key == "probs":
            out["score"] = max(value.values()) if value else None
            out.update((f"prob_{name}", p) for name, p in value.items())
        elif key == "entities":
            out[key] = json.dumps(value, ensure_ascii=False, default=json_default)
        else:
            out[key] = value
    return out


def _parquet_writer(parts: Path, state: dict, count: int, task: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, None] = {}  # the CSV columns of every part, in order: probabilities as prob_<label>
    for index in range(count):
        columns.update(dict.fromkeys(state["chunks"][str(index)]["columns"]))
    lists = {"tokens", "tags", "gold"} if task == "token" else set()
    fields = []
    for name in columns:
        if name.startswith("prob_") and not any(f.name == "score" for f in fields):
            fields.append(pa.field("score", pa.float64()))  # the predicted label's probability, before prob_*
        kind = (pa.float64() if name.startswith("prob_") else pa.int64() if name == "row"
                else pa.list_(pa.float64()) if name == "scores" else pa.list_(pa.string()) if name in lists
                else pa.string())
        fields.append(pa.field(name, kind))
    schema = pa.schema(fields)

    def write(f) -> None:
        with pq.ParquetWriter(f, schema) as writer:
            for rows in _part_rows(parts, count):
                if rows:
                    writer.write_table(pa.Table.from_pylist([_parquet_row(r) for r in rows], schema=schema))
    return write


__all__ = ["StreamSummary", "iter_predictions", "predict_to_file", "predict_batches", "parse_shard"]
