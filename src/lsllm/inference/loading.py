"""Loading saved models for inference, the one way `predict`, `eval`, the server and the end of training do."""
from __future__ import annotations

from pathlib import Path

import torch

from lsllm.inference.precision import autocast_dtype


def inference_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_for_inference(model_dir: str | Path, precision: str = "auto", device: str | None = None):
    """An LS model folder on `device`, in eval mode, and its tokenizer. Under bf16 autocast a LoRA model
    keeps its frozen weights in bf16 with LoRA unmerged, exactly as it was trained and validated, so
    reported metrics equal the best validation step (merging LoRA into bf16 weights rounds differently).
    In float32 LoRA is merged into the base weights: the same function to float rounding (probabilities
    within ~1e-5), with half the matmuls per layer, 1.45x faster prediction on SmolLM2 (RESULTS.md).
    A QLoRA model stays quantized with LoRA unmerged: its small memory is the reason it was trained so."""
    from lsllm.inference.onnx_runtime import load_onnx
    from lsllm.model.build import load_model
    from lsllm.model.quantize import check_quantize
    from lsllm.model.spec import ModelSpec

    spec = ModelSpec.load(Path(model_dir))
    if spec.format == "onnx":  # onnxruntime on the CPU; precision does not apply (it runs as exported)
        return load_onnx(model_dir, device)
    target = inference_device(device)
    dtype = autocast_dtype(precision, target)
    check_quantize(spec.quantize, target)  # the device too: load_model checks only the package
    model, tokenizer = load_model(Path(model_dir), frozen_dtype=dtype,
                                  merge=dtype is None and spec.quantize == "none")
    return model.to(target), tokenizer


def load_causal_lm(path: str, device: str | torch.device | None = None):
    """A causal LM (the base of a prompting run) from safetensors only (pickles can run code), on `device`."""
    from transformers import AutoModelForCausalLM

    from lsllm.model.sources import loading

    with loading(path):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    return model.to(inference_device(str(device) if device is not None else None))


def model_folder(path: str | Path) -> Path:
    """Accept a run folder (uses its model/) or a model folder."""
    path = Path(path)
    return path / "model" if (path / "model" / "lsllm.json").is_file() else path
