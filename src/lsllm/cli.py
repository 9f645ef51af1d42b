"""The `lsllm` command: each command reads its options, calls one library function, prints the result."""
from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from lsllm.config import RunConfig
from lsllm.options import OPTIONS, config_from_options

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Label-supervised fine-tuning of decoder LLMs (LS-LLaMA / LS-unLLaMA) for classification "
                       "and token tagging.")


@contextmanager
def _quiet(verbose: bool = False):
    """Only lsllm's own lines on the terminal unless --verbose: library warnings (transformers'
    `is_gradient_checkpointing` FutureWarning, raised when PEFT wraps or loads an adapter), library logging
    and library progress bars (transformers' "Loading weights" and "Writing model shards") are hidden."""
    if verbose:
        yield
        return
    import transformers.utils.logging as hf_logging

    bars, disabled = hf_logging.is_progress_bar_enabled(), logging.root.manager.disable
    hf_logging.disable_progress_bar()  # transformers' tqdm and huggingface_hub's
    logging.disable(logging.WARNING)  # every library logger (transformers, peft, accelerate, torch); errors pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"lsllm(\.|$)")  # never lsllm's own
            yield
    finally:
        logging.disable(disabled)
        if bars:
            hf_logging.enable_progress_bar()


VERBOSE = typer.Option(False, "--verbose", help="Show the libraries' warnings, logging and progress bars too.")


def _fail(message: object) -> None:
    # One line, whatever the message: multi-line errors break log parsers and the README's promise.
    text = " ".join(str(message).split())
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@contextmanager
def _user_errors():
    """Every failure a user can cause or fix becomes one `error:` line and exit code 2."""
    from lsllm.errors import LsllmError

    try:
        yield
    except LsllmError as err:
        _fail(err)
    except OSError as err:  # the disk: read-only, full, missing permission, a file vanished
        where = f"{err.filename}: " if err.filename else ""
        _fail(f"{where}{err.strerror or err}")
    except MemoryError:
        _fail("out of memory; lower --batch-size or --max-length")
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        raise typer.Exit(130)
    except typer.Exit:
        raise
    except Exception as err:  # a bug: still one line, with the way to the traceback
        if os.environ.get("LSLLM_DEBUG"):
            raise
        _fail(f"unexpected {type(err).__name__}: {err} (this is a bug in lsllm; rerun with LSLLM_DEBUG=1 "
              "for the traceback and report it)")


def train(**params):
    """Train a classifier (seq) or tagger (token) and write a run folder."""
    resume, verbose, config = params.pop("resume"), params.pop("verbose"), params.pop("config")
    with _quiet(verbose), _user_errors():
        from lsllm.training.loop import train as run_training

        result = run_training(config_from_options(params, config), resume=resume)
    if result.metrics:
        _print_summary(result.metrics)
        typer.echo(f"run folder: {result.run_dir}")


def _train_signature() -> inspect.Signature:
    """`train`'s parameters, one option per config field (lsllm.options.OPTIONS), for typer to read. Every
    option defaults to None, so only the flags given override the YAML file's values."""
    param = functools.partial(inspect.Parameter, kind=inspect.Parameter.KEYWORD_ONLY)
    panels = {"data": "Data", "model": "Model", "train": "Training", "prompt": "Prompting baselines (--method)"}
    params = [param("config", annotation=Optional[Path],
                    default=typer.Argument(None, help="YAML config; flags override it.", show_default=False))]
    for o in OPTIONS:
        shown = ("on" if o.default else "off") if o.kind is bool else o.default
        shown = "" if o.default is None else f" (default: {shown})"
        params.append(param(o.name, annotation=Optional[o.kind], default=typer.Option(
            None, *o.flags, help=o.help + shown, show_default=False,
            rich_help_panel=panels.get(o.path.split(".")[0], "Run"))))
    params += [param("resume", annotation=bool,
                     default=typer.Option(False, help="Continue a killed run from its last checkpoint.",
                                          rich_help_panel="Run")),
               param("verbose", annotation=bool, default=VERBOSE)]
    return inspect.Signature(params)


train.__signature__ = _train_signature()
app.command()(train)


def train_config(argv: list[str]) -> RunConfig:
    """The RunConfig `lsllm train ARGV` would run, read as the command reads it, without running it."""
    command = typer.main.get_command(app).get_command(None, "train")
    with command.make_context("train", [str(a) for a in argv]) as ctx:
        params = dict(ctx.params)
    return config_from_options({k: v for k, v in params.items() if k not in ("config", "resume", "verbose")},
                                  params["config"])


