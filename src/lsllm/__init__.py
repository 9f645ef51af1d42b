"""lsllm: label-supervised fine-tuning of decoder LLMs as classifiers and taggers (LS-LLaMA / LS-unLLaMA).

    from lsllm import RunConfig, train, Predictor
    config = RunConfig.from_yaml("sst2.yaml")
    result = train(config)                      # writes the run folder, returns metrics
    Predictor(result.run_dir / "model").predict(["a gorgeous film"])   # -> ['positive']
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public names load on first use, so `lsllm --help`, `lsllm models` and `import lsllm.data` don't pay
# for importing torch, transformers and peft. (The function `predict` is not re-exported: `lsllm.predict`
# is its module; use `from lsllm.predict import predict`.)
_EXPORTS = {
    "RunConfig": "lsllm.config", "train": "lsllm.training.loop", "Predictor": "lsllm.predict", "evaluate_run": "lsllm.evaluate", "run_demo": "lsllm.demo",
    "build_model": "lsllm.model.build", "load_model": "lsllm.model.build", "save_model": "lsllm.model.build",
    "export_model": "lsllm.model.export",
}
__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from lsllm.demo import run_demo
    from lsllm.evaluate import evaluate_run
    from lsllm.config import RunConfig
    from lsllm.model.build import build_model, load_model, save_model
    from lsllm.model.export import export_model
    from lsllm.predict import Predictor
    from lsllm.training.loop import train


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lsllm' has no attribute {name!r}")
