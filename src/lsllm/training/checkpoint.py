"""Resumable training state: only what training changes (LoRA + head), optimizer, schedule, RNG.

Only safetensors and JSON, never pickle: reading a checkpoint can't run code, so a crafted checkpoint
folder can at worst make a run refuse to resume. `<run>.incomplete/checkpoint/` holds

  trainable.safetensors  trainable weights (LoRA + head)
  optimizer.safetensors  the optimizer's state tensors, keyed `state.<param index>.<name>`
  optimizer.json         param_groups, non-tensor state, the shape of every saved tensor and parameter
  scheduler.json         the LR scheduler's state_dict
  rng.safetensors        torch CPU (`torch`) and CUDA (`cuda.<device>`) generator states
  rng.json               python `random` and numpy generator states
  state.json             the loop's counters (step, epoch, best, ...)

Loading reads and checks every file before it changes anything, and reports any problem as one
RunFolderError naming the checkpoint, the file and what is wrong.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lsllm.errors import RunFolderError
from lsllm.files import atomic_folder

CHECKPOINT = "checkpoint"


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes (LoRA weights and a head): small checkpoints, for any method's model."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}


# ---------------------------------------------------------------------------
# save


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer, scheduler, state: dict) -> None:
    """Write `run_dir/checkpoint` atomically: a reader or a kill sees the previous checkpoint or this one."""
    # atomic_folder: temp folder with normal permissions, renamed over the old checkpoint when complete.
    with atomic_folder(Path(run_dir) / CHECKPOINT, replace=True) as tmp:
        save_file(_cpu(trainable_state_dict(model)), tmp / "trainable.safetensors")
        tensors, meta = _split_optimizer(optimizer)
        save_file(tensors, tmp / "optimizer.safetensors")
        _write_json(tmp / "optimizer.json", meta)
        _write_json(tmp / "scheduler.json", scheduler.state_dict())
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(_cpu(rng), tmp / "rng.safetensors")
        version, internal, gauss = random.getstate()
        name, keys, pos, has_gauss, cached = np.random.get_state()
        _write_json(tmp / "rng.json", {"python": [version, list(internal), gauss],
                                       "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]})
        _write_json(tmp / "state.json", state)


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _write_json(path: Path, obj) -> None:
    # json.dumps raises on anything that isn't plain JSON (e.g. a tensor): fail at save, not at resume.
    path.write_text(json.dumps(obj), encoding="utf-8")


def _param_shapes(optimizer) -> list[list[int]]:
    """Shapes of the optimizer's parameters in state_dict index order (groups in order, then params)."""
    return [list(p.shape) for group in optimizer.param_groups for p in group["params"]]


