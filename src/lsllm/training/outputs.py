"""The end of a run: test scored once with the best model, metrics, reports, plots, predictions."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from lsllm.evaluate import predict_examples
from lsllm.metrics import MAIN_METRIC, confusion, format_report
from lsllm.predict import prediction_rows
from lsllm.files import write_json_atomic, write_text_atomic
from lsllm.report import plot_confusion, plot_curves
from lsllm.writers import write_predictions


def write_final_reports(work: Path, config, splits, model, tokenizer, state: dict) -> dict:
    """Write metrics.json, report.txt, curves.png, confusion.png, *_predictions.jsonl; return the metrics."""
    task = config.model.task
    batch, precision = config.train.eval_batch_size, config.train.precision
    metrics: dict = {"task": task, "main_metric": MAIN_METRIC[task], "best_step": state["best_step"],
                     "steps": state["step"], "train_examples": len(splits.train),
                     "train_tokens": state["tokens"], "train_time_s": round(state["train_time"], 2),
                     "labels": splits.labels.names, "device": str(next(model.parameters()).device)}
    if torch.cuda.is_available():
        metrics["cuda_max_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    report = []
    confusion_source = None
    for name, examples in (("validation", splits.validation), ("test", splits.test)):
        if examples is None:
            continue
        result = predict_examples(model, tokenizer, examples, splits.labels, batch, precision)
        metrics[name] = {**result.metrics, "loss": result.loss}
        report.append(f"== {name} ({len(examples)} examples) ==\n{format_report(result.metrics, task)}")
        write_predictions(work / f"{name}_predictions.jsonl", prediction_rows(examples, result, splits.labels))
        if task == "seq":
            confusion_source = (name, [e.label for e in examples], result.predictions)
    write_json_atomic(work / "metrics.json", metrics)
    write_text_atomic(work / "report.txt", "\n\n".join(report) + "\n" if report else "no evaluation split\n")
    write_text_atomic(work / "labels.txt", "\n".join(splits.labels.names) + "\n")
    log = work / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    plot_curves(records, work / "curves.png")
    if confusion_source is not None:
        name, gold, pred = confusion_source
        plot_confusion(confusion(gold, pred, splits.labels.names), splits.labels.names, work / "confusion.png")
        metrics["confusion_split"] = name
        write_json_atomic(work / "metrics.json", metrics)
    return metrics
