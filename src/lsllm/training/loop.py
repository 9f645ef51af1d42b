"""`lsllm train`: read data -> build the method's model -> train with periodic validation -> test once -> reports.

One loop for every method: a method (LS in training/ls.py, instruction tuning in prompting/instruct.py,
zero-/few-shot prompting in prompting/run.py, which trains nothing) supplies its model, batches, validation
and saving; the loop owns steps, checkpoints, resume, early stopping, DDP and `log.jsonl`.

Reads top-down: `train()` checks every input before anything is written, trains in a run folder named
`<output>.incomplete` (where `--resume` finds its checkpoint), and renames it to `<output>` only when
everything is written. Runs unchanged under `torchrun` / `accelerate launch`, on one machine or several:
batches are sharded across ranks, gradients averaged by DDP, and only rank 0 reads and writes the run folder
(training/ranks.py sends the others what it read).
"""
from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm

from lsllm.config import RunConfig
from lsllm.data.encode import training_batches
from lsllm.data.labels import LabelSet, build_label_set, check_labels
from lsllm.data.readers import read_examples
from lsllm.files import output_lock, write_json_atomic, write_text_atomic
from lsllm.inference.precision import autocast_dtype
from lsllm.memory import limit_malloc_arenas, release_freed_memory
from lsllm.metrics import MAIN_METRIC
from lsllm.model.quantize import check_quantize
from lsllm.model.sources import first_line, resolve_source
from lsllm.training.autocompile import AutoCompile, fall_back_to_eager
from lsllm.training.checkpoint import CHECKPOINT, save_checkpoint
from lsllm.training.outputs import LOG, append_log, eval_record, write_final_reports
from lsllm.training.ranks import check_data_parallel, on_rank_zero, resume_from_rank_zero
from lsllm.training.resume import check_resume
from lsllm.training.run_folder import check_run_folders, finish_run_folder, fresh_work_folder, record_settings
from lsllm.training.step import TrainStep, make_optimizer
from lsllm.training.tracking import Reporter, check_reporter


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    """metrics.json's content (empty on ranks other than 0)."""
    model: object = None
    """With `train(..., keep_model=True)`: the in-memory model at the end of training (last step, not
    necessarily the best). None otherwise: it is freed before the final evaluation loads the best one."""


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


def make_method(config: RunConfig, splits: Splits, device: torch.device):
    """The method object the loop drives (see the module docstring)."""
    if config.method == "ls":
        from lsllm.training.ls import LSMethod

        return LSMethod(config, splits, device)
    if config.method == "instruct":
        from lsllm.prompting.instruct import InstructMethod

        return InstructMethod(config, splits, device)
    from lsllm.prompting.run import PromptMethod

    return PromptMethod(config, splits, device)


def train(config: RunConfig, resume: bool = False, progress: bool = True, keep_model: bool = False,
          on_validation=None) -> TrainResult:
    """Train and write the run folder. The whole run holds an exclusive lock on `config.output`, so a second
    process with the same output gets a clear error instead of mixing its files into this run.

    keep_model=True keeps the last step's model in memory for `TrainResult.model`; by default it is freed
    before the final evaluation loads the best saved model, so the two never occupy memory together.

    on_validation(step, value) is called on rank 0 after each validation with the main metric; returning True
    stops training there, as early stopping does (`lsllm tune` prunes trials with it)."""
    config.validate()
    output = Path(config.output)
    limit_malloc_arenas()  # see lsllm/memory.py: ~0.6 GB less peak RSS on SmolLM2-135M
    if not _rank_zero():  # torchrun/accelerate workers: rank 0 owns the folder
        return _train(config, output, resume, progress, keep_model, on_validation)
    with output_lock(output):
        return _train(config, output, resume, progress, keep_model, on_validation)


def _rank_zero() -> bool:
    """Rank 0 of a torchrun/accelerate launch (or a single process), known before accelerate starts."""
    return int(os.environ.get("RANK", "0")) == 0


