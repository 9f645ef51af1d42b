"""QLoRA: the frozen base loaded in 4-bit NF4 (or 8-bit LLM.int8) through bitsandbytes, LoRA and the head on top
in float32. bitsandbytes runs these layers on CUDA and, since 0.49, on CPUs.

What a quantized run guarantees (tests/test_qlora.py): the head and LoRA weights train and save in float32 (the
failure people report after 4-bit training is a head that turns NaN or is not saved); quantizing the same
safetensors again gives bit-identical weights, so a reloaded model predicts exactly what the trained one did;
and a merged export dequantizes first, so it folds LoRA into the very weights training saw (exact for NF4).
"""
from __future__ import annotations

import importlib.util
import logging

import torch

from lsllm.errors import ConfigError

QUANTIZE = ("none", "4bit", "8bit")


def check_quantize(quantize: str, device: torch.device | str | None = None) -> None:
    """Refuse what can't run before anything loads: bitsandbytes missing, or a device it has no kernels for."""
    if quantize == "none":
        return
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize {quantize!r} must be one of {', '.join(QUANTIZE)}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"--quantize {quantize} loads the base through bitsandbytes, which is not installed: "
                          "pip install 'lsllm[qlora]' (or pip install 'bitsandbytes>=0.49'), or train with "
                          "--quantize none")
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"--quantize {quantize}: bitsandbytes has no {kind} kernels here; use --device cpu or a "
                          "CUDA GPU, or --quantize none")


def quantization_config(quantize: str, compute_dtype: torch.dtype | None):
    """transformers' BitsAndBytesConfig for `quantize` (None for none). 4bit is QLoRA's recipe: NF4 with double
    quantization; matmuls run in `compute_dtype` (the run's autocast dtype, else float32)."""
    if quantize == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        _quiet_int8_casts()
        # No outlier decomposition (threshold 0): by default LLM.int8 runs the input columns where *any* row of the
        # batch exceeds 6 in fp16, so a text's output depends on the other texts and pads in its batch. On SmolLM2
        # that moved real positions by up to 1.5 and the padding probe refused the model; per-row int8 does not.
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=0.0)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype or torch.float32)


def one_cpu_kernel(backbone: torch.nn.Module) -> torch.nn.Module:
    """Keep bitsandbytes' 4-bit layers on the kernel they train with when they evaluate.

    On CPUs with AVX512-BF16, a `Linear4bit` in eval mode without grad repacks its weight for another kernel
    (`_convert_weight_packed_for_cpu`, absmax rounded to bf16): validation would then score a numerically
    different model than the one training and reloading use (0.2 % of the loss on SmolLM2), and the repack fails
    outright on layers whose inputs are not a multiple of the 64-weight block ("shape '[32, 0]' is invalid").
    """
    for module in backbone.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return backbone


def prepare_for_training(backbone: torch.nn.Module) -> torch.nn.Module:
    """PEFT's k-bit preparation (freeze everything, keep non-quantized weights in float32), without the gradient
    checkpointing it turns on by default: lsllm's inputs are short, and recomputation would slow every step."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(backbone, use_gradient_checkpointing=False)


def dequantized(backbone: torch.nn.Module) -> torch.nn.Module:
    """The base with its quantized layers replaced by float32 nn.Linear holding the dequantized weights (the
    values the quantized layers compute with), for merging LoRA into a plain transformers model."""
    return backbone.dequantize().to(torch.float32)


class _DropInt8CastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # bitsandbytes logs this on every 8-bit matmul with float32 inputs: expected, and nothing to act on.
        return "MatMul8bitLt: inputs will be cast" not in record.getMessage()


def _quiet_int8_casts() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastNotice) for f in logger.filters):
        logger.addFilter(_DropInt8CastNotice())
