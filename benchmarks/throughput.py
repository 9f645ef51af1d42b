#!/usr/bin/env python
"""Throughput of the LS-LLaMA reference recipe against lsllm's defaults, side by side, on SmolLM2-135M.

    python benchmarks/throughput.py [--quick] [--steps N] [--accuracy] [--profile DIR] [--workloads NAME ...]
                                    [--variants NAME ...]
                                    [--out FILE.json]

Training variants (each runs in its own spawned process, so its peak memory is its own):
  reference  the original LS-LLaMA recipe on current transformers: every row padded/truncated to 64
             tokens, float32, eager attention, LoRA r12/a32/dropout 0.1 on q_proj,v_proj, random
             batches of 8, AdamW lr 1e-4 (weight decay 0.01, no warm-up, as in its Trainer setup)
  lsllm-batch8  the default before issue 13: as below, but 8 length-grouped sentences per batch
  lsllm      what `lsllm train` does by default: `ModelConfig` defaults, `encode` once, batches as
             `RunConfig.batching()` says (a 256-token budget: `token_budget_batches`), dynamic-padding
             `collate`, `autocast_dtype("auto")` autocast, AdamW with RunConfig's defaults
  lsllm-compile  the same with `--compile` (`compile_blocks`: torch.compile per transformer block),
             warmed up by one untimed pass over every batch (compiling each graph variant), whose
             time is reported
  lsllm-tokens  the default with `--batch-tokens 1024`: as many similar-length examples per batch as fit
             1,024 padded tokens
Token-budget variants draw their batches from a 4x larger sample (a step carries more sentences) and time
at most --steps of them.
All train on the same seeded sample for the same number of steps (the first few are warm-up and
untimed); tokens/s counts real (non-pad) tokens only. MFU is the matmul FLOPs the step actually
runs (pads included; FlopCounterMode, forward + backward) per second, over the best square matmul
measured in this run (best of 1024^3, 2048^3, 3072^3) in the variant's compute dtype.

Prediction: lsllm's inference path (`load_for_inference`, then `infer` over length-sorted batches)
against `transformers.pipeline("text-classification")` (batch 8) over the same merged export, on
SST-2 dev sentences.

--accuracy (ignored with --quick): every variant but lsllm-compile also trains one epoch over the same
1,600 examples (200 steps of 8) and scores a fixed validation sample, a guard that a faster variant
doesn't learn worse from the same examples. --variants picks which run (the first is the ratios' baseline).
--profile DIR: torch.profiler over lsllm's training step per workload; self CPU time by operator family
(matmul, attention, optimizer, casts, element-wise) and the top operators, in DIR/profile_<workload>.txt.
Data comes from ../shared/data (see its README); a missing data set is skipped with a message.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import multiprocessing
import os
import platform
import random
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from lsllm.config import ModelConfig, RunConfig
from lsllm.data.encode import IGNORE_INDEX, collate, encode, training_batches
from lsllm.data.labels import LabelSet, build_label_set
from lsllm.data.readers import read_examples
from lsllm.inference.batched import infer, predict_examples
from lsllm.inference.precision import autocast_dtype, cpu_matrix_flags, cpu_name
from lsllm.metrics import MAIN_METRIC
from lsllm.model.build import build_model, compile_blocks, save_model
from lsllm.model.export import export_model
from lsllm.model.sources import resolve_source
from lsllm.training.step import TrainStep, make_optimizer

MODEL = "smollm2-135m"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH = 8
REF_MAX_LENGTH = 64
REFERENCE = {"lr": 1e-4, "weight_decay": 0.01, "warmup_ratio": 0.0, "max_grad_norm": 1.0, "precision": "fp32",
             "max_length": REF_MAX_LENGTH}
VARIANTS = ("reference", "lsllm-batch8", "lsllm", "lsllm-compile", "lsllm-tokens")
BATCH_TOKENS = 1024
"""lsllm-tokens: `--batch-tokens 1024`, batches sized by padded tokens instead of 8 sentences."""


def batching(variant: str) -> tuple[str, int]:
    """("examples", n) or ("tokens", budget) of a variant; lsllm and lsllm-compile follow RunConfig."""
    if variant in ("reference", "lsllm-batch8"):
        return "examples", BATCH
    return ("tokens", BATCH_TOKENS) if variant == "lsllm-tokens" else RunConfig().batching()
ACCURACY_TRAIN, ACCURACY_EVAL = 1600, 500
QUICK_PREDICT = 64
THREADS_ENV = "LSLLM_BENCH_THREADS"


@dataclass(frozen=True)
class Workload:
    name: str
    task: str
    bidirectional: bool
    train: str
    validation: str


WORKLOADS = [
    Workload("sst2-causal", "seq", False, "sst2/train.tsv", "sst2/dev.tsv"),
    Workload("sst2-bidir", "seq", True, "sst2/train.tsv", "sst2/dev.tsv"),
    Workload("conll-bidir", "token", True, "conll2003/train.txt", "conll2003/valid.txt"),
]


def lsllm_recipe() -> dict:
    """`lsllm train`'s defaults, read from RunConfig so this benchmark follows them."""
    cfg = RunConfig()
    return {"lr": cfg.learning_rate(), "weight_decay": cfg.train.weight_decay, "warmup_ratio": cfg.train.warmup_ratio,
            "max_grad_norm": cfg.train.max_grad_norm, "precision": cfg.train.precision,
            "max_length": cfg.data.max_length}


