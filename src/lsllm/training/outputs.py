"""The end of every run, whatever the method: validation and test scored once with the run's best model as
`lsllm predict` loads it, then metrics.json, report.txt, labels.txt, curves.png, confusion.png,
`<split>_predictions.jsonl` and the model card (model/README.md)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lsllm.files import write_json_atomic, write_text_atomic
from lsllm.inference.batched import Evaluation
from lsllm.inference.rows import prediction_rows
from lsllm.metrics import MAIN_METRIC, confusion, format_report
from lsllm.model.card import write_model_card
from lsllm.model.spec import SPEC_FILE
from lsllm.prompting.card import write_instruct_card
from lsllm.prompting.predictor import ADAPTER
from lsllm.report import plot_confusion, plot_curves
from lsllm.writers import write_predictions

LOG = "log.jsonl"


def write_final_reports(work: Path, config, splits, evaluate: Callable[[list], Evaluation], state: dict,
                        summary: dict) -> dict:
    """Score validation/test with `evaluate`, write the run's reports and predictions; return metrics.json's
    content. `summary` holds what the method adds (device, prompt settings, ...)."""
    task = config.model.task
    metrics: dict = {"task": task, "method": config.method, "main_metric": MAIN_METRIC[task],
                     "best_step": state["best_step"], "steps": state["step"], "train_examples": len(splits.train),
                     "train_tokens": state["tokens"], "train_time_s": round(state["train_time"], 2),
                     "labels": splits.labels.names, **summary}
    if torch.cuda.is_available():
        metrics["cuda_max_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    report = []
    confusion_source = None
    for name, examples in (("validation", splits.validation), ("test", splits.test)):
        if examples is None:
            continue
        start = time.perf_counter()
        result = evaluate(examples)
        metrics[name] = result.scores()
        metrics.setdefault("eval_seconds", {})[name] = round(time.perf_counter() - start, 1)
        invalid = "" if result.invalid is None else f", {result.invalid} invalid outputs"
        report.append(f"== {name} ({len(examples)} examples{invalid}) ==\n{format_report(result.metrics, task)}")
        write_predictions(work / f"{name}_predictions.jsonl", prediction_rows(examples, result, splits.labels))
        if name == "validation" and state["step"] == 0:  # no training: the model as it is is the best one
            _record_untrained_validation(work, result, MAIN_METRIC[task])
        if task == "seq":
            confusion_source = (name, [e.label for e in examples], result.predictions)
    if confusion_source is not None:
        name, gold, pred = confusion_source
        plot_confusion(confusion(gold, pred, splits.labels.names), splits.labels.names, work / "confusion.png")
        metrics["confusion_split"] = name
    write_json_atomic(work / "metrics.json", metrics)
    write_text_atomic(work / "report.txt", "\n\n".join(report) + "\n" if report else "no evaluation split\n")
    write_text_atomic(work / "labels.txt", "\n".join(splits.labels.names) + "\n")
    log = work / LOG
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.is_file() else []
    plot_curves(records, work / "curves.png")
    if (work / "model" / SPEC_FILE).is_file():
        write_model_card(work / "model", work)
    elif (work / ADAPTER).is_dir():  # instruction tuning; zero-/few-shot runs have no model/
        write_instruct_card(work)
    return metrics


def eval_record(step: int, result: Evaluation, main_metric: str) -> dict:
    """A validation record of log.jsonl (what curves.png plots)."""
    return {"type": "eval", "step": step, "split": "validation", "loss": result.loss,
            "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
            "main_metric": main_metric}


def append_log(work: Path, record: dict) -> None:
    with open(work / LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _record_untrained_validation(work: Path, result: Evaluation, main_metric: str) -> None:
    append_log(work, eval_record(0, result, main_metric))
    write_json_atomic(work / "best_validation.json", {"step": 0, "metrics": result.metrics})