def _print_summary(metrics: dict) -> None:
    main = metrics["main_metric"]
    for split in ("validation", "test"):
        if split in metrics:
            typer.echo(f"{split}: {main} {metrics[split][main]:.4f}"
                       + (f", macro-F1 {metrics[split]['macro_f1']:.4f}" if "macro_f1" in metrics[split] else "")
                       + (f", invalid outputs {metrics[split]['invalid']}" if "invalid" in metrics[split] else ""))


@app.command()
def eval(
    run: Path = typer.Argument(..., help="Run folder (or model folder)."),
    data: str = typer.Option(..., help="Labelled file to score."),
    split_name: str = typer.Option("test", help="Name used in the metrics file."),
    format: Optional[str] = typer.Option(None),
    text_column: Optional[str] = typer.Option(None),
    text_pair_column: Optional[str] = typer.Option(None),
    label_column: Optional[str] = typer.Option(None),
    token_column: Optional[str] = typer.Option(None),
    tag_column: Optional[str] = typer.Option(None),
    header: Optional[bool] = typer.Option(None, "--header/--no-header", help="CSV/TSV header (default: detect)."),
    verbose: bool = VERBOSE,
):
    """Score a trained model on a labelled file; print and write metrics."""
    from lsllm.evaluate import evaluate_run
    from lsllm.metrics import format_report

    with _quiet(verbose), _user_errors():
        metrics, path = evaluate_run(run, data, split_name, format=format, text_column=text_column,
                                     text_pair_column=text_pair_column, label_column=label_column,
                                     token_column=token_column, tag_column=tag_column, header=header)
    typer.echo(format_report(metrics, metrics["task"]))
    typer.echo(f"metrics written to {path}")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder, model folder, merged or ONNX export."),
    input: Optional[str] = typer.Option(None, "--input", "-i", help="File in any training format, of any size."),
    text: Optional[list[str]] = typer.Option(None, "--text", "-t", help="Raw text (repeatable)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write .jsonl, .csv or .parquet here."),
    resume: bool = typer.Option(False, help="Go on from where an interrupted --input run stopped (OUTPUT.parts)."),
    shard: Optional[str] = typer.Option(None, help="Predict shard i of N (i/N, 0-based): rows whose index % N == i."),
    chunk_rows: int = typer.Option(1000, min=1, help="Rows read, predicted and written at a time (--input)."),
    engine: str = typer.Option("local", help="local, or ray: Ray Data actors write OUTPUT as a folder of Parquet shards."),
    workers: Optional[int] = typer.Option(None, min=1, help="--engine ray: predictor actors (default: one per CPU)."),
    address: Optional[str] = typer.Option(None, help="--engine ray: join this Ray cluster (default: start a local one)."),
    format: Optional[str] = typer.Option(None),
    text_column: Optional[str] = typer.Option(None),
    text_pair_column: Optional[str] = typer.Option(None),
    token_column: Optional[str] = typer.Option(None),
    label_column: Optional[str] = typer.Option(None, help="Gold label column to keep beside predictions."),
    header: Optional[bool] = typer.Option(None, "--header/--no-header", help="CSV/TSV header (default: detect)."),
    verbose: bool = VERBOSE,
):
    """Predict labels (and probabilities) or tags (and entity spans). An --input file is read, predicted and
    written chunk by chunk: memory stays flat, and a killed run goes on with --resume."""
    from lsllm.predict import predict as run_predict
    from lsllm.streaming import iter_predictions, predict_to_file

    if (input is None) == (text is None or len(text) == 0):
        _fail("pass exactly one of --input FILE or --text TEXT")
    if input is None and (resume or shard):
        _fail("--resume and --shard are for --input FILE")
    if resume and not output:
        _fail("--resume needs --output (the file an interrupted run was writing)")
    if engine not in ("local", "ray"):
        _fail(f"--engine {engine!r}: use local or ray")
    if engine == "ray" and (input is None or output is None or resume or shard):
        _fail("--engine ray takes --input FILE and --output FOLDER (no --resume or --shard: Ray retries and splits)")
    if engine == "local" and (workers or address):
        _fail("--workers and --address are for --engine ray")
    columns = {k: v for k, v in dict(format=format, text_column=text_column, text_pair_column=text_pair_column,
                                      token_column=token_column, label_column=label_column,
                                      header=header).items() if v is not None}
    with _quiet(verbose), _user_errors():
        if input is None:
            rows = run_predict(run, texts=list(text), output=output)
            if output:
                typer.echo(f"{len(rows)} predictions written to {output}")
            else:
                for row in rows:
                    typer.echo(json.dumps(row, ensure_ascii=False))
        elif engine == "ray":
            from lsllm.ray_predict import predict_on_ray

            done = predict_on_ray(run, input, output, workers=workers, address=address, **columns)
            typer.echo(f"{done.rows} predictions written to {output} ({done.files} Parquet files, {done.workers} "
                       "Ray workers)")
        elif output:
            summary = predict_to_file(run, input, output, resume=resume, shard=shard, chunk_rows=chunk_rows,
                                      progress=verbose or sys.stderr.isatty(), **columns)
            reused = f" ({summary.reused_chunks} of {summary.chunks} chunks from the interrupted run)" if resume else ""
            typer.echo(f"{summary.rows} predictions written to {output}{reused}")
        else:
            for rows in iter_predictions(run, input, shard=shard, chunk_rows=chunk_rows, **columns):
                for row in rows:
                    typer.echo(json.dumps(row, ensure_ascii=False, default=str))


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run folder or model folder."),
    output: Path = typer.Option(..., "--output", "-o"),
    merge: bool = typer.Option(False, help="Merge LoRA into a plain transformers folder."),
    format: str = typer.Option("hf", "--format", help="hf (PyTorch weights) or onnx (one merged graph for onnxruntime)."),
    int8: bool = typer.Option(False, "--int8", help="--format onnx: int8 weights (dynamic quantization) for CPUs."),
    overwrite: bool = typer.Option(False, help="Replace OUTPUT if it is an earlier lsllm export (never other folders)."),
    push_to_hub: Optional[str] = typer.Option(None, help="Then upload OUTPUT to this hub model repo (user/name)."),
    private: bool = typer.Option(False, help="With --push-to-hub: create the repository as private."),
    verbose: bool = VERBOSE,
):
    """Copy the model, merge LoRA into a folder that loads with transformers' AutoModelFor* classes, or export
    it to ONNX for onnxruntime (`lsllm predict`, `eval` and `serve` run that folder on the CPU)."""
    from lsllm.model.export import export_model, push_to_hub as upload
    from lsllm.inference.loading import model_folder

    with _quiet(verbose), _user_errors():
        out = export_model(model_folder(run), output, merge=merge, overwrite=overwrite, format=format, int8=int8)
    typer.echo(f"exported to {out}")
    if push_to_hub:
        with _quiet(verbose), _user_errors():
            url = upload(out, push_to_hub, private=private)
        typer.echo(f"uploaded to {url}")