# ---------------------------------------------------------------------------------------------
# setup


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 4 steps, tiny samples, no accuracy guard")
    p.add_argument("--steps", type=int, help="timed training steps per variant (default 40; 4 with --quick)")
    p.add_argument("--warmup", type=int,
                   help="untimed warm-up steps, also used to count FLOPs (default 3; 1 with --quick)")
    p.add_argument("--accuracy", action="store_true", help="also train 200 steps and score validation (slow)")
    p.add_argument("--workloads", nargs="*", choices=[w.name for w in WORKLOADS],
                   help="training workloads to run (default: all; none: prediction only)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="also profile lsllm's training step per workload (torch.profiler) into DIR")
    p.add_argument("--variants", nargs="*", choices=VARIANTS, default=list(VARIANTS),
                   help="training variants to compare (default: all; the first is the baseline of the ratios)")
    p.add_argument("--no-timing", action="store_true",
                   help="skip the timed training runs (with --accuracy / --profile: only those)")
    p.add_argument("--no-predict", action="store_true", help="skip the prediction benchmark")
    p.add_argument("--lengths", action="store_true",
                   help="also the length table: training tokens/s, MFU and peak RSS at 64-2048 tokens per kernel")
    p.add_argument("--time-to-accuracy", nargs="?", const="", metavar="ARGS",
                   help="also the time-to-accuracy table: runs benchmarks/time_to_accuracy.py with ARGS "
                        "(quoted; default: batch8 vs default on both targets)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"benchmark data folder (default {DEFAULT_DATA})")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: every core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write every number to this JSON file")
    args = p.parse_args()
    args.steps = args.steps or (4 if args.quick else 40)
    args.warmup = max(1, args.warmup or (1 if args.quick else 3))
    args.accuracy = args.accuracy and not args.quick
    os.environ[THREADS_ENV] = str(args.threads)  # spawned workers inherit the environment
    return args


def pick_device() -> torch.device:
    torch.set_num_threads(int(os.environ.get(THREADS_ENV, os.cpu_count())))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def machine_info(device: torch.device) -> dict:
    import peft
    import transformers

    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu_name(), "cpu_matrix_flags": sorted(cpu_matrix_flags()), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1m": round(os.getloadavg()[0], 2), "device": device.type,
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
            "autocast_dtype_auto": str(autocast_dtype("auto", device)), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, sizes=(1024, 2048, 3072), repeats: int = 8) -> float:
    """Best FLOP/s over square matmuls of a few sizes: the denominator of MFU.

    One size alone under-reads the peak on some CPUs (a 2048^3 float32 matmul ran slower than the
    model's own 512x576x1536 ones here), which would put MFU above 100%."""
    best_rate = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
        best = math.inf
        for _ in range(repeats + 1):  # the first call warms up; min() makes it harmless
            sync(device)
            start = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - start)
        best_rate = max(best_rate, 2 * n ** 3 / best)
    return best_rate


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load_samples(args, workload: Workload) -> dict | None:
    """Seeded samples of one workload; None (with a message) when its data is missing."""
    train_path, valid_path = args.data / workload.train, args.data / workload.validation
    for path in (train_path, valid_path):
        if not path.is_file():
            print(f"skipping {workload.name}: {path} not found (benchmark data lives in ../shared/data)")
            return None
    train = read_examples(train_path, workload.task)
    rng = random.Random(args.seed)
    n_throughput = (args.warmup + args.steps) * BATCH * 4  # token-budget batches carry more sentences
    sample = {"labels": build_label_set(workload.task, train).names,
              "throughput": rng.sample(train, min(n_throughput, len(train)))}
    if args.accuracy:
        valid = read_examples(valid_path, workload.task)
        sample["accuracy_train"] = random.Random(args.seed + 1).sample(train, min(ACCURACY_TRAIN, len(train)))
        sample["accuracy_eval"] = random.Random(args.seed + 2).sample(valid, min(ACCURACY_EVAL, len(valid)))
    return sample


