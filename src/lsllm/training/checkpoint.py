"""Resumable training state: only what training changes (LoRA + head), optimizer, schedule, RNG."""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lsllm.model.classifier import LSModel

CHECKPOINT = "checkpoint"


def save_checkpoint(run_dir: Path, model: LSModel, optimizer, scheduler, state: dict) -> None:
    target = Path(run_dir) / CHECKPOINT
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".checkpoint.tmp-"))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()},
                  tmp / "trainable.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                            "numpy": np.random.get_state(),
                            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}},
                   tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(state))
        old = target.with_name(".checkpoint.old")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(run_dir: Path, model: LSModel, optimizer, scheduler) -> dict | None:
    """Restore a checkpoint into model/optimizer/scheduler; return its state, or None if there is none."""
    source = Path(run_dir) / CHECKPOINT
    if not (source / "state.json").is_file():
        return None
    trainable = load_file(source / "trainable.safetensors")
    missing = set(model.trainable_state_dict()) - set(trainable)
    if missing:
        raise ValueError(f"checkpoint in {source} does not match this model (missing {sorted(missing)[:3]}...)")
    model.load_state_dict(trainable, strict=False)
    extra = torch.load(source / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng"]["torch"])
    random.setstate(extra["rng"]["python"])
    np.random.set_state(extra["rng"]["numpy"])
    if extra["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(extra["rng"]["cuda"])
    return json.loads((source / "state.json").read_text())