def _train(config: RunConfig, output: Path, resume: bool, progress: bool, keep_model: bool,
           on_validation=None) -> TrainResult:
    work = output.with_name(output.name + ".incomplete")
    # cpu=True on machines without a GPU: accelerate then runs torchrun's processes as multi-CPU DDP (gloo).
    accelerator = Accelerator(cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()))
    device, writer = accelerator.device, accelerator.is_main_process
    check_data_parallel(accelerator)
    check_quantize(config.model.quantize, device)  # bitsandbytes missing: said before anything is written
    # Only rank 0 reads the run folder (other nodes may not see its disk); every rank refuses together.
    changes = on_rank_zero(accelerator, lambda: _check_folders(output, work, resume, config))
    splits = read_splits(config)
    resolve_source(config.model.model)  # an unknown model fails here, before anything is written

    method = make_method(config, splits, device)
    if writer:
        if resume:
            record_settings(work, config)  # check_resume allowed only the fields that may differ
        else:
            fresh_work_folder(work, config)
        method.record(work)
    reporter = Reporter(config.train.report_to, config, work, output) \
        if writer and config.train.report_to != "none" else None
    accelerator.wait_for_everyone()

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None, "stale": 0,
             "tokens": 0, "examples": 0, "train_time": 0.0, "log_lines": 0}
    if method.trains:
        state = fit(method, config, work, accelerator, state, resume, changes, progress, reporter, on_validation)

    if writer and method.trains and not (work / "model").is_dir():  # no validation split: keep the last weights
        method.save(work / "model")
    kept = getattr(method, "model", None) if keep_model else None
    if method.trains and not keep_model:
        _free_training_model(method, accelerator)

    metrics = {}
    if writer:
        # Validation and test are scored with the saved model loaded as `lsllm predict` loads it, so the
        # run's predictions match later ones.
        evaluate = method.load_best(work, device)
        metrics = write_final_reports(work, config, splits, evaluate, state, method.summary(device))
        if reporter is not None:
            reporter.finish(metrics)
        shutil.rmtree(work / CHECKPOINT, ignore_errors=True)
        finish_run_folder(work, output)
    accelerator.wait_for_everyone()
    return TrainResult(run_dir=output, metrics=metrics, model=kept)


def _check_folders(output: Path, work: Path, resume: bool, config: RunConfig) -> list[str]:
    check_reporter(config.train.report_to)
    check_run_folders(output, work, resume)
    return check_resume(work, config) if resume else []


def _free_training_model(method, accelerator) -> None:
    """Drop every reference to the trained model (the method's and the accelerator's prepared copy) so
    its weights are freed before the best model is loaded: otherwise the final evaluation held both
    (benchmarks/RESULTS.md, section 2)."""
    method.model = None
    accelerator.free_memory()
    release_freed_memory()


