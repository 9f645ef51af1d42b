"""`lsllm train`: read data -> build model -> train with periodic validation -> test once -> reports.

Reads top-down: `train()` checks every input before anything is written, trains in a run folder
named `<output>.incomplete` (where `--resume` finds its checkpoint), and renames it to `<output>`
only when everything is written. Runs unchanged under `torchrun` / `accelerate launch`: batches
are sharded across ranks, gradients averaged by DDP, and only rank 0 writes.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from lsllm.config import RunConfig
from lsllm.data.encode import collate, encode, length_grouped_batches
from lsllm.data.labels import LabelSet, build_label_set, check_labels
from lsllm.data.readers import read_examples
from lsllm.errors import RunFolderError  # noqa: F401  (re-exported: its old home)
from lsllm.evaluate import autocast, autocast_dtype, predict_examples
from lsllm.files import output_lock, write_json_atomic, write_text_atomic
from lsllm.metrics import MAIN_METRIC
from lsllm.model.build import build_model, compile_blocks, save_model
from lsllm.model.sources import resolve_source
from lsllm.predict import load_for_inference
from lsllm.training.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from lsllm.training.outputs import write_final_reports
from lsllm.training.resume import check_resume
from lsllm.training.run_folder import check_run_folders, finish_run_folder, fresh_work_folder, record_settings



@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    """metrics.json's content (empty on ranks other than 0)."""
    model: object = None
    """The in-memory model at the end of training (last step, not necessarily the best)."""


@dataclass
class Splits:
    train: list
    validation: list | None
    test: list | None
    labels: LabelSet


def read_splits(config: RunConfig) -> Splits:
    """Read and check every split before any model work; bad input fails here, nothing written."""
    d, task = config.data, config.model.task

    def read(path):
        return None if not path else read_examples(
            path, task, format=d.format, text_column=d.text_column, text_pair_column=d.text_pair_column,
            label_column=d.label_column, token_column=d.token_column, tag_column=d.tag_column, header=d.header)

    train = read(d.train)
    labels = build_label_set(task, train, d.labels)
    validation, test = read(d.validation), read(d.test)
    for name, split in (("validation", validation), ("test", test)):
        if split is not None:
            check_labels(labels, split, name)
    return Splits(train, validation, test, labels)