def _split_optimizer(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """optimizer.state_dict() -> (state tensors for safetensors, everything else for JSON)."""
    full = optimizer.state_dict()
    tensors, other = {}, {}
    for index, values in full["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:  # numbers, None (e.g. SGD's momentum_buffer without momentum)
                other.setdefault(str(index), {})[name] = value
    meta = {"param_groups": full["param_groups"], "state": other,
            "tensors": {k: list(v.shape) for k, v in tensors.items()}, "param_shapes": _param_shapes(optimizer)}
    return tensors, meta


# ---------------------------------------------------------------------------
# load


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer, scheduler) -> dict | None:
    """Restore a checkpoint into model/optimizer/scheduler and the global RNGs; return its state dict.

    None when `run_dir/checkpoint` does not exist. A folder that exists but can't be restored exactly
    (missing or damaged file, other model, older pickle-based format) raises RunFolderError; every file
    is read and checked first, so that happens before anything is changed.
    """
    source = Path(run_dir) / CHECKPOINT
    if not source.exists():
        return None
    if (source / "optimizer.pt").exists() and not (source / "optimizer.safetensors").exists():
        # Never unpickled: a pickle can run any code when read.
        raise RunFolderError(
            f"checkpoint {source} was written by an older lsllm (optimizer.pt, a pickle) and cannot be loaded "
            "safely; delete it to start over, or resume with the lsllm version that started the run")
    read = _Reader(source)

    shapes = {k: list(v.shape) for k, v in trainable_state_dict(model).items()}
    trainable = read.tensors("trainable.safetensors", shapes)
    optimizer_state = _read_optimizer(read, optimizer)
    scheduler_state = _like(scheduler.state_dict(), read.json("scheduler.json", dict), read, "scheduler.json")
    rng = _read_rng(read)
    state = read.json("state.json", dict)

    try:  # torch checks the group layout before changing anything
        optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise read.damaged("optimizer.json", str(err)) from None
    try:
        scheduler.load_state_dict(scheduler_state)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise read.damaged("scheduler.json", str(err)) from None
    model.load_state_dict(trainable, strict=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    if rng["cuda"] and torch.cuda.is_available():
        for device, cuda_state in enumerate(rng["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)
    return state


class _Reader:
    """Reads files of one checkpoint; every problem becomes a one-line RunFolderError."""

    def __init__(self, source: Path):
        self.source = source

    def damaged(self, name: str, what: str) -> RunFolderError:
        return RunFolderError(f"checkpoint {self.source} is damaged ({name}: {what}); delete it to start over")

    def _path(self, name: str) -> Path:
        path = self.source / name
        if not path.is_file():
            raise self.damaged(name, "missing")
        return path

    def json(self, name: str, kind: type):
        try:
            value = json.loads(self._path(name).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
            raise self.damaged(name, f"not valid JSON: {err}") from None
        if not isinstance(value, kind):
            raise self.damaged(name, f"expected a JSON {'object' if kind is dict else 'array'}")
        return value

    def tensors(self, name: str, shapes: dict[str, list[int]] | None = None) -> dict[str, torch.Tensor]:
        """The file's tensors; with `shapes` (name -> shape) they must be exactly those."""
        try:
            tensors = load_file(self._path(name))
        except RunFolderError:
            raise
        except Exception as err:  # SafetensorError and friends: a truncated or foreign file
            raise self.damaged(name, f"not a valid safetensors file: {err}") from None
        if shapes is None:
            return tensors
        missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
        if missing or extra:
            raise self.damaged(name, "; ".join(
                f"{label} {', '.join(keys[:3])}{f' (+{len(keys) - 3} more)' if len(keys) > 3 else ''}"
                for label, keys in (("missing", missing), ("unexpected", extra)) if keys))
        for key, tensor in tensors.items():
            if list(tensor.shape) != list(shapes[key]):
                raise self.damaged(name, f"{key} has shape {list(tensor.shape)}, expected {list(shapes[key])}")
        return tensors


def _read_optimizer(read: _Reader, optimizer) -> dict:
    """optimizer.json + optimizer.safetensors -> a state_dict for optimizer.load_state_dict."""
    meta = read.json("optimizer.json", dict)
    if not {"param_groups", "state", "tensors", "param_shapes"} <= set(meta):
        raise read.damaged("optimizer.json", "missing param_groups, state, tensors or param_shapes")
    if meta["param_shapes"] != _param_shapes(optimizer):
        raise read.damaged("optimizer.json", "its parameters have other shapes than this model's")
    if not isinstance(meta["tensors"], dict) or not isinstance(meta["state"], dict):
        raise read.damaged("optimizer.json", "tensors and state must be objects")
    tensors = read.tensors("optimizer.safetensors", meta["tensors"])
    entries = [(key.split(".", 2), value) for key, value in tensors.items()]  # state.<index>.<name>
    for index, values in meta["state"].items():
        if not isinstance(values, dict):
            raise read.damaged("optimizer.json", f"state {index} is not an object")
        entries += [(["state", index, name], value) for name, value in values.items()]
    state: dict[int, dict] = {}
    for parts, value in entries:
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdecimal() \
                or int(parts[1]) >= len(meta["param_shapes"]) or not parts[2]:
            raise read.damaged("optimizer.json", f"state entry {'.'.join(parts)} names no parameter")
        state.setdefault(int(parts[1]), {})[parts[2]] = value
    groups, current = meta["param_groups"], optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups) \
            or [g.get("params") for g in groups] != [g["params"] for g in current]:
        raise read.damaged("optimizer.json", "param_groups do not list this optimizer's parameters")
    # JSON turns tuples (AdamW's betas) into lists: give back the types the optimizer uses.
    return {"state": state, "param_groups": [_like(now, saved, read, "optimizer.json")
                                             for now, saved in zip(current, groups)]}


def _like(template: dict, saved: dict, read: _Reader, name: str) -> dict:
    """`saved` checked against a live state_dict `template`: same keys, same JSON kinds, tuples restored."""
    missing, extra = sorted(set(template) - set(saved)), sorted(set(saved) - set(template))
    if missing or extra:
        raise read.damaged(name, f"keys differ from this run's (missing {missing}, unexpected {extra})")
    for key, now in template.items():
        if _kind(now) != _kind(saved[key]) and now is not None and saved[key] is not None:
            raise read.damaged(name, f"{key} is {_kind(saved[key])}, expected {_kind(now)}")
        if isinstance(now, (list, tuple)) and len(now) != len(saved[key]):  # one entry per param group, ...
            raise read.damaged(name, f"{key} has {len(saved[key])} entries, expected {len(now)}")
    return {k: tuple(v) if isinstance(template[k], tuple) and isinstance(v, list) else v for k, v in saved.items()}


def _kind(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _read_rng(read: _Reader) -> dict:
    """RNG states, each tried on a throwaway generator first so that a bad one fails before any is set."""
    saved = read.json("rng.json", dict)
    tensors = read.tensors("rng.safetensors")
    cuda = [f"cuda.{i}" for i in range(len(tensors) - 1)]  # as many as the saving machine had GPUs
    if sorted(tensors) != sorted(["torch", *cuda]):
        raise read.damaged("rng.safetensors", f"expected torch and cuda.0 .. cuda.N, found {sorted(tensors)}")
    try:
        version, internal, gauss = saved["python"]
        python = (version, tuple(internal), gauss)
        random.Random().setstate(python)
        name, keys, pos, has_gauss, cached = saved["numpy"]
        numpy = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
        np.random.RandomState().set_state(numpy)
    except (KeyError, ValueError, TypeError, OverflowError) as err:
        raise read.damaged("rng.json", f"invalid generator state: {err}") from None
    try:
        torch.Generator().set_state(tensors["torch"])
    except (RuntimeError, TypeError) as err:
        raise read.damaged("rng.safetensors", f"invalid torch generator state: {err}") from None
    return {"python": python, "numpy": numpy, "torch": tensors["torch"], "cuda": [tensors[k] for k in cuda]}
