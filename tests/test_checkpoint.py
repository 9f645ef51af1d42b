"""Checkpoints: safetensors + JSON only, exact resume, and refusal of damaged or pickle-based folders."""
import json
import os
import pickle
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import get_linear_schedule_with_warmup

from lsllm.errors import RunFolderError
from lsllm.config import ModelConfig
from lsllm.model.build import build_model
from lsllm.training.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint, trainable_state_dict

TOTAL, SPLIT = 6, 3


def fresh(model_path):
    """Model, AdamW and warmup/decay schedule, built the way the training loop builds them."""
    model, _ = build_model(ModelConfig(model=str(model_path), task="seq", dropout=0.1), ["neg", "pos"], seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    return model, optimizer, get_linear_schedule_with_warmup(optimizer, 2, TOTAL)


def step(model, optimizer, scheduler):
    # The batch draws on all three global RNGs and the model's dropout on torch's, so a resume that
    # restored any of them wrongly would train on other data or other dropout masks.
    size = 2 + random.randrange(3) + int(np.random.randint(2))
    ids = torch.randint(6, 100, (4, size))
    labels = torch.randint(0, 2, (4,))
    model.train()
    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def seed_all(seed):
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def assert_same_training_state(a, b):
    (model_a, opt_a, sched_a), (model_b, opt_b, sched_b) = a, b
    wa, wb = trainable_state_dict(model_a), trainable_state_dict(model_b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"] and sa["state"].keys() == sb["state"].keys()
    for index, values in sa["state"].items():
        assert values.keys() == sb["state"][index].keys()
        assert all(torch.equal(v, sb["state"][index][k]) for k, v in values.items())
    assert sched_a.state_dict() == sched_b.state_dict() and sched_a.get_last_lr() == sched_b.get_last_lr()


@pytest.fixture
def saved(tiny_models, tmp_path):
    """A run dir whose checkpoint was written after SPLIT steps."""
    seed_all(0)
    objects = fresh(tiny_models["llama"])
    for _ in range(SPLIT):
        step(*objects)
    save_checkpoint(tmp_path, *objects, {"step": SPLIT, "best": None})
    return tmp_path


def test_resume_continues_bit_identically(tiny_models, saved):
    seed_all(0)
    uninterrupted = fresh(tiny_models["llama"])
    for _ in range(TOTAL):
        step(*uninterrupted)

    seed_all(123)  # a new process: other RNG states, fresh objects
    resumed = fresh(tiny_models["llama"])
    assert load_checkpoint(saved, *resumed) == {"step": SPLIT, "best": None}
    for _ in range(TOTAL - SPLIT):
        step(*resumed)
    assert_same_training_state(uninterrupted, resumed)


def test_checkpoint_is_only_safetensors_and_json(saved, tiny_models, monkeypatch):
    folder = saved / CHECKPOINT
    assert sorted(p.name for p in folder.iterdir()) == [
        "optimizer.json", "optimizer.safetensors", "rng.json", "rng.safetensors", "scheduler.json", "state.json",
        "trainable.safetensors"]
    assert "state.0.exp_avg" in load_file(folder / "optimizer.safetensors")
    assert not list(saved.glob(".checkpoint.*"))  # no temp folder left behind
    mode = folder.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask  # not mkdtemp's 0700

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a checkpoint load must never unpickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    assert load_checkpoint(saved, *fresh(tiny_models["llama"]))["step"] == SPLIT


class Payload:
    """Unpickling this creates the marker file: what a crafted optimizer.pt could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_old_pickle_checkpoint_is_refused_unread(saved, tiny_models, tmp_path):
    folder = saved / CHECKPOINT
    marker = tmp_path / "pwned"
    for name in ("optimizer.safetensors", "optimizer.json", "scheduler.json", "rng.safetensors", "rng.json"):
        (folder / name).unlink()  # what an older lsllm wrote: trainable.safetensors, optimizer.pt, state.json
    (folder / "optimizer.pt").write_bytes(pickle.dumps({"optimizer": Payload(marker)}))
    with pytest.raises(RunFolderError, match="older lsllm.*cannot be loaded safely"):
        load_checkpoint(saved, *fresh(tiny_models["llama"]))
    assert not marker.exists()


def test_stray_pickle_beside_a_new_checkpoint_is_ignored(saved, tiny_models, tmp_path):
    marker = tmp_path / "pwned"
    (saved / CHECKPOINT / "optimizer.pt").write_bytes(pickle.dumps(Payload(marker)))
    assert load_checkpoint(saved, *fresh(tiny_models["llama"]))["step"] == SPLIT
    assert not marker.exists()


def test_no_checkpoint_folder_means_nothing_to_load(tmp_path, tiny_models):
    assert load_checkpoint(tmp_path, *fresh(tiny_models["llama"])) is None


def _rewrite_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _drop_tensor(path, key):
    tensors = load_file(path)
    del tensors[key]
    save_file(tensors, path)


def _reshape_tensor(path, key):
    tensors = load_file(path)
    tensors[key] = torch.zeros(tensors[key].numel() + 1)
    save_file(tensors, path)


DAMAGE = [
    ("missing state.json", lambda f: (f / "state.json").unlink(), r"state\.json: missing"),
    ("missing optimizer tensors", lambda f: (f / "optimizer.safetensors").unlink(),
     r"optimizer\.safetensors: missing"),
    ("invalid JSON", lambda f: (f / "scheduler.json").write_text("{not json"), r"scheduler\.json: not valid JSON"),
    ("JSON of the wrong type", lambda f: (f / "state.json").write_text("[1, 2]"),
     r"state\.json: expected a JSON object"),
    ("truncated safetensors", lambda f: (f / "trainable.safetensors").write_bytes(b"\x08\x00"),
     r"trainable\.safetensors: not a valid safetensors file"),
    ("missing weight", lambda f: _drop_tensor(f / "trainable.safetensors", "score.weight"),
     r"trainable\.safetensors: missing score\.weight"),
    ("weight of another shape", lambda f: _reshape_tensor(f / "trainable.safetensors", "score.weight"),
     r"trainable\.safetensors: score\.weight has shape"),
    ("optimizer tensor dropped", lambda f: _drop_tensor(f / "optimizer.safetensors", "state.0.exp_avg"),
     r"optimizer\.safetensors: missing state\.0\.exp_avg"),
    ("optimizer for other parameters", lambda f: _rewrite_json(f / "optimizer.json",
                                                               lambda d: d["param_shapes"].pop()),
     r"optimizer\.json: its parameters have other shapes"),
    ("scheduler keys", lambda f: _rewrite_json(f / "scheduler.json", lambda d: d.pop("base_lrs")),
     r"scheduler\.json: keys differ"),
    ("python rng", lambda f: _rewrite_json(f / "rng.json", lambda d: d["python"][1].pop()),
     r"rng\.json: invalid generator state"),
    ("numpy rng", lambda f: _rewrite_json(f / "rng.json", lambda d: d.update(numpy="MT19937")),
     r"rng\.json: invalid generator state"),
    ("torch rng", lambda f: save_file({"torch": torch.zeros(3, dtype=torch.uint8)}, f / "rng.safetensors"),
     r"rng\.safetensors: invalid torch generator state"),
]


@pytest.mark.parametrize("what,damage,message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_checkpoint_is_refused_before_anything_changes(saved, tiny_models, what, damage, message):
    damage(saved / CHECKPOINT)
    objects = fresh(tiny_models["llama"])
    before = {k: v.clone() for k, v in trainable_state_dict(objects[0]).items()}
    rng = torch.get_rng_state()
    with pytest.raises(RunFolderError, match=message) as err:
        load_checkpoint(saved, *objects)
    assert str(saved / CHECKPOINT) in str(err.value) and "delete it to start over" in str(err.value)
    assert "\n" not in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in trainable_state_dict(objects[0]).items())
    assert not objects[1].state_dict()["state"] and torch.equal(torch.get_rng_state(), rng)
