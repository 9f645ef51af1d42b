"""Multi-process runs: only rank 0 reads and writes the run folder; every other rank learns from it.

Nodes of a multi-machine launch (torchrun --nnodes N, accelerate launch --num_machines N) need not share a
disk: the run folder exists on rank 0's machine only. So the checks of an existing folder and the checkpoint
of a resumed run are read by rank 0 and sent to the others (over torch.distributed), and a problem rank 0
finds is raised on every rank with the same message, so that all stop together instead of waiting for a
rank that has already failed.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from accelerate.utils import broadcast_object_list

from lsllm.errors import ConfigError, LsllmError, RunFolderError
from lsllm.training.checkpoint import load_checkpoint, trainable_state_dict


SHARDED = ("FSDP", "DEEPSPEED", "MEGATRON_LM")
"""accelerate's model-sharding modes: every rank holds a slice of the model, so validation and saving would
have to run on all ranks together; lsllm validates and saves on rank 0."""


def check_data_parallel(accelerator) -> None:
    """Refuse a sharded launch on every rank before any work (instead of hanging at the first validation)."""
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type))
    if kind in SHARDED:
        raise ConfigError(
            f"accelerate was launched with {kind}, which shards the model over ranks; lsllm trains data-parallel "
            "(DDP) only, validating and saving on rank 0. Launch without the FSDP/DeepSpeed config (e.g. "
            "configs/accelerate/multi_node.yaml or torchrun): the LoRA weights and their optimizer state are small, "
            "so DDP fits any model whose frozen weights fit one device")


def on_rank_zero(accelerator, read):
    """`read()` on rank 0 and its result on every rank; an LsllmError it raises is raised on every rank."""
    outcome, caught = [None, None], None
    if accelerator.is_main_process:
        try:
            outcome = [read(), None]
        except LsllmError as err:
            outcome, caught = [None, (type(err).__name__, str(err))], err
    broadcast_object_list(outcome)  # a no-op in a single process
    result, error = outcome
    if caught is not None:
        raise caught
    if error is not None:
        raise _ERRORS.get(error[0], LsllmError)(error[1])
    return result


def resume_from_rank_zero(accelerator, work, model, optimizer, scheduler) -> dict | None:
    """Rank 0 restores its checkpoint; the other ranks get the same weights, optimizer and scheduler state,
    and random state from it. Returns the loop state (None: no checkpoint)."""
    def read():
        state = load_checkpoint(work, model, optimizer, scheduler)
        if state is None or accelerator.num_processes == 1:
            return state, None
        rng = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        weights = {k: v.detach().cpu() for k, v in trainable_state_dict(model).items()}
        return state, (weights, optimizer.state_dict(), scheduler.state_dict(), rng)

    state, shared = on_rank_zero(accelerator, read)
    if shared is not None and not accelerator.is_main_process:
        weights, optimizer_state, scheduler_state, rng = shared
        model.load_state_dict(weights, strict=False)
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(scheduler_state)
        torch.set_rng_state(rng[0])
        random.setstate(rng[1])
        np.random.set_state(rng[2])
    return state


_ERRORS = {cls.__name__: cls for cls in (LsllmError, RunFolderError, *LsllmError.__subclasses__())}