@app.command()
def tune(
    config: Path = typer.Argument(..., help="lsllm train YAML plus an optional `tune:` search space."),
    output: Path = typer.Option(..., "--output", "-o", help="Tuning folder (trials/, tune.db, best.yaml, reports)."),
    trials: int = typer.Option(12, min=1, help="Finished (complete or pruned) trials the study should hold."),
    timeout: Optional[float] = typer.Option(None, min=1, help="Start no new trial after this many seconds."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite in OUTPUT/tune.db)."),
    retrain: bool = typer.Option(False, help="Then train the best settings on train + validation (OUTPUT/retrained)."),
    verbose: bool = VERBOSE,
):
    """Search settings with Optuna: every trial is a run folder; run again after a kill to continue."""
    from lsllm.tune import gain_line, tune as run_tune

    with _quiet(verbose), _user_errors():
        study = run_tune(config, output, trials, timeout=timeout, storage=storage, retrain=retrain)
    states = [t.state.name.lower() for t in study.trials]
    typer.echo(f"{len(states)} trials: " + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))))
    if (output / "best.yaml").is_file():
        best = study.best_trial
        typer.echo(f"best: trial {best.number}, validation {best.value:.4f}, {best.params}; config in "
                   f"{output / 'best.yaml'}")
        gain = gain_line(study)
        if gain:
            typer.echo(gain)
    if retrain and (output / "retrained" / "metrics.json").is_file():
        test = json.loads((output / "retrained" / "metrics.json").read_text(encoding="utf-8")).get("test")
        typer.echo(f"retrained on train + validation: {output / 'retrained'}"
                   + (f"; test {', '.join(f'{k} {v:.4f}' for k, v in test.items() if isinstance(v, float))}"
                      if isinstance(test, dict) else ""))


