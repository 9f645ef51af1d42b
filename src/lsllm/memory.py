"""Keep a training process's resident memory near what it actually holds (glibc malloc; no-ops elsewhere).

Measured on SmolLM2-135M (benchmarks/RESULTS.md, section 2e): with glibc's defaults `lsllm train` peaked at
~2.4 GB although the model, its activations and the reloaded best model need ~1.75 GB. Two causes:
- every thread that allocates (PyTorch's OpenMP workers, tqdm, the main thread) gets its own malloc arena,
  and tensors freed in one arena cannot be reused by another, so validation batches (other shapes than
  training batches) grew the heap by ~400 MB;
- freed memory stays in the heap: dropping the trained model before the final evaluation returned ~100 MB
  of its ~540 MB to the system, so the reloaded best model came on top of it.
One arena and an explicit `malloc_trim` at phase ends remove both without slowing training steps (forcing
big allocations to mmap instead cut RSS as much but halved training speed).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys

_M_ARENA_MAX = -8  # glibc's malloc.h


@functools.cache  # loaded once, not at every validation
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None  # not musl
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Make threads that have not allocated yet share `arenas` malloc arenas. Process-wide; returns
    whether it took effect. Called once at the start of training, before PyTorch's worker threads
    allocate."""
    libc = _glibc()
    return bool(libc and libc.mallopt(_M_ARENA_MAX, arenas) == 1)


def release_freed_memory() -> bool:
    """Collect garbage and hand freed heap pages back to the system; returns whether pages were released."""
    gc.collect()
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0) == 1)
