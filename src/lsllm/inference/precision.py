"""Precision, decided once for training and inference: bf16 autocast where the hardware computes bf16
natively, else float32."""
from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` (auto, bf16 or fp32) on `device`; None means full float32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        # Native bf16 matrix units (AVX512-BF16 / AMX / Arm BF16): bf16 is 2-3x faster than fp32 there;
        # without them it is emulated and slower than float32.
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 matrix instructions, from the flags the OS reports (Linux /proc/cpuinfo)."""
    return bool(cpu_matrix_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


@functools.lru_cache(maxsize=1)
def cpu_matrix_flags() -> frozenset[str]:
    """The CPU's matrix/vector extensions that matter for speed (AVX2, AVX512*, AMX*, Arm BF16/I8MM/SVE)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no flags known, so auto precision stays float32 on the CPU
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            flags.update(value.split())
    wanted = ("avx2", "avx512", "amx", "bf16", "i8mm", "sve")
    return frozenset(f for f in flags if f.startswith(wanted) or f in wanted)


def cpu_name() -> str:
    """The CPU's model name, for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for the dtype, or nothing for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_device(model) -> torch.device:
    """Where a model runs: its parameters' device, or `.device` for a model without torch parameters (ONNX)."""
    if isinstance(model, torch.nn.Module):
        return next(model.parameters()).device
    return model.device


def model_autocast(model, precision: str = "auto"):
    """The autocast `precision` means on the device the model is on; none for an ONNX graph (runs as exported)."""
    if not isinstance(model, torch.nn.Module):
        return contextlib.nullcontext()
    device = next(model.parameters()).device
    return autocast(device, autocast_dtype(precision, device))