def train(config: RunConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train and write the run folder. The whole run holds an exclusive lock on `config.output`, so a second
    process with the same output gets a clear error instead of mixing its files into this run."""
    config.validate()
    output = Path(config.output)
    if not _rank_zero():  # torchrun/accelerate workers: rank 0 owns the folder
        return _train(config, output, resume, progress)
    with output_lock(output):
        return _train(config, output, resume, progress)


def _rank_zero() -> bool:
    """Rank 0 of a torchrun/accelerate launch (or a single process), known before accelerate starts."""
    return int(os.environ.get("RANK", "0")) == 0


def _train(config: RunConfig, output: Path, resume: bool, progress: bool) -> TrainResult:
    work = output.with_name(output.name + ".incomplete")
    if _rank_zero():  # other ranks wait for rank 0's folder (accelerator barrier)
        check_run_folders(output, work, resume)
    changes = check_resume(work, config) if resume else []  # read-only: every rank refuses together
    splits = read_splits(config)
    resolve_source(config.model.model)  # an unknown model fails here, before anything is written
    if config.method in ("zero-shot", "few-shot", "instruct"):
        from lsllm.training.prompt_run import run_prompting

        fresh_work_folder(work, config)
        metrics = run_prompting(config, splits, work, output)
        return TrainResult(run_dir=output, metrics=metrics)

    # cpu=True on machines without a GPU: accelerate then runs torchrun's processes as multi-CPU DDP (gloo).
    accelerator = Accelerator(cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()))
    writer = accelerator.is_main_process
    if writer:
        if resume:
            record_settings(work, config)  # check_resume allowed only the fields that may differ
        else:
            fresh_work_folder(work, config)
    accelerator.wait_for_everyone()

    m, t = config.model, config.train
    model, tokenizer = build_model(
        m.model, m.task, splits.labels.names, bidirectional=m.bidirectional, pooling=m.pooling,
        pool_over=m.pool_over, lora=m.lora, lora_rank=m.lora_rank, lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout, lora_targets=m.lora_targets, dropout=m.dropout,
        max_length=config.data.max_length, label_all_subtokens=config.data.label_all_subtokens,
        attn_implementation=m.attn_implementation, seed=t.seed,
        frozen_dtype=autocast_dtype(t.precision, accelerator.device))
    if t.compile:
        compile_blocks(model)
    if t.class_weights and m.task == "seq":
        model.class_weights = _class_weights(splits.train, splits.labels)
    # Tokenize once; every epoch reuses these features.
    features = encode(splits.train, m.task, tokenizer, splits.labels, config.data.max_length,
                      config.data.label_all_subtokens)
    val_features = None if splits.validation is None else encode(
        splits.validation, m.task, tokenizer, splits.labels, config.data.max_length, config.data.label_all_subtokens)

    world = accelerator.num_processes
    batches_per_epoch = len(features) // (t.batch_size * world) or 1
    steps_per_epoch = max(1, batches_per_epoch // t.grad_accum)
    total_steps = t.max_steps or max(1, math.ceil(steps_per_epoch * t.epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate(), weight_decay=t.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None, "stale": 0,
             "tokens": 0, "train_time": 0.0, "log_lines": 0}
    if resume:
        state = load_checkpoint(work, model, optimizer, scheduler) or state
        if writer:
            _truncate_log(work / "log.jsonl", state["log_lines"])
            if changes:
                state["log_lines"] += _log(work, {"type": "resume", "step": state["step"], "changes": changes}, True)
    ddp_model = accelerator.prepare(model)
    device = accelerator.device
    dtype = autocast_dtype(t.precision, device)
    main_metric = MAIN_METRIC[m.task]

    bar = tqdm(total=total_steps, initial=state["step"], disable=not (writer and progress), desc="train",
               unit="step", dynamic_ncols=True)
    window_loss, window_tokens, window_time = 0.0, 0, 0.0
    stop = False
    model.train()
    while not stop and state["step"] < total_steps:
        # Same seed on every rank -> same batch list; each rank takes its own slice of it.
        epoch_batches = length_grouped_batches([len(f.input_ids) for f in features], t.batch_size,
                                               seed=t.seed + state["epoch"])
        epoch_batches = epoch_batches[:batches_per_epoch * world][accelerator.process_index::world]
        while not stop and state["step"] < total_steps:
            start = time.perf_counter()
            group = epoch_batches[state["batch_in_epoch"]:state["batch_in_epoch"] + t.grad_accum]
            loss_sum = 0.0
            for i, ids in enumerate(group):
                batch = {k: v.to(device) for k, v in collate([features[j] for j in ids], tokenizer.pad_token_id).items()}
                sync = i == len(group) - 1
                with (nullcontext() if sync else accelerator.no_sync(ddp_model)), autocast(device, dtype):
                    loss = ddp_model(**batch).loss / len(group)
                accelerator.backward(loss)
                loss_sum += loss.item()
                window_tokens += int(batch["attention_mask"].sum())
            if t.max_grad_norm:
                accelerator.clip_grad_norm_(params, t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["batch_in_epoch"] += len(group)
            state["train_time"] += time.perf_counter() - start
            window_time += time.perf_counter() - start  # training time only: evaluation is not counted
            window_loss += loss_sum
            bar.update(1)
            if state["step"] % t.log_every == 0 or state["step"] == total_steps:
                steps = state["step"] % t.log_every or t.log_every
                record = {"type": "train", "step": state["step"], "epoch": state["epoch"],
                          "loss": round(window_loss / steps, 5), "lr": scheduler.get_last_lr()[0],
                          "tokens_per_s": round(window_tokens * world / window_time, 1)}
                if device.type == "cuda":  # peak GPU memory so far, for sizing batches
                    record["cuda_max_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                state["tokens"] += window_tokens * world
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                state["log_lines"] += _log(work, record, writer)
                window_loss, window_tokens, window_time = 0.0, 0, 0.0
            epoch_end = state["batch_in_epoch"] + t.grad_accum > len(epoch_batches)
            if epoch_end:  # the checkpoint must point at the next epoch's first batch
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
            due = (t.eval_every and state["step"] % t.eval_every == 0) or epoch_end or state["step"] == total_steps
            if due:
                stop = _validate(config, model, tokenizer, splits, val_features, work, state, main_metric,
                                 accelerator, bar) or state["step"] >= total_steps
                if writer:
                    save_checkpoint(work, model, optimizer, scheduler, state)
                accelerator.wait_for_everyone()
            if epoch_end:
                break
    bar.close()

    metrics = {}
    if writer:
        if not (work / "model").is_dir():  # no validation split: keep the last weights
            save_model(model, tokenizer, work / "model")
        # Test is scored through the same path `lsllm predict` uses, so its predictions match later ones.
        best, _ = load_for_inference(work / "model", t.precision, str(device))
        metrics = write_final_reports(work, config, splits, best, tokenizer, state)
        shutil.rmtree(work / CHECKPOINT, ignore_errors=True)
        finish_run_folder(work, output)
    accelerator.wait_for_everyone()
    return TrainResult(run_dir=output, metrics=metrics, model=model)


def _validate(config, model, tokenizer, splits, val_features, work, state, main_metric, accelerator, bar) -> bool:
    """Score validation on rank 0, keep the best model; return True when early stopping says stop."""
    decision = [False]
    if accelerator.is_main_process and splits.validation is not None:
        result = predict_examples(model, tokenizer, splits.validation, splits.labels,
                                  batch_size=config.train.eval_batch_size, precision=config.train.precision,
                                  features=val_features)
        value = result.metrics[main_metric]
        record = {"type": "eval", "step": state["step"], "split": "validation", "loss": result.loss,
                  "metrics": _headline(result.metrics), "main_metric": main_metric}
        state["log_lines"] += _log(work, record, True)
        bar.write(f"step {state['step']}: validation {main_metric} {value:.4f} (loss {result.loss:.4f})")
        if state["best"] is None or value > state["best"]:
            state.update(best=value, best_step=state["step"], stale=0)
            save_model(model, tokenizer, work / "model")
            write_json_atomic(work / "best_validation.json", {"step": state["step"], "metrics": result.metrics})
        else:
            state["stale"] += 1
        patience = config.train.early_stopping
        decision = [bool(patience and state["stale"] >= patience)]
        model.train()
    broadcast_object_list(decision)
    return decision[0]


def _headline(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _log(work: Path, record: dict, writer: bool) -> int:
    if writer:
        with open(work / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return 1


def _truncate_log(path: Path, lines: int) -> None:
    """Drop log lines written after the checkpoint we resume from."""
    if path.is_file():
        kept = path.read_text(encoding="utf-8").splitlines()[:lines]
        write_text_atomic(path, "".join(line + "\n" for line in kept))


def _class_weights(examples, labels: LabelSet) -> torch.Tensor:
    counts = Counter(e.label for e in examples)
    freq = torch.tensor([counts.get(name, 0) for name in labels.names], dtype=torch.float32).clamp(min=1)
    return freq.sum() / (len(freq) * freq)

