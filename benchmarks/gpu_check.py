"""One command for a lent GPU (H100/H200): is lsllm's GPU path right, and how fast is it?

    PYTHONPATH=src python benchmarks/gpu_check.py --out gpu_check.json     # ~5-8 min on an H100
    PYTHONPATH=src python benchmarks/gpu_check.py --tiny                   # the same code on CPU, tiny shapes (tests)

No model hub and at most 64 MiB of files can reach that machine, so every model is built with random
weights from a config shaped like a real one (SmolLM2-135M, Llama-3.2-1B, LLaMA-2-7B, the paper's model).
Per model it runs
  1. the attention probe (`check_attention`) for LS (causal) and LS-un (bidirectional) on the SDPA kernels
     training uses: the future is hidden / seen as claimed, and padding never leaks;
  2. bf16 LoRA training (all-linear, rank 12) of LS and LS-un for a sequence and a token task through lsllm's
     one training step (`training/step.py`): tokens/s, MFU against the measured bf16 matmul peak, peak memory;
  3. prediction (bf16, LoRA merged, no KV cache): tokens/s and MFU;
  4. QLoRA (`--quantize 4bit`'s layers: NF4 + double quantization, bf16 compute) training of LS on the sequence
     task: tokens/s, peak memory against the bf16 cell (skipped when bitsandbytes is not installed).
FLOPs per real token: training 4 x non-embedding weights (forward, plus the backward pass through
activations only: the base is frozen) plus attention; prediction 2 x weights plus attention.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import torch
from transformers import AutoModel, LlamaConfig

from lsllm.inference.precision import autocast
from lsllm.errors import AttentionModeError
from lsllm.model.attention import check_attention, set_attention_mode
from lsllm.model.classifier import LSModel
from lsllm.model.lora import apply_lora, resolve_lora
from lsllm.model.spec import ModelSpec
from lsllm.training.step import TrainStep, make_optimizer

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152),
    "llama-3.2-1b": (2048, 8192, 16, 32, 8, 128256),
    "llama-2-7b": (4096, 11008, 32, 32, 32, 32000),
}
TINY = {"tiny-llama": (64, 128, 2, 4, 2, 256)}


def llama_config(shape, attn: str) -> LlamaConfig:
    hidden, inter, layers, heads, kv, vocab = shape
    config = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                         max_position_embeddings=4096, pad_token_id=0, tie_word_embeddings=False)
    config._attn_implementation = attn
    return config


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_bf16_flops(device, size: int, repeats: int) -> float:
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def non_embedding_params(backbone) -> int:
    # A 4-bit layer packs two weights per byte: count what it computes with (its shape), not its storage.
    return sum(m.in_features * m.out_features if type(p).__name__ == "Params4bit" else p.numel()
               for n, p, m in _named_weights(backbone) if "embed" not in n)


def _named_weights(backbone):
    for module_name, module in backbone.named_modules():
        for name, p in module.named_parameters(recurse=False):
            yield f"{module_name}.{name}", p, module


def attention_flops(config, length: int, backward: bool) -> float:
    """Per token: QK^T and AV over `length` keys in every layer (x3 with the backward pass)."""
    return 4 * config.num_hidden_layers * config.hidden_size * length * (3 if backward else 1)


def quantize_4bit(backbone: torch.nn.Module, device) -> None:
    """Every linear layer as `--quantize 4bit` loads it (bitsandbytes NF4, double quantization, bf16 compute),
    quantized in place from the random weights (no hub: nothing to load quantized from)."""
    import bitsandbytes as bnb

    for module in list(backbone.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                          compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True)
                layer.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4",
                                                 compress_statistics=True)
                setattr(module, name, layer.to(device))  # quantizes on the way to the device


def build(shape, attn: str, device, task: str, bidirectional: bool, quantize: bool = False):
    config = llama_config(shape, attn)
    torch.manual_seed(0)
    backbone = AutoModel.from_config(config, dtype=torch.bfloat16, attn_implementation=attn)
    if quantize:
        quantize_4bit(backbone, device)
    backbone = backbone.to(device)
    backbone.config.use_cache = False
    set_attention_mode(backbone, bidirectional)
    spec = ModelSpec(task=task, labels=["a", "b", "c"] if task == "seq" else ["O", "B-X", "I-X"], base_model="random",
                     bidirectional=bidirectional, pooling="mean" if bidirectional else "last", dropout=0.0)
    lora = resolve_lora(backbone, "all-linear")
    model = LSModel(apply_lora(backbone, lora), spec, config.hidden_size).to(device)
    model.score.float()
    return model, backbone, config


def probe(shape, attn: str, device) -> dict:
    """check_attention on the training kernel, both modes, in float32 and in bf16 (where SDPA may pick the
    flash kernel); 2 layers of the model's width prove the mask logic, which is the same in every layer."""
    small = (min(shape[0], 1024), min(shape[1], 2048), 2, *shape[3:])
    results = {}
    for dtype, atol in ((torch.float32, 1e-3), (torch.bfloat16, 3e-2)):
        for bidirectional in (False, True):
            key = f"{'LS-un' if bidirectional else 'LS'} {str(dtype).split('.')[-1]}"
            torch.manual_seed(0)
            backbone = AutoModel.from_config(llama_config(small, attn), dtype=dtype, attn_implementation=attn).to(device)
            set_attention_mode(backbone, bidirectional)
            try:
                check_attention(backbone, bidirectional, pad_token_id=0, atol=atol)
                results[key] = "ok"
            except AttentionModeError as err:
                results[key] = f"FAILED: {err}"
    return results


