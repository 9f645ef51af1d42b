"""lsllm: label-supervised fine-tuning of decoder LLMs as classifiers and taggers (LS-LLaMA / LS-unLLaMA).

    from lsllm import RunConfig, train, Predictor
    config = RunConfig.from_yaml("sst2.yaml")
    result = train(config)                      # writes the run folder, returns metrics
    Predictor(result.run_dir / "model").predict(["a gorgeous film"])   # -> ['positive']
"""
__version__ = "0.1.0"

from lsllm.api import evaluate_run, run_demo  # noqa: E402
from lsllm.config import RunConfig  # noqa: E402
from lsllm.model.build import build_model, export_model, load_model, save_model  # noqa: E402
from lsllm.predict import Predictor, predict  # noqa: E402
from lsllm.training.loop import train  # noqa: E402

__all__ = ["RunConfig", "train", "predict", "Predictor", "evaluate_run", "run_demo", "build_model", "load_model",
           "save_model", "export_model", "__version__"]