@app.command()
def serve(
    run: Path = typer.Argument(..., help="Run folder, model folder or merged export (any `lsllm predict` takes)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8080, min=0, max=65535),
    api_key: Optional[str] = typer.Option(None, envvar="LSLLM_API_KEY", show_envvar=True,
                                          help="Require 'Authorization: Bearer KEY' (all routes but / and /health)."),
    max_batch_tokens: int = typer.Option(8192, min=1, help="Padded tokens per model batch."),
    max_batch_size: int = typer.Option(32, min=1, help="Texts per model batch."),
    batch_wait_ms: float = typer.Option(5.0, min=0, help="How long a text may wait for others to batch with."),
    max_concurrent_requests: int = typer.Option(512, min=1, help="Queued requests before 429."),
    max_input_tokens: Optional[int] = typer.Option(
        None, min=1, help="Longest input without truncation (default: the model's max length; token runs: 64x)."),
    max_client_batch_size: int = typer.Option(256, min=1, help="Inputs per request before 413."),
    pass_overhead_tokens: Optional[float] = typer.Option(
        None, min=0, help="What one more forward pass costs in padded tokens (default: measured at start-up)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 (default: cuda if available)."),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32."),
    verbose: bool = VERBOSE,
):
    """Serve a trained run over HTTP: /predict (TEI), /classify (vLLM), /tag, /info, /metrics and a page at /."""
    from lsllm.serve import ServeLimits
    from lsllm.serve import serve as run_server

    if precision not in ("auto", "bf16", "fp32"):
        _fail(f"--precision must be auto, bf16 or fp32, not {precision!r}")
    limits = ServeLimits(max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size,
                         batch_wait_ms=batch_wait_ms, max_concurrent_requests=max_concurrent_requests,
                         max_input_tokens=max_input_tokens, max_client_batch_size=max_client_batch_size,
                         pass_overhead_tokens=pass_overhead_tokens)

    def ready(model):
        typer.echo(f"serving {model.name} ({model.task}: {', '.join(model.labels[:8])}"
                   f"{', ...' if len(model.labels) > 8 else ''}) on http://{host}:{port}", err=True)

    with _quiet(verbose), _user_errors():
        from lsllm.serve import check_port
        from lsllm.serve.model import check_servable

        check_servable(run)
        check_port(host, port)
        typer.echo(f"loading {run} on http://{host}:{port} (answers 503 until ready)", err=True)
        run_server(run, host=host, port=port, api_key=api_key or None, limits=limits, device=device,
                   precision=precision, on_ready=ready)


@app.command()
def models():
    """List built-in model aliases and whether each is installed."""
    from lsllm.model.sources import list_models

    for m in list_models():
        status = "installed" if m["installed"] else f"not installed: {m['install']}"
        typer.echo(f"{m['alias']:<14} {m['kind']:<8} {m['description']}  [{status}]")


@app.command()
def demo(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o"),
    max_steps: Optional[int] = typer.Option(None, help="Shorten the demo (default: one epoch)."),
    verbose: bool = VERBOSE,
):
    """Train SmolLM2-135M (LS-un) on a bundled Twitter financial-news sample; print validation metrics."""
    from lsllm.demo import run_demo

    with _quiet(verbose), _user_errors():
        metrics, run = run_demo(output, max_steps=max_steps)
    _print_summary(metrics)
    typer.echo(f"majority-class baseline: accuracy {metrics['majority_baseline']:.4f}")
    typer.echo(f"run folder: {run}")


def _click_exceptions():
    try:  # typer >= 0.2x carries its own copy of click
        from typer._click import exceptions
    except ImportError:  # pragma: no cover
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> int:
    """The `lsllm` entry point: usage errors too become one `error:` line (exit 2), not a box of help."""
    exc = _click_exceptions()
    try:
        code = app(args=argv, prog_name="lsllm", standalone_mode=False)
    except exc.NoArgsIsHelpError as err:
        typer.echo(err.format_message())
        return 0
    except exc.UsageError as err:
        hint = f" (see: {err.ctx.command_path} --help)" if err.ctx is not None else ""
        typer.secho(f"error: {' '.join(err.format_message().split())}{hint}", fg=typer.colors.RED, err=True)
        return 2
    except exc.ClickException as err:
        typer.secho(f"error: {' '.join(err.format_message().split())}", fg=typer.colors.RED, err=True)
        return 2
    except typer.Abort:
        typer.secho("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