def in_subprocess(fn, *args):
    """Run fn in a fresh spawned process: its ru_maxrss is then its own peak, not the parent's."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def worker_setup() -> torch.device:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per worker drowns the results
    warnings.filterwarnings("ignore", category=FutureWarning)
    device = pick_device()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return device


def worker_memory(device: torch.device) -> dict:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out = {"peak_rss_mib": rss / (2 ** 20 if sys.platform == "darwin" else 1024)}
    if device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


# ---------------------------------------------------------------------------------------------
# measure: training (runs inside a worker process)


def train_variant(job: dict) -> dict:
    """Train one variant on job["examples"]; time all but the warm-up steps, which count FLOPs."""
    device = worker_setup()
    workload, variant, labels = job["workload"], job["variant"], LabelSet(job["labels"])
    model, tokenizer, recipe = build_variant(variant, workload, labels.names, device)
    loaded_rss = worker_memory(device)["peak_rss_mib"]  # loading alone may set the peak; keep it apart
    get_batch, batches = batch_plan(variant, workload, job["examples"], tokenizer, labels, job["seed"])
    batches = batches[:job["steps"]]
    dtype = autocast_dtype(recipe["precision"], device)
    step = make_train_step(model, recipe, len(batches), device, dtype)

    flops, flop_tokens = count_flops(step, get_batch, batches[:job["warmup"]])
    compile_seconds = None
    if variant == "lsllm-compile":
        # FLOPs were counted eagerly above (same model, same FLOPs); now compile, and leave the compile
        # out of the timed steps but report it: it is what decides whether --compile pays.
        # Warm up on every timed batch once: each new graph variant (first block's input without grad,
        # a batch without padding passes no mask) compiles on first sight, which inside the timed
        # steps would measure compiling, not running.
        compile_blocks(model)
        start = time.perf_counter()
        for ids in batches:
            step(get_batch(ids))
        compile_seconds = time.perf_counter() - start
    real = padded = 0
    sync(device)
    start = time.perf_counter()
    for ids in batches[job["warmup"]:]:
        batch = get_batch(ids)
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
        step(batch)
    seconds = time.perf_counter() - start
    result = {"workload": workload.name, "variant": variant, "steps": len(batches) - job["warmup"],
              "warmup_steps": job["warmup"],
              "seconds": seconds, "real_tokens": real, "padded_tokens": padded,
              "flops_per_padded_token": flops / flop_tokens, "compute_dtype": str(dtype or torch.float32),
              "lora": model.spec.lora, "pooling": model.spec.pooling, "max_length": recipe["max_length"],
              "peak_rss_after_load_mib": loaded_rss, "compile_seconds": compile_seconds}
    if job.get("eval_examples"):
        evaluation = predict_examples(model, tokenizer, job["eval_examples"], labels, precision=recipe["precision"])
        result["metric_name"] = MAIN_METRIC[workload.task]
        result["metric"] = evaluation.metrics[result["metric_name"]]
    return result | worker_memory(device)


def build_variant(variant: str, workload: Workload, labels: list[str], device: torch.device):
    if variant == "reference":
        recipe = REFERENCE
        config = ModelConfig(model=MODEL, task=workload.task, bidirectional=workload.bidirectional, lora="paper",
                             attn_implementation="eager")
        model, tokenizer = build_model(config, labels, max_length=REF_MAX_LENGTH)
    else:
        recipe = lsllm_recipe()
        config = ModelConfig(model=MODEL, task=workload.task, bidirectional=workload.bidirectional)
        model, tokenizer = build_model(config, labels, max_length=recipe["max_length"],
                                       frozen_dtype=autocast_dtype(recipe["precision"], device))
    return model.to(device).train(), tokenizer, recipe


def batch_plan(variant: str, workload: Workload, examples: list, tokenizer, labels: LabelSet, seed: int):
    """(get_batch(ids) -> tensors, list of index batches). Building a batch is part of the timed step."""
    if variant == "reference":
        tensors = reference_tensors(workload, examples, tokenizer, labels)
        order = list(range(len(tensors["labels"])))
        random.Random(seed).shuffle(order)
        batches = [order[i:i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
        return (lambda ids: {k: v[ids] for k, v in tensors.items()}), batches
    features = encode(examples, workload.task, tokenizer, labels, lsllm_recipe()["max_length"])
    lengths = [len(f.input_ids) for f in features]
    batches = training_batches(lengths, *batching(variant), seed=seed)
    return (lambda ids: collate([features[i] for i in ids], tokenizer.pad_token_id)), batches


def reference_tensors(workload: Workload, examples: list, tokenizer, labels: LabelSet) -> dict[str, torch.Tensor]:
    """Every row padded/truncated to 64 tokens up front, as the paper's preprocessing did."""
    if workload.task == "seq":
        enc = tokenizer([e.text for e in examples], padding="max_length", max_length=REF_MAX_LENGTH,
                        truncation=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": torch.tensor([labels.index(e.label) for e in examples])}
    # Token labels need word alignment: take lsllm's aligned 64-token features (long sentences become
    # windows instead of being cut; rare in CoNLL) and pad them all to 64.
    batch = collate(encode(examples, "token", tokenizer, labels, REF_MAX_LENGTH), tokenizer.pad_token_id)
    extra = REF_MAX_LENGTH - batch["input_ids"].shape[1]
    return {"input_ids": F.pad(batch["input_ids"], (0, extra), value=tokenizer.pad_token_id),
            "attention_mask": F.pad(batch["attention_mask"], (0, extra), value=0),
            "labels": F.pad(batch["labels"], (0, extra), value=IGNORE_INDEX)}


def make_train_step(model, recipe: dict, total_steps: int, device: torch.device, dtype: torch.dtype | None):
    """lsllm's own optimizer step (`training/step.py`: forward under autocast, backward, clip, AdamW,
    schedule) on one batch; its loss `.item()` waits for the device, so wall time is honest on GPUs too."""
    optimizer, scheduler, params = make_optimizer(model, recipe["lr"], recipe["weight_decay"], recipe["warmup_ratio"],
                                                  total_steps)
    step = TrainStep(model, optimizer, scheduler, params, dtype, recipe["max_grad_norm"], device)
    return lambda batch: step([batch])[0]


def count_flops(step, get_batch, batches: list[list[int]]) -> tuple[int, int]:
    """Matmul FLOPs of the warm-up steps and their padded token count (FLOPs scale with padded tokens)."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS)
    tokens = 0
    with counter:
        for ids in batches:
            batch = get_batch(ids)
            tokens += batch["attention_mask"].numel()
            step(batch)
    return counter.get_total_flops(), tokens


# torch's FLOP registry knows the CUDA attention kernels but not the CPU one that SDPA uses here.
def _cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


CPU_SDPA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
                  torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward}


# ---------------------------------------------------------------------------------------------
# measure: prediction (each part runs inside a worker process)


def export_merged(folder: str) -> None:
    """An untrained LS model (causal, last pooling) merged into an AutoModelForSequenceClassification folder."""
    worker_setup()
    config = ModelConfig(model=MODEL, task="seq", bidirectional=False, pooling="last")
    model, tokenizer = build_model(config, ["0", "1"])
    save_model(model, tokenizer, Path(folder) / "run")
    export_model(Path(folder) / "run", Path(folder) / "merged", merge=True)


def predict_lsllm(folder: str, texts: list[str]) -> dict:
    """`lsllm predict`'s path: load_for_inference (merged, bf16 weights where autocast is bf16), then infer."""
    from lsllm.data.records import SeqExample
    from lsllm.predict import load_for_inference

    device = worker_setup()
    model, tokenizer = load_for_inference(folder, "auto", device.type)
    features = encode([SeqExample(text=t) for t in texts], "seq", tokenizer, None, model.spec.max_length)
    batch_size = RunConfig().train.eval_batch_size
    infer(model, features[:batch_size], tokenizer.pad_token_id, batch_size)  # warm-up
    start = time.perf_counter()
    result = infer(model, features, tokenizer.pad_token_id, batch_size)
    seconds = time.perf_counter() - start
    flops = untimed_flops(infer, model, features, tokenizer.pad_token_id, batch_size)
    return {"runner": "lsllm infer", "seconds": seconds, "real_tokens": sum(len(f.input_ids) for f in features),
            "flops": flops,
            "batch_size": batch_size, "compute_dtype": str(autocast_dtype("auto", device) or torch.float32),
            "predictions": [int(s.argmax()) for s in result.scores]} | worker_memory(device)


def untimed_flops(fn, *args) -> int:
    """Matmul FLOPs of fn(*args), run again untimed: counting slows it, so the timed run goes uncounted."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS)
    with counter:
        fn(*args)
    return counter.get_total_flops()


def predict_pipeline(folder: str, texts: list[str]) -> dict:
    from transformers import pipeline

    device = worker_setup()
    pipe = pipeline("text-classification", model=folder, device=device, batch_size=BATCH)
    pipe(texts[:2 * BATCH])  # warm-up
    start = time.perf_counter()
    outputs = pipe(texts)
    seconds = time.perf_counter() - start
    flops = untimed_flops(pipe, texts)
    label2id = pipe.model.config.label2id
    return {"runner": "transformers pipeline", "seconds": seconds, "flops": flops,
            "real_tokens": sum(len(ids) for ids in pipe.tokenizer(texts)["input_ids"]), "batch_size": BATCH,
            "compute_dtype": str(pipe.model.dtype),
            "predictions": [int(label2id[o["label"]]) for o in outputs]} | worker_memory(device)


def measure_prediction(args, peaks: dict) -> dict | None:
    dev = args.data / "sst2" / "dev.tsv"
    if not dev.is_file():
        print(f"skipping prediction: {dev} not found")
        return None
    texts = [e.text for e in read_examples(dev, "seq")]
    if args.quick:
        texts = random.Random(args.seed).sample(texts, QUICK_PREDICT)
    with tempfile.TemporaryDirectory(prefix="lsllm-bench-") as tmp:
        in_subprocess(export_merged, tmp)
        merged = str(Path(tmp) / "merged")
        pipe = in_subprocess(predict_pipeline, merged, texts)
        ours = in_subprocess(predict_lsllm, merged, texts)
    for r in (pipe, ours):
        r["mfu"] = r["flops"] / r["seconds"] / peaks["bfloat16" if "bfloat16" in r["compute_dtype"] else "float32"]
    agree = sum(a == b for a, b in zip(ours.pop("predictions"), pipe.pop("predictions"))) / len(texts)
    for r in (pipe, ours):
        r["tokens_per_s"] = r["real_tokens"] / r["seconds"]
        print(f"predict     {r['runner']:22} {r['tokens_per_s']:9.0f} real tok/s  ({len(texts)} sentences, "
              f"batch {r['batch_size']}, {r['compute_dtype']}, {r['seconds']:.1f}s)", flush=True)
    print(f"predict     same predictions on {agree:.1%} of sentences (untrained head; bf16 vs fp32 may flip near-ties)")
    return {"sentences": len(texts), "pipeline": pipe, "lsllm": ours, "agreement": agree,
            "ratio": ours["tokens_per_s"] / pipe["tokens_per_s"]}


def measure_training(args, workload: Workload, sample: dict, peaks: dict, accuracy: bool) -> list[dict]:
    rows = []
    # The accuracy guard skips lsllm-compile: compiling changes speed, not the function trained.
    variants = [v for v in args.variants if not (accuracy and v == "lsllm-compile")]
    for variant in variants:
        examples = sample["accuracy_train"] if accuracy else sample["throughput"]
        # Token-budget variants time as many of --steps as their batches of the sample allow. The accuracy
        # guard trains every variant one epoch over the same examples.
        timed = args.steps
        job = {"workload": workload, "variant": variant, "labels": sample["labels"], "examples": examples,
               "seed": args.seed, "warmup": args.warmup,
               "steps": len(examples) if accuracy else args.warmup + timed,
               "eval_examples": sample["accuracy_eval"] if accuracy else None}
        r = in_subprocess(train_variant, job)
        r["tokens_per_s"] = r["real_tokens"] / r["seconds"]
        r["pad_fraction"] = 1 - r["real_tokens"] / r["padded_tokens"]
        peak = peaks["bfloat16" if r["compute_dtype"] == "torch.bfloat16" else "float32"]
        r["mfu"] = r["flops_per_padded_token"] * r["padded_tokens"] / r["seconds"] / peak
        metric = f"  {r['metric_name']} {r['metric']:.4f}" if "metric" in r else ""
        print(f"{'accuracy ' if accuracy else ''}{workload.name:12} {variant:13} {r['tokens_per_s']:9.0f} real tok/s  "
              f"({r['steps']} steps, {r['seconds']:.1f}s, pad {r['pad_fraction']:.0%}, MFU {r['mfu']:.1%}, "
              f"RSS {r['peak_rss_mib']:.0f} MiB){metric}", flush=True)
        rows.append(r)
    for r in rows:
        r["ratio"] = r["tokens_per_s"] / rows[0]["tokens_per_s"]
    return rows


# ---------------------------------------------------------------------------------------------
# profile: where a training step's time goes (runs inside a worker process)

# Operator families by torch.profiler name; first match wins, the rest is "other".
OP_FAMILIES = [
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_weight_int")),
    ("attention (softmax, SDPA)", ("aten::_softmax", "aten::_scaled_dot", "aten::_flash", "aten::_efficient",
                                   "aten::_softmax_backward")),
    ("optimizer (AdamW, clipping)", ("aten::_foreach", "Optimizer.", "aten::_fused_adam", "aten::norm",
                                     "aten::linalg_vector_norm", "aten::clamp")),
    ("casts and copies", ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous",
                          "aten::cat", "aten::index")),
    ("element-wise (LoRA scale/add, norms, activations)", ("aten::mul", "aten::add", "aten::silu", "aten::rsqrt",
                                                          "aten::pow", "aten::mean", "aten::div", "aten::neg",
                                                          "aten::sub", "aten::sum", "aten::fill_", "aten::zero_",
                                                          "aten::native_dropout", "aten::where", "aten::exp",
                                                          "aten::sigmoid", "aten::threshold")),
]


def profile_variant(job: dict) -> dict:
    """Profile lsllm's training step: self CPU time per operator family, and the top operators."""
    from torch.profiler import ProfilerActivity, profile

    device = worker_setup()
    workload, labels = job["workload"], LabelSet(job["labels"])
    model, tokenizer, recipe = build_variant("lsllm", workload, labels.names, device)
    get_batch, batches = batch_plan("lsllm", workload, job["examples"], tokenizer, labels, job["seed"])
    batches = batches[:job["warmup"] + job["steps"]]
    step = make_train_step(model, recipe, len(batches), device, autocast_dtype(recipe["precision"], device))
    for ids in batches[:job["warmup"]]:
        step(get_batch(ids))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for ids in batches[job["warmup"]:]:
            step(get_batch(ids))
    wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    families: dict[str, float] = {}
    for e in events:
        family = next((name for name, prefixes in OP_FAMILIES if e.key.startswith(prefixes)), "other")
        families[family] = families.get(family, 0.0) + e.self_cpu_time_total / total
    return {"workload": workload.name, "steps": len(batches) - job["warmup"], "wall_s": wall,
            "families": dict(sorted(families.items(), key=lambda kv: -kv[1])),
            "calls_per_step": sum(e.count for e in events) / (len(batches) - job["warmup"]),
            "table": events.table(sort_by="self_cpu_time_total", row_limit=30)}


def measure_profile(args, workload: Workload, sample: dict) -> dict:
    job = {"workload": workload, "labels": sample["labels"], "examples": sample["throughput"], "seed": args.seed,
           "warmup": args.warmup, "steps": min(args.steps, 10)}
    r = in_subprocess(profile_variant, job)
    args.profile.mkdir(parents=True, exist_ok=True)
    path = args.profile / f"profile_{workload.name}.txt"
    shares = "\n".join(f"  {share:6.1%}  {family}" for family, share in r["families"].items())
    path.write_text(f"lsllm training step, {workload.name}: {r['steps']} profiled steps in {r['wall_s']:.1f} s "
                    f"({r['calls_per_step']:.0f} operator calls per step)\nself CPU time by operator family:\n"
                    f"{shares}\n\n{r['table']}\n")
    print(f"profile     {workload.name}: {r['wall_s'] / r['steps']:.2f} s/step, "
          f"{r['calls_per_step']:.0f} op calls/step; "
          + ", ".join(f"{family.split(' (')[0]} {share:.0%}" for family, share in r["families"].items())
          + f" -> {path}", flush=True)
    del r["table"]
    return r


# ---------------------------------------------------------------------------------------------
# report


def markdown_table(training: list[dict], prediction: dict | None, accuracy: list[dict]) -> str:
    """Speed table (baseline: the reference recipe for training rows, the pipeline for prediction), then
    the accuracy guard's table when it ran."""
    lines = []
    if training or prediction:
        lines += ["| workload | variant | real tok/s | x baseline | pad % | peak RSS MiB (after load) | MFU % |",
                  "|---|---|---:|---:|---:|---:|---:|"]
    for r in training:
        gpu = f" (GPU {r['cuda_peak_mib']:.0f})" if "cuda_peak_mib" in r else ""
        dtype = r["compute_dtype"].replace("torch.", "")
        compiled = f"; compile warm-up pass {r['compile_seconds']:.0f} s" if r.get("compile_seconds") else ""
        lines.append(f"| train {r['workload']} | {r['variant']} ({dtype}{compiled}) | "
                     f"{r['tokens_per_s']:.0f} | {r['ratio']:.2f} | {r['pad_fraction']:.0%} | "
                     f"{r['peak_rss_mib']:.0f} ({r['peak_rss_after_load_mib']:.0f}){gpu} | {r['mfu']:.1%} |")
    if prediction:
        for key, ratio in (("pipeline", 1.0), ("lsllm", prediction["ratio"])):
            r = prediction[key]
            gpu = f" (GPU {r['cuda_peak_mib']:.0f})" if "cuda_peak_mib" in r else ""
            mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"
            lines.append(f"| predict sst2-dev | {r['runner']} ({r['compute_dtype'].replace('torch.', '')}, "
                         f"batch {r['batch_size']}) | {r['tokens_per_s']:.0f} | {ratio:.2f} | - | "
                         f"{r['peak_rss_mib']:.0f}{gpu} | {mfu} |")
    if accuracy:
        lines += ["", f"Accuracy guard: each variant trained on the same {ACCURACY_TRAIN} examples (one epoch, "
                  f"batch {BATCH}), scored on the same {ACCURACY_EVAL} validation examples.", "",
                  "| workload | variant | steps | validation metric |", "|---|---|---:|---|"]
        lines += [f"| {r['workload']} | {r['variant']} | {r['steps'] + r['warmup_steps']} | "
                  f"{r['metric_name']} {r['metric']:.4f} |" for r in accuracy]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    device = pick_device()
    info = machine_info(device)
    print("# lsllm throughput benchmark\n")
    for key, value in info.items():
        print(f"- {key}: {value}")
    if info["load_average_1m"] > 0.5 and device.type == "cpu":
        print(f"\nWARNING: the machine is busy (load {info['load_average_1m']}). Threads competing for cores wait on "
              "each other: steps can be several times slower and the numbers are not trustworthy.\n")
    resolve_source(MODEL)  # convert the GGUF once here, not inside a measured worker
    peaks = {"float32": peak_matmul_flops(device, torch.float32)}
    # Without native bf16 (no AVX512-BF16/AMX) bf16 matmuls are emulated: minutes to time, and never used.
    native_bf16 = autocast_dtype("auto", device) == torch.bfloat16
    peaks["bfloat16"] = peak_matmul_flops(device, torch.bfloat16) if native_bf16 else float("nan")
    print(f"- peak square matmul (best of 1024, 2048, 3072): float32 {peaks['float32'] / 1e9:.0f} GFLOP/s, "
          + (f"bfloat16 {peaks['bfloat16'] / 1e9:.0f} GFLOP/s" if native_bf16 else "bfloat16 not native here"))
    print(f"- steps: {args.warmup} warm-up + {args.steps} timed per variant, batch {BATCH}, seed {args.seed}"
          f"{', quick' if args.quick else ''}\n", flush=True)

    workloads = [w for w in WORKLOADS if args.workloads is None or w.name in args.workloads]
    training, accuracy, profiles = [], [], []
    for workload in workloads:
        sample = load_samples(args, workload)
        if sample is None:
            continue
        if not args.no_timing:
            training += measure_training(args, workload, sample, peaks, accuracy=False)
        if args.accuracy:
            accuracy += measure_training(args, workload, sample, peaks, accuracy=True)
        if args.profile:
            profiles.append(measure_profile(args, workload, sample))
    prediction = None if args.no_predict else measure_prediction(args, peaks)
    length_rows = []
    if args.lengths:
        from lengths import length_table, measure_lengths

        length_rows = measure_lengths(args, peaks)
    time_to_accuracy = []
    if args.time_to_accuracy is not None:
        import shlex

        import time_to_accuracy as tta

        tta_args = tta.parse_args(shlex.split(args.time_to_accuracy) + ["--data", str(args.data)])
        time_to_accuracy = tta.measure(tta_args)
    if args.quick:
        print("accuracy guard skipped (--quick)")

    if args.out:
        report = {"machine": info, "peak_matmul_flops": peaks, "model": MODEL, "batch": BATCH,
                  "settings": {"steps": args.steps, "warmup": args.warmup, "quick": args.quick, "seed": args.seed,
                               "reference": REFERENCE, "lsllm": lsllm_recipe()},
                  "workloads": [asdict(w) for w in workloads], "training": training, "prediction": prediction,
                  "accuracy": accuracy, "profiles": profiles, "lengths": length_rows,
                  "time_to_accuracy": time_to_accuracy}
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    print()
    print(markdown_table(training, prediction, accuracy))
    if length_rows:
        print("\n" + length_table(length_rows))
    if time_to_accuracy:
        print("\n" + tta.table(time_to_accuracy))


if __name__ == "__main__":
    main()