def fit(method, config: RunConfig, work: Path, accelerator, state: dict, resume: bool, changes: list,
        progress: bool, reporter=None, on_validation=None) -> dict:
    """Train `method.model` in place: steps, logging, validation with best-model saving, early stopping and
    checkpoints. Returns the loop's counters."""
    t = config.train
    writer, device, world = accelerator.is_main_process, accelerator.device, accelerator.num_processes
    model = method.model
    unit, size = config.batching()
    batches_per_epoch = (len(epoch_plan(method.lengths, config, 0)) // world if unit == "tokens"
                         else len(method.lengths) // (size * world)) or 1
    steps_per_epoch = max(1, batches_per_epoch // t.grad_accum)
    total_steps = t.max_steps or max(1, math.ceil(steps_per_epoch * t.epochs))
    # Counted within each epoch and rounded up, so the last one falls on the epoch's end (rounded down,
    # 1,185 steps / 2 validated at 592, 1,184 and again at the epoch end, 1,185).
    per_epoch = max(1, math.ceil(steps_per_epoch / t.evals_per_epoch)) if t.evals_per_epoch else None
    optimizer, scheduler, params = make_optimizer(model, config.learning_rate(), t.weight_decay, t.warmup_ratio,
                                                  total_steps)
    if resume:
        state = resume_from_rank_zero(accelerator, work, model, optimizer, scheduler) or state
        if writer:
            _truncate_log(work / LOG, state["log_lines"])
            if changes:
                state["log_lines"] += _log(work, {"type": "resume", "step": state["step"], "changes": changes}, True)
    ddp_model = accelerator.prepare(model)
    step = TrainStep(model, optimizer, scheduler, params, autocast_dtype(t.precision, device), t.max_grad_norm,
                     device, accelerator, ddp_model)

    compiling = AutoCompile(t.compile, method)
    bar = tqdm(total=total_steps, initial=state["step"], disable=not (writer and progress), desc="train",
               unit="step", dynamic_ncols=True)
    window_loss, window_tokens, window_time = 0.0, 0, 0.0
    stop = False
    model.train()
    while not stop and state["step"] < total_steps:
        # Same seed on every rank -> same batch list; each rank takes its own slice of it.
        epoch_batches = epoch_plan(method.lengths, config, state["epoch"])
        # Every rank the same number of batches (token-budget plans differ in length from epoch to epoch).
        usable = min(len(epoch_batches), batches_per_epoch * world) // world * world
        epoch_batches = epoch_batches[:usable][accelerator.process_index::world]
        while not stop and state["step"] < total_steps:
            start = time.perf_counter()
            group = epoch_batches[state["batch_in_epoch"]:state["batch_in_epoch"] + t.grad_accum]
            loss, tokens = _step(step, [method.batch(ids) for ids in group], compiling, work, state, writer,
                                 reporter)
            state["step"] += 1
            state["batch_in_epoch"] += len(group)
            state["examples"] = state.get("examples", 0) + sum(map(len, group)) * world  # older checkpoints lack it
            elapsed = time.perf_counter() - start  # training time only: evaluation is not counted
            state["train_time"] += elapsed
            window_time += elapsed
            window_loss += loss
            window_tokens += tokens
            bar.update(1)
            if (decision := compiling.observe(elapsed, total_steps - state["step"])) is not None:
                _compile_if_worth_it(method, compiling, decision, accelerator, work, state, reporter, bar)
            if state["step"] % t.log_every == 0 or state["step"] == total_steps:
                steps = state["step"] % t.log_every or t.log_every
                record = {"type": "train", "step": state["step"], "epoch": state["epoch"],
                          "loss": round(window_loss / steps, 5), "lr": scheduler.get_last_lr()[0],
                          "tokens_per_s": round(window_tokens * world / window_time, 1)}
                if device.type == "cuda":  # peak GPU memory so far, for sizing batches
                    record["cuda_max_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                state["tokens"] += window_tokens * world
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                state["log_lines"] += _log(work, record, writer, reporter)
                window_loss, window_tokens, window_time = 0.0, 0, 0.0
            epoch_end = state["batch_in_epoch"] + t.grad_accum > len(epoch_batches)
            periodic = (state["step"] % t.eval_every == 0 if t.eval_every
                        else per_epoch is not None and state["batch_in_epoch"] // t.grad_accum % per_epoch == 0)
            if epoch_end:  # the checkpoint must point at the next epoch's first batch
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
            due = periodic or epoch_end or state["step"] == total_steps
            if due:
                stop = (_validate(method, config, work, state, accelerator, bar, reporter, on_validation)
                        or state["step"] >= total_steps)
                if writer:
                    save_checkpoint(work, model, optimizer, scheduler, state)
                accelerator.wait_for_everyone()
            if epoch_end:
                break
    bar.close()
    return state


def _step(step: TrainStep, batches: list, compiling: AutoCompile, work: Path, state: dict, writer: bool,
          reporter) -> tuple[float, int]:
    """One optimizer step; if the compile this loop chose fails in it, the blocks go back to eager and the step
    runs again (the failed attempt raised before the optimizer moved)."""
    try:
        result = step(batches)
        compiling.first_step = False
        return result
    except Exception as err:  # noqa: BLE001 - only a compile this loop chose may fail quietly
        if not compiling.may_fall_back(err):
            raise
        fall_back_to_eager(step.model, err)
        state["log_lines"] += _log(work, {"type": "compile", "step": state["step"], "compiled": False,
                                          "failed": f"{type(err).__name__}: {first_line(err)}"}, writer, reporter)
        step.optimizer.zero_grad(set_to_none=True)
        return step(batches)


def _compile_if_worth_it(method, compiling: AutoCompile, decision: bool, accelerator, work: Path, state: dict,
                         reporter, bar) -> None:
    """`train.compile` unset: compile now if the eager steps timed so far say the rest of the run repays it
    (rank 0's timing decides for every rank). log.jsonl records the decision and the step time it rests on."""
    decision = [decision]
    broadcast_object_list(decision)
    if decision[0]:
        method.compile()
        compiling.chosen = compiling.first_step = True
    seconds = compiling.step_seconds()
    record = {"type": "compile", "step": state["step"], "compiled": decision[0], "eager_step_seconds": round(seconds, 3)}
    state["log_lines"] += _log(work, record, accelerator.is_main_process, reporter)
    if decision[0]:
        bar.write(f"step {state['step']}: compiling the transformer blocks (eager steps take {seconds:.2f} s; the "
                  "rest of the run repays the compile)")


def epoch_plan(lengths: list[int], config: RunConfig, epoch: int) -> list[list[int]]:
    """An epoch's batches (example indices): length-grouped, by token budget or by number of examples."""
    return training_batches(lengths, *config.batching(), seed=config.train.seed + epoch)


def _validate(method, config: RunConfig, work: Path, state: dict, accelerator, bar, reporter=None,
              on_validation=None) -> bool:
    """Score validation on rank 0, keep the best model; return True when early stopping says stop."""
    decision = [False]
    if accelerator.is_main_process and method.splits.validation is not None:
        main_metric = MAIN_METRIC[config.model.task]
        result = method.validate()
        value = result.metrics[main_metric]
        record = eval_record(state["step"], result, main_metric) | {
            "train_seconds": round(state["train_time"], 2), "examples": state.get("examples", 0)}
        state["log_lines"] += _log(work, record, True, reporter)
        loss = "" if result.loss is None else f" (loss {result.loss:.4f})"
        bar.write(f"step {state['step']}: validation {main_metric} {value:.4f}{loss}")
        if state["best"] is None or value > state["best"]:
            state.update(best=value, best_step=state["step"], stale=0)
            method.save(work / "model")
            write_json_atomic(work / "best_validation.json", {"step": state["step"], "metrics": result.metrics})
        else:
            state["stale"] += 1
        patience, target = config.train.early_stopping, config.train.target_metric
        decision = [bool(patience and state["stale"] >= patience) or (target is not None and value >= target)
                    or bool(on_validation and on_validation(state["step"], value))]
        method.model.train()
        release_freed_memory()  # validation batches' buffers, before training batches need memory again
    broadcast_object_list(decision)
    return decision[0]


def _log(work: Path, record: dict, writer: bool, reporter=None) -> int:
    if writer:
        append_log(work, record)
        if reporter is not None:  # --report-to: the same record to TensorBoard/MLflow/W&B
            reporter.log(record)
    return 1


def _truncate_log(path: Path, lines: int) -> None:
    """Drop log lines written after the checkpoint we resume from."""
    if path.is_file():
        kept = path.read_text(encoding="utf-8").splitlines()[:lines]
        write_text_atomic(path, "".join(line + "\n" for line in kept))
