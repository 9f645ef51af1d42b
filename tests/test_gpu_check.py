"""benchmarks/gpu_check.py, the one command for a lent GPU, runs end to end on CPU with tiny shapes."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_check  # noqa: E402


def test_gpu_check_runs_on_tiny_shapes(tmp_path):
    out = tmp_path / "gpu.json"
    report = gpu_check.main(["--tiny", "--steps", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    entry = report["models"]["tiny-llama"]
    assert set(entry["attention_probe"].values()) == {"ok"}  # LS and LS-un, fp32 and bf16
    for key in ("train seq LS", "train seq LS-un", "train token LS", "train token LS-un"):
        assert entry[key]["tokens_per_s"] > 0 and entry[key]["loss_finite"]
    assert entry["predict"]["tokens_per_s"] > 0 and 0 < entry["predict"]["mfu"]
    if "train seq LS qlora-4bit" in entry or importlib.util.find_spec("bitsandbytes"):
        assert entry["train seq LS qlora-4bit"]["tokens_per_s"] > 0 and entry["train seq LS qlora-4bit"]["loss_finite"]
