"""Running an ONNX export (`lsllm export --format onnx`) with onnxruntime on the CPU.

`OnnxModel` answers what the batched inference path asks of an LSModel (`.spec`, called with input_ids and
attention_mask, `.logits` as a torch tensor), so predictions, probabilities, metrics, token-task word scores
and the server all run the same code for both. Precision does not apply: the graph runs as it was exported
(float32 or int8 weights).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lsllm.errors import LsllmError, ModelSourceError
from lsllm.model.classifier import ClassifierOutput
from lsllm.model.onnx_export import INPUTS, ONNX_FILE
from lsllm.model.spec import ModelSpec


class OnnxModel:
    """An onnxruntime session over `model.onnx`, called like LSModel."""

    training = False
    device = torch.device("cpu")

    def __init__(self, folder: Path, spec: ModelSpec, threads: int | None = None):
        ort = _onnxruntime()
        path = Path(folder) / ONNX_FILE
        if not path.is_file():
            raise ModelSourceError(f"{path} is missing: its lsllm.json says it is an ONNX export, but the graph is "
                                   f"not there; export it again (lsllm export RUN --format onnx --output {folder})")
        options = ort.SessionOptions()
        # As many threads as torch uses (torch.set_num_threads, OMP_NUM_THREADS): the same CPU budget either way.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime has its own exception types (InvalidProtobuf, Fail, ...)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelSourceError(f"{path} is not a readable ONNX model ({first[:200]}); export it again "
                                   "(lsllm export RUN --format onnx)") from None
        names = tuple(i.name for i in self.session.get_inputs())
        if names != INPUTS:
            raise ModelSourceError(f"{path} takes inputs {', '.join(names)}, not input_ids, attention_mask: it was "
                                   "not written by lsllm export; export it again")
        self.spec = spec

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels=None) -> ClassifierOutput:
        feeds = {"input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
                 "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False)}
        (logits,) = self.session.run(["logits"], feeds)  # (B, C) or (B, T, C)
        return ClassifierOutput(logits=torch.from_numpy(logits))

    # What infer() and Predictor call on a torch model; a session has no training mode and lives on the CPU.
    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        return self


def load_onnx(folder: str | Path, device: str | None = None) -> tuple[OnnxModel, object]:
    """The ONNX model of an export folder and its tokenizer."""
    from lsllm.model.build import load_tokenizer

    folder = Path(folder)
    if device is not None and torch.device(device).type != "cpu":
        raise LsllmError(f"{folder} is an ONNX export, which lsllm runs on the CPU with onnxruntime; drop --device "
                         f"{device}, or use the PyTorch run folder (or an --merge export) on {device}")
    spec = ModelSpec.load(folder)
    model = OnnxModel(folder, spec)
    return model, load_tokenizer(str(folder))


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise LsllmError("this folder is an ONNX export and onnxruntime is not installed: "
                         "pip install 'lsllm[onnx]'") from None
    return onnxruntime


__all__ = ["OnnxModel", "load_onnx"]
