"""The `lsllm` command: each command reads its options, calls one library function, prints the result."""
from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Label-supervised fine-tuning of decoder LLMs (LS-LLaMA / LS-unLLaMA) for classification "
                       "and token tagging.")


def _quiet() -> None:
    # transformers' own deprecation notices (is_gradient_checkpointing) are not the user's business.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


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


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config; flags override it."),
    model: Optional[str] = typer.Option(None, help="Alias, .gguf file, HF folder or hub id (default smollm2-135m)."),
    task: Optional[str] = typer.Option(None, help="seq or token."),
    train: Optional[str] = typer.Option(None, "--train", help="Training file."),
    validation: Optional[str] = typer.Option(None, help="Validation file (picks the best checkpoint)."),
    test: Optional[str] = typer.Option(None, help="Test file (scored once at the end)."),
    format: Optional[str] = typer.Option(None, help="csv, tsv, jsonl, json, parquet, conll or hf-disk."),
    text_column: Optional[str] = typer.Option(None, help="Text column (name or 0-based index)."),
    text_pair_column: Optional[str] = typer.Option(None, help="Second text column, joined with a separator."),
    label_column: Optional[str] = typer.Option(None, help="Label column (name or index)."),
    token_column: Optional[str] = typer.Option(None, help="CoNLL token column (default first)."),
    tag_column: Optional[str] = typer.Option(None, help="CoNLL tag column (default last)."),
    header: Optional[bool] = typer.Option(None, "--header/--no-header",
                                          help="CSV/TSV: the first row is (not) a header (default: detect)."),
    labels: Optional[str] = typer.Option(None, help="Comma-separated label names, in order."),
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional/--causal",
                                                 help="LS-un (unmasked) or LS (causal); default by task: "
                                                      "LS-un for token tasks, LS for sequence tasks."),
    pooling: Optional[str] = typer.Option(None, help="last, mean, max or first."),
    pool_over: Optional[str] = typer.Option(None, help="Pool hidden states (hidden) or per-token logits."),
    lora: Optional[str] = typer.Option(None, help="paper, all-linear or none (full fine-tuning)."),
    lora_rank: Optional[int] = typer.Option(None),
    epochs: Optional[float] = typer.Option(None),
    max_steps: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    grad_accum: Optional[int] = typer.Option(None, help="Gradient accumulation steps."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 5e-4 LoRA, 5e-5 full)."),
    max_length: Optional[int] = typer.Option(None),
    eval_every: Optional[int] = typer.Option(None, help="Validate every N optimizer steps."),
    early_stopping: Optional[int] = typer.Option(None, help="Stop after N validations without improvement."),
    class_weights: Optional[bool] = typer.Option(None, "--class-weights/--no-class-weights"),
    precision: Optional[str] = typer.Option(None, help="auto, bf16 or fp32."),
    seed: Optional[int] = typer.Option(None),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                           help="torch.compile each block: faster steps after a one-off compile."),
    method: Optional[str] = typer.Option(None, help="ls (default), zero-shot, few-shot or instruct (baselines)."),
    k_shot: Optional[int] = typer.Option(None, help="Few-shot examples per prompt (default 4)."),
    label_names: Optional[str] = typer.Option(None, help="Prompt names for labels: 0=bearish,1=bullish."),
    prompt_file: Optional[str] = typer.Option(None, help="YAML prompt settings (template, label_names, ...)."),
    prompt_mode: Optional[str] = typer.Option(None, help="score (log-likelihood of each label) or generate."),
    resume: bool = typer.Option(False, help="Continue a killed run from its last checkpoint."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Run folder to create."),
):
    """Train a classifier (seq) or tagger (token) and write a run folder."""
    _quiet()
    from lsllm.config import RunConfig
    from lsllm.training.loop import train as run_training

    with _user_errors():
        cfg = RunConfig.from_yaml(config) if config else RunConfig()
        overrides = {
            "data": dict(train=train, validation=validation, test=test, format=format, text_column=text_column,
                         text_pair_column=text_pair_column, label_column=label_column, token_column=token_column,
                         tag_column=tag_column, max_length=max_length, header=header,
                         labels=labels.split(",") if labels else None),
            "model": dict(model=model, task=task, bidirectional=bidirectional, pooling=pooling, pool_over=pool_over,
                          lora=lora, lora_rank=lora_rank),
            "train": dict(epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                          eval_every=eval_every, early_stopping=early_stopping, class_weights=class_weights,
                          precision=precision, seed=seed, compile=compile),
            "prompt": dict(k_shot=k_shot, label_names=label_names, file=prompt_file, mode=prompt_mode),
        }
        for section, values in overrides.items():
            for key, value in values.items():
                if value is not None:
                    setattr(getattr(cfg, section), key, value)
        if output:
            cfg.output = output
        if method:
            cfg.method = method
        result = run_training(cfg, resume=resume)
    if result.metrics:
        _print_summary(result.metrics)
        typer.echo(f"run folder: {result.run_dir}")


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
):
    """Score a trained model on a labelled file; print and write metrics."""
    _quiet()
    from lsllm.api import evaluate_run
    from lsllm.metrics import format_report

    with _user_errors():
        metrics, path = evaluate_run(run, data, split_name, format=format, text_column=text_column,
                                     text_pair_column=text_pair_column, label_column=label_column,
                                     token_column=token_column, tag_column=tag_column, header=header)
    typer.echo(format_report(metrics, metrics["task"]))
    typer.echo(f"metrics written to {path}")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder, model folder or merged export."),
    input: Optional[str] = typer.Option(None, "--input", "-i", help="File in any training format."),
    text: Optional[list[str]] = typer.Option(None, "--text", "-t", help="Raw text (repeatable)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write JSONL (or .csv) here."),
    format: Optional[str] = typer.Option(None),
    text_column: Optional[str] = typer.Option(None),
    text_pair_column: Optional[str] = typer.Option(None),
    token_column: Optional[str] = typer.Option(None),
    label_column: Optional[str] = typer.Option(None, help="Gold label column to keep beside predictions."),
    header: Optional[bool] = typer.Option(None, "--header/--no-header", help="CSV/TSV header (default: detect)."),
):
    """Predict labels (and probabilities) or tags (and entity spans)."""
    _quiet()
    from lsllm.predict import predict as run_predict

    if (input is None) == (text is None or len(text) == 0):
        _fail("pass exactly one of --input FILE or --text TEXT")
    columns = {k: v for k, v in dict(format=format, text_column=text_column, text_pair_column=text_pair_column,
                                      token_column=token_column, label_column=label_column,
                                      header=header).items() if v is not None}
    with _user_errors():
        rows = run_predict(run, texts=list(text) if text else None, input=input, output=output, **columns)
    if output:
        typer.echo(f"{len(rows)} predictions written to {output}")
    else:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run folder or model folder."),
    output: Path = typer.Option(..., "--output", "-o"),
    merge: bool = typer.Option(False, help="Merge LoRA into a plain transformers folder."),
    overwrite: bool = typer.Option(False, help="Replace OUTPUT if it is an earlier lsllm export (never other folders)."),
):
    """Copy the model, or merge LoRA into a folder that loads with transformers' AutoModelFor* classes."""
    _quiet()
    from lsllm.model.export import export_model
    from lsllm.predict import model_folder

    with _user_errors():
        out = export_model(model_folder(run), output, merge=merge, overwrite=overwrite)
    typer.echo(f"exported to {out}")


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
):
    """Train SmolLM2-135M (LS-un) on a bundled Twitter financial-news sample; print validation metrics."""
    _quiet()
    from lsllm.api import run_demo

    with _user_errors():
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
