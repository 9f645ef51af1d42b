"""Convert a GGUF file into a bf16 safetensors folder in one pass over its tensors.

`from_pretrained(gguf_file=...)` parses the file's metadata with gguf-py's reader for the config and again for
the weights (a 262k-token vocabulary makes each parse ~25 s and ~960 MB), maps names with one tensor-name table
per submodule, and holds every weight while the model is built: Gemma-3-270m's first use peaked at ~3.2 GB
(benchmarks/RESULTS.md 2e). Here the weights need no legacy parse: the tensor table is walked directly,
tensors are dequantized one at a time with gguf-py (the same arithmetic and the same per-architecture fixes
transformers applies, so the saved weights are the same bytes) into a model built on the meta device, and
nothing but the bf16 weights stays resident. The config still comes from one legacy parse, and `AutoTokenizer`
makes its own (to pick the tokenizer class) before its fast reader builds the vocabulary.

Anything this path does not handle (a transformers that moved these functions, a tensor processor that writes
tensors of its own, a weight left unfilled) raises `Unsupported`; the caller then uses `from_pretrained`.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

# Byte widths of GGUF's fixed-size metadata value types; 8 is a string, 9 an array.
_WIDTH = {0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8}


class Unsupported(Exception):
    """This file (or this transformers) needs the reference path."""


class TensorEntry(NamedTuple):
    name: str
    shape: tuple[int, ...]  # torch order (GGUF lists the fastest-moving dimension first)
    qtype: int
    start: int  # absolute byte offset in the file
    nbytes: int


def tensor_table(path: Path) -> tuple[str, list[TensorEntry]]:
    """The architecture and tensor table of a GGUF file, walking past its metadata without decoding it
    (gguf-py's reader builds an object per vocabulary entry: most of a legacy parse's time and memory)."""
    from gguf import GGML_QUANT_SIZES

    blob = np.memmap(path, mode="r", dtype=np.uint8)

    def string(pos: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", blob, pos)
        return bytes(blob[pos + 8: pos + 8 + n]).decode("utf-8"), pos + 8 + n

    def skip(pos: int, kind: int) -> int:
        if kind in _WIDTH:
            return pos + _WIDTH[kind]
        if kind == 8:
            return pos + 8 + struct.unpack_from("<Q", blob, pos)[0]
        if kind == 9:
            item, count = struct.unpack_from("<IQ", blob, pos)
            pos += 12
            if item in _WIDTH:
                return pos + count * _WIDTH[item]
            for _ in range(count):
                pos = skip(pos, item)
            return pos
        raise Unsupported(f"GGUF metadata value of type {kind}")

    if bytes(blob[:4]) != b"GGUF":
        raise Unsupported("not a GGUF file")
    version, n_tensors, n_meta = struct.unpack_from("<IQQ", blob, 4)
    if version not in (2, 3):
        raise Unsupported(f"GGUF version {version}")
    pos, architecture, alignment = 24, None, 32
    for _ in range(n_meta):
        key, pos = string(pos)
        (kind,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        if key == "general.architecture":
            architecture, pos = string(pos)
        elif key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", blob, pos)
            pos += 4
        else:
            pos = skip(pos, kind)
    raw = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        (n_dims,) = struct.unpack_from("<I", blob, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", blob, pos + 4)
        qtype, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        raw.append((name, tuple(reversed(dims)), qtype, offset))
    data_start = (pos + alignment - 1) // alignment * alignment
    entries = []
    for name, shape, qtype, offset in raw:
        if qtype not in GGML_QUANT_SIZES:
            raise Unsupported(f"tensor {name} has ggml type {qtype}")
        block, size = GGML_QUANT_SIZES[qtype]
        entries.append(TensorEntry(name, shape, qtype, data_start + offset, int(np.prod(shape)) // block * size))
    if architecture is None:
        raise Unsupported("no general.architecture")
    return architecture, entries


def convert_gguf(path: Path, folder: Path) -> None:
    """Write the tokenizer, config and bf16 weights of GGUF `path` into `folder` (save_pretrained layout)."""
    try:
        from gguf import MODEL_ARCH_NAMES, GGMLQuantizationType, get_tensor_name_map
        from gguf.quants import dequantize
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.modeling_gguf_pytorch_utils import (Gemma2TensorProcessor, LlamaTensorProcessor, TENSOR_PROCESSORS,
                                                               TensorProcessor, load_gguf_checkpoint)
    except ImportError as err:  # a transformers that moved these
        raise Unsupported(str(err)) from None

    from lsllm.memory import release_freed_memory

    # Config keys exactly as from_pretrained reads them; the vocabulary this parse also decodes is dropped at once.
    gguf_config = load_gguf_checkpoint(str(path), return_tensors=False)["config"]
    release_freed_memory()
    config = AutoConfig.for_model(**gguf_config)
    config.dtype = torch.bfloat16  # what from_pretrained(dtype=bf16) records in config.json
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tokenizer.save_pretrained(folder)
    del tokenizer
    release_freed_memory()

    architecture, entries = tensor_table(path)
    arch = next((key for key, value in MODEL_ARCH_NAMES.items() if value == architecture), None)
    if arch is None:
        raise Unsupported(f"gguf-py has no tensor names for architecture {architecture}")
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=gguf_config)
    # Processors that only rename or fix one tensor at a time; the MoE ones split and merge expert tensors.
    if type(processor) not in (TensorProcessor, LlamaTensorProcessor, Gemma2TensorProcessor):
        raise Unsupported(f"{type(processor).__name__} writes tensors of its own")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    names = get_tensor_name_map(arch, config.num_hidden_layers)
    to_hf = {}
    for hf_name in model.state_dict():
        base, _, suffix = processor.preprocess_name(hf_name).rpartition(".")
        gguf_name = names.get_name(base)
        if gguf_name is not None:
            to_hf[f"{gguf_name}.{suffix}"] = hf_name

    blob = np.memmap(path, mode="r", dtype=np.uint8)
    weights: dict[str, torch.Tensor] = {}
    side: dict = {"config": gguf_config, "tensors": {}}
    for info in entries:
        raw = np.asarray(blob[info.start: info.start + info.nbytes])
        rows = int(np.prod(info.shape[:-1])) if len(info.shape) > 1 else 1
        values = dequantize(raw.reshape(rows, -1), GGMLQuantizationType(info.qtype)).reshape(info.shape)
        # the same per-tensor fixes (Llama's q/k permutation, Gemma's norm offset) load_gguf_checkpoint applies
        result = processor.process(weights=values, name=info.name, tensor_key_mapping=to_hf, parsed_parameters=side)
        if result.name not in to_hf:
            continue  # e.g. rope_freqs: derived from the config, as in transformers
        fixed = result.weights
        if not (fixed.flags.writeable and fixed.flags.c_contiguous and fixed.dtype == np.float32):
            fixed = np.array(fixed, dtype=np.float32)  # a view of the mapped file (F32 tensors) or a permutation
        weights[to_hf[result.name]] = torch.from_numpy(fixed).to(torch.bfloat16)
        del raw, values, result, fixed
    if side["tensors"]:
        raise Unsupported("the tensor processor wrote tensors of its own")

    model.load_state_dict(weights, strict=False, assign=True)
    model.tie_weights()
    empty = [name for name, p in model.named_parameters() if p.is_meta]
    if empty:
        raise Unsupported(f"{len(empty)} weights have no GGUF tensor (first: {empty[0]})")
    model.config.name_or_path = str(path)
    model.save_pretrained(folder)
