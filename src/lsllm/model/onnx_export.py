"""`lsllm export --format onnx [--int8]`: the model merged in float32 as one ONNX graph that onnxruntime runs
without PyTorch, with the run's attention (causal or not), padding mask, position ids, pooling and head inside.

Inputs `input_ids` and `attention_mask` (int64, (B, T)), output `logits` ((B, C) or (B, T, C)); batch and
sequence axes are dynamic. Exported with torch.onnx's dynamo exporter (torch.export): the TorchScript
exporter still works in torch 2.13 but is deprecated, and it traces Python branches into constants
(transformers' mask code warns it does), where torch.export refuses what it cannot capture. The graph is
then run on a batch of another shape and compared with PyTorch, so an export that lost the padding mask,
the attention mode or a dynamic axis is refused instead of written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lsllm.errors import LsllmError
from lsllm.model.build import load_model

ONNX_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask")
TWO_GB = 2 * 1024 ** 3
"""protobuf's limit on one file: larger graphs keep their weights in model.onnx.data beside it."""
INT8_OPS = ["MatMul", "Gemm"]
"""Only the weight matmuls get int8 weights; the embedding Gather stays float (see benchmarks/RESULTS.md)."""


class _Logits(nn.Module):
    """What the graph computes: LSModel.forward on (input_ids, attention_mask), logits only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask).logits


def write_onnx(run_model_dir: Path, folder: Path, int8: bool = False) -> None:
    """Write model.onnx, the tokenizer and lsllm.json (format "onnx") into `folder` (a fresh temp folder)."""
    _require_exporter()
    # Eager attention: plain MatMul/Softmax ops that every onnxruntime runs (SDPA would export as fused
    # attention ops that need a newer opset). merge=True folds LoRA into float32 weights.
    model, tokenizer = load_model(run_model_dir, attn_implementation="eager", merge=True)
    graph = _Logits(model).eval()
    large = sum(p.numel() * p.element_size() for p in graph.parameters()) >= TWO_GB
    target = folder / (ONNX_FILE if not int8 else "float.onnx")
    ids, mask = _example(model.backbone.config.vocab_size, rows=2, length=8)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(graph, (ids, mask), str(target), input_names=list(INPUTS), output_names=["logits"],
                          dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                          "attention_mask": {0: batch, 1: sequence}},
                          dynamo=True, external_data=large, verbose=False)
    check_onnx(graph, target)
    if int8:
        quantize_int8(target, folder / ONNX_FILE, getattr(model.backbone.config, "intermediate_size", None), large)
        for path in folder.glob("float.onnx*"):
            path.unlink()
    tokenizer.save_pretrained(folder)
    spec = model.spec
    spec.merged, spec.lora, spec.format, spec.quantize = True, {}, "onnx", "none"  # a QLoRA base: dequantized
    spec.save(folder)


def quantize_int8(source: Path, target: Path, intermediate_size: int | None = None, large: bool = False) -> None:
    """Dynamic int8: int8 weights (per tensor) for the weight matmuls; activations are quantized per batch at
    run time, so no calibration data is needed. The MLP's down projections (weights intermediate_size x
    hidden) stay float32: their inputs (SwiGLU/GELU outputs) carry outlier activations that one uint8 scale per
    tensor crushes; quantizing them cost SmolLM2 3.2 points of SST-2 accuracy, keeping them float32 none
    (benchmarks/RESULTS.md section 8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, op_types_to_quantize=INT8_OPS, weight_type=QuantType.QInt8,
                     nodes_to_exclude=_down_projections(source, intermediate_size),
                     use_external_data_format=large)


def _down_projections(path: Path, intermediate_size: int | None) -> list[str]:
    """Names of the MatMul/Gemm nodes whose weight has intermediate_size input rows (the MLP's second matmul)."""
    import onnx

    if not intermediate_size:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph  # shapes only
    weights = {w.name: list(w.dims) for w in graph.initializer}
    found = []
    for node in graph.node:
        dims = weights.get(node.input[1]) if node.op_type in INT8_OPS and len(node.input) > 1 else None
        if dims and len(dims) == 2:
            rows = dims[1] if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute) \
                else dims[0]
            if rows == intermediate_size:
                found.append(node.name)
    return found


@torch.no_grad()
def check_onnx(graph: nn.Module, path: Path, atol: float = 1e-3) -> None:
    """Run the graph on a batch of another shape than the export's example, with padding, and compare with
    PyTorch: a mismatch means something (mask, attention mode, a shape) was lost on the way."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    vocab = graph.model.backbone.config.vocab_size
    ids, mask = _example(vocab, rows=3, length=11)
    expected = graph(ids, mask).float().numpy()
    (got,) = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    diff = float(np.abs(got - expected).max())
    if not diff <= atol * max(1.0, float(np.abs(expected).max())):
        raise LsllmError(f"the exported ONNX graph's logits differ from PyTorch's by {diff:.3g} on a padded batch; "
                         "this model does not export faithfully with this torch/onnxruntime version: deploy the "
                         "PyTorch folder (lsllm export --merge) instead")


def _example(vocab: int, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, length) ids with rows of different real lengths (right padding, as the tokenizer pads)."""
    ids = (torch.arange(rows * length).view(rows, length) * 7 + 11) % vocab
    mask = torch.ones_like(ids)
    for row in range(1, rows):
        mask[row, length - 3 * row:] = 0
    return ids, mask


def _require_exporter() -> None:
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if not _installed(name)]
    if missing:
        raise LsllmError(f"--format onnx needs {', '.join(missing)}: pip install 'lsllm[onnx]'")


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


__all__ = ["ONNX_FILE", "write_onnx", "quantize_int8", "check_onnx"]
