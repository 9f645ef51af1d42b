"""`lsllm train --method zero-shot|few-shot|instruct`: the paper's prompting baselines in the same harness.

zero-shot / few-shot change no weights; instruct first LoRA-tunes the causal LM on prompt -> label
text (loss on the answer only), with the same LoRA presets and budget controls as `ls`. Then the
model is prompted on the validation and test splits, and the run folder gets the same metrics.json,
report.txt, predictions and confusion.png as an LS run (plus model/adapter for instruct).
"""
from __future__ import annotations

import time
from pathlib import Path

from lsllm.config import RunConfig
from lsllm.metrics import MAIN_METRIC, confusion, format_report
from lsllm.model.build import load_tokenizer
from lsllm.model.sources import resolve_source
from lsllm.prompt_predict import load_causal_lm, prompt_autocast, save_prompt_run, score_outputs
from lsllm.prompting import (PromptConfig, few_shot_examples, load_prompt_config, parse_label_names,
                             predict_zero_shot)
from lsllm.files import write_json_atomic, write_text_atomic
from lsllm.report import plot_confusion
from lsllm.training.run_folder import finish_run_folder
from lsllm.writers import write_predictions


def run_prompting(config: RunConfig, splits, work: Path, output: Path) -> dict:
    """Score the prompting baseline on validation/test; write the run folder; return metrics."""

    p = config.prompt
    prompt = load_prompt_config(p.file) if p.file else PromptConfig()
    prompt.k_shot = p.k_shot if config.method == "few-shot" else 0
    prompt.seed = config.train.seed
    if p.label_names:
        prompt.label_names = parse_label_names(p.label_names)
    path = resolve_source(config.model.model)
    tokenizer = load_tokenizer(path)
    model = load_causal_lm(path).eval()  # safetensors only
    task = config.model.task
    work.mkdir(parents=True, exist_ok=True)
    steps = 0
    if config.method == "instruct":
        from lsllm.training.instruct import instruction_tune

        model, steps = instruction_tune(model, tokenizer, config, splits, prompt, work)
    metrics: dict = {"task": task, "method": config.method, "main_metric": MAIN_METRIC[task], "k_shot": prompt.k_shot,
                     "mode": p.mode, "labels": splits.labels.names, "train_examples": len(splits.train),
                     "steps": steps}
    report = []
    write_text_atomic(work / "config.yaml", config.to_yaml())
    shots = few_shot_examples(prompt, splits.train)
    save_prompt_run(work, config.method, config.model.model, task, splits.labels.names, prompt, p.mode, shots)
    for name, examples in (("validation", splits.validation), ("test", splits.test)):
        if examples is None:
            continue
        start = time.perf_counter()
        with prompt_autocast(model, config.train.precision):  # bf16 halves CPU time, log-softmax stays fp32
            out = predict_zero_shot(model, tokenizer, examples, splits.labels, prompt, mode=p.mode,
                                    batch_size=config.train.eval_batch_size, shots=shots)
        scores = score_outputs(task, examples, out, splits.labels)
        metrics[name] = {**scores, "invalid": out["invalid"], "seconds": round(time.perf_counter() - start, 1)}
        report.append(f"== {name} ({len(examples)} examples, {out['invalid']} invalid outputs) ==\n"
                      f"{format_report(scores, task)}")
        rows = []
        for i, example in enumerate(examples):
            row = ({"text": example.text, "label": out["predictions"][i], "gold": example.label} if task == "seq"
                   else {"tokens": example.tokens, "tags": out["predictions"][i], "gold": example.tags})
            if "probabilities" in out:
                row["probs"] = dict(zip(splits.labels.names, (round(x, 6) for x in out["probabilities"][i])))
            if "raw" in out:
                row["raw"] = out["raw"][i]
            rows.append(row)
        write_predictions(work / f"{name}_predictions.jsonl", rows)
        if task == "seq":
            plot_confusion(confusion([e.label for e in examples], out["predictions"], splits.labels.names),
                           splits.labels.names, work / "confusion.png")
    write_json_atomic(work / "metrics.json", metrics)
    write_text_atomic(work / "report.txt", "\n\n".join(report) + "\n")
    finish_run_folder(work, output)
    return metrics