def batches(config, task: str, batch: int, length: int, device, count: int):
    out = []
    for i in range(count):
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(1, config.vocab_size, (batch, length), generator=g)
        mask = torch.ones(batch, length, dtype=torch.long)
        lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
        mask[torch.arange(length)[None, :] >= lengths[:, None]] = 0  # right padding, as lsllm collates
        labels = torch.randint(0, 3, (batch,) if task == "seq" else (batch, length), generator=g)
        if task == "token":
            labels[mask == 0] = -100
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def train_run(shape, attn, device, task, bidirectional, batch, length, steps, peak, quantize=False) -> dict:
    model, backbone, config = build(shape, attn, device, task, bidirectional, quantize)
    optimizer, scheduler, params = make_optimizer(model, 1e-4, 0.0, 0.0, steps + 2)
    step = TrainStep(model, optimizer, scheduler, params, torch.bfloat16, 1.0, device)
    data = batches(config, task, batch, length, device, steps + 2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    for b in data[:2]:  # warm-up: kernels chosen, allocator grown
        step([b])
    sync(device)
    start, tokens, losses = time.perf_counter(), 0, []
    for b in data[2:]:
        loss, n = step([b])
        tokens += n
        losses.append(loss)
    sync(device)
    seconds = time.perf_counter() - start
    per_token = 4 * non_embedding_params(backbone) + attention_flops(config, length, backward=True)
    result = {"tokens_per_s": round(tokens / seconds, 1), "mfu": round(tokens / seconds * per_token / peak, 3),
              "loss_finite": all(math.isfinite(x) for x in losses)}
    if device.type == "cuda":
        result["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del model, backbone, optimizer
    return result


@torch.inference_mode()
def predict_run(shape, attn, device, batch, length, steps, peak) -> dict:
    model, backbone, config = build(shape, attn, device, "seq", False)
    model.backbone = model.backbone.merge_and_unload()  # what `lsllm export --merge` serves
    model.eval()
    data = batches(config, "seq", batch, length, device, steps + 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def run(b):
        with autocast(device, torch.bfloat16):
            return model(b["input_ids"].to(device), b["attention_mask"].to(device)).logits

    run(data[0])
    sync(device)
    start, tokens = time.perf_counter(), 0
    for b in data[1:]:
        run(b)
        tokens += int(b["attention_mask"].sum())
    sync(device)
    seconds = time.perf_counter() - start
    per_token = 2 * non_embedding_params(backbone) + attention_flops(config, length, backward=False)
    result = {"tokens_per_s": round(tokens / seconds, 1), "mfu": round(tokens / seconds * per_token / peak, 3)}
    if device.type == "cuda":
        result["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (a test of this script)")
    parser.add_argument("--models", default=",".join(SHAPES), help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per training/prediction run")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    attn = "sdpa"
    shapes = TINY if args.tiny else {name: SHAPES[name] for name in args.models.split(",")}
    batch, length = (2, 16) if args.tiny else (16, 256)
    peak = peak_bf16_flops(device, 256 if args.tiny else 8192, 2 if args.tiny else 20)
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "bf16_peak_tflops": round(peak / 1e12, 1), "batch": batch,
              "length": length, "models": {}}
    print(f"device {report['device']}, bf16 matmul peak {peak / 1e12:.1f} TFLOP/s, batch {batch} x {length} tokens")
    for name, shape in shapes.items():
        entry = {"attention_probe": probe(shape, attn, device)}
        print(f"{name:<14} {'attention probe':<20} {entry['attention_probe']}", flush=True)
        for task in ("seq", "token"):
            for bidirectional in (False, True):
                key = f"train {task} {'LS-un' if bidirectional else 'LS'}"
                entry[key] = train_run(shape, attn, device, task, bidirectional, batch, length, args.steps, peak)
                print(f"{name:<14} {key:<20} {entry[key]}", flush=True)
        entry["predict"] = predict_run(shape, attn, device, batch * 4, length, args.steps, peak)
        print(f"{name:<14} {'predict':<20} {entry['predict']}", flush=True)
        if importlib.util.find_spec("bitsandbytes") is not None:
            entry["train seq LS qlora-4bit"] = train_run(shape, attn, device, "seq", False, batch, length, args.steps,
                                                         peak, quantize=True)
            print(f"{name:<14} {'train seq LS 4bit':<20} {entry['train seq LS qlora-4bit']}", flush=True)
        report["models"][name] = entry
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
