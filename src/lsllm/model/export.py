"""`lsllm export`: copy a model folder, or merge LoRA into a folder that loads with transformers alone.

Merged export: a plain transformers folder; for decoders with `last` pooling or token tasks it is an
`AutoModelFor{Sequence,Token}Classification` checkpoint with `is_causal` kept in its config.
ONNX export (`format="onnx"`, optionally int8): one graph that onnxruntime runs (`lsllm.model.onnx_export`).

An export never touches anything but its own output: an existing output is refused unless
`overwrite=True` *and* it is an earlier lsllm export (it holds `export.json`); the output may not be the
source, lie inside the source's run folder, or contain it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import save_file
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification
from transformers.models.auto.modeling_auto import (MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
                                                   MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES)

from lsllm.errors import LsllmError, RunFolderError
from lsllm.files import atomic_folder, is_inside, output_lock, write_json_atomic
from lsllm.model.build import HEAD_FILE, _quiet_transformers, load_model
from lsllm.model.card import CARD, write_model_card
from lsllm.model.spec import SPEC_FILE, ModelSpec

EXPORT_FILE = "export.json"
"""Marks a folder as an lsllm export: the only kind of existing folder `--overwrite` may replace."""


def exportable_as_auto_class(spec: ModelSpec, model_type: str) -> bool:
    """transformers' own heads pool the last real token (sequence) or keep every position (token)."""
    if spec.encoder:
        return False
    mapping = (MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES if spec.task == "token"
               else MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)
    if model_type not in mapping:
        return False
    return spec.task == "token" or spec.pooling == "last"


def check_export_target(source_model_dir: Path, output: Path, overwrite: bool = False) -> None:
    """Refuse an output that would destroy something: the source, its run folder, or a user's folder."""
    run_dir = source_model_dir.parent if (source_model_dir.parent / "config.yaml").is_file() else source_model_dir
    if is_inside(output, run_dir) or is_inside(source_model_dir, output):
        raise RunFolderError(f"--output {output} overlaps the run being exported ({run_dir}); "
                             "export to a folder outside it")
    if output.is_symlink() or output.exists():
        if not overwrite:
            raise RunFolderError(f"{output} already exists; choose another --output, or pass --overwrite to "
                                 "replace an earlier lsllm export")
        if not (output.is_dir() and (output / EXPORT_FILE).is_file() and (output / SPEC_FILE).is_file()):
            raise RunFolderError(f"{output} is not an lsllm export (no {EXPORT_FILE}); --overwrite replaces only "
                                 "earlier exports, never other folders: choose another --output")


def export_model(run_model_dir: Path, output: Path, merge: bool = False, overwrite: bool = False,
                 format: str = "hf", int8: bool = False) -> Path:
    """Copy a model folder, merge LoRA into a plain transformers folder, or write an ONNX graph (see module
    docstring)."""
    run_model_dir, output = Path(run_model_dir), Path(output)
    if format not in ("hf", "onnx"):
        raise LsllmError(f"--format {format!r}: use hf or onnx (PyTorch weights, or one graph for onnxruntime)")
    if int8 and format != "onnx":
        raise LsllmError("--int8 quantizes an ONNX export: add --format onnx")
    ModelSpec.load(run_model_dir)  # a clear error for a folder that is not an lsllm model
    check_export_target(run_model_dir, output, overwrite)
    with output_lock(output, "export folder"):
        check_export_target(run_model_dir, output, overwrite)  # again, now that we own the target
        if format == "onnx":
            _write_onnx(run_model_dir, output, int8)
        elif merge:
            _write_merged(run_model_dir, output)
        else:
            with atomic_folder(output, replace=overwrite) as tmp:
                shutil.copytree(run_model_dir, tmp, dirs_exist_ok=True)
                if (run_model_dir.parent / "metrics.json").is_file() or not (tmp / CARD).is_file():
                    write_model_card(tmp, run_model_dir.parent)  # also for runs older than model cards
                _mark(tmp, run_model_dir, merge)
    return output


def _write_merged(run_model_dir: Path, output: Path) -> None:
    model, tokenizer = load_model(run_model_dir, merge=True)  # a QLoRA base is dequantized, then merged
    spec, backbone = model.spec, model.backbone
    config = backbone.config
    with atomic_folder(output, replace=True) as tmp:  # check_export_target allowed replacing it
        if exportable_as_auto_class(spec, config.model_type):
            auto = AutoModelForTokenClassification if spec.task == "token" else AutoModelForSequenceClassification
            config.num_labels = spec.num_labels
            config.id2label = dict(enumerate(spec.labels))
            config.label2id = {name: i for i, name in enumerate(spec.labels)}
            with _quiet_transformers():
                head_model = auto.from_config(config)
            getattr(head_model, head_model.base_model_prefix).load_state_dict(backbone.state_dict())
            head_model.score.load_state_dict(model.score.state_dict())
            head_model.config.is_causal = not spec.bidirectional
            head_model.save_pretrained(tmp)
            auto_class = auto.__name__
        else:
            auto_class = None
            backbone.save_pretrained(tmp)
            save_file({k: v.contiguous() for k, v in model.score.state_dict().items()}, tmp / HEAD_FILE)
        tokenizer.save_pretrained(tmp)
        spec.merged = True
        spec.lora = {}
        spec.quantize = "none"  # merged weights are float32 (a QLoRA base is dequantized first)
        spec.save(tmp)
        write_model_card(tmp, run_model_dir.parent, auto_class)
        _mark(tmp, run_model_dir, merge=True)


def _write_onnx(run_model_dir: Path, output: Path, int8: bool) -> None:
    from lsllm.model.onnx_export import write_onnx

    with atomic_folder(output, replace=True) as tmp:  # check_export_target allowed replacing it
        write_onnx(run_model_dir, tmp, int8)
        write_model_card(tmp, run_model_dir.parent)
        _mark(tmp, run_model_dir, merge=True, format="onnx", int8=int8)


def _mark(folder: Path, source: Path, merge: bool, format: str = "hf", int8: bool = False) -> None:
    from lsllm import __version__

    write_json_atomic(folder / EXPORT_FILE, {"source": str(source.resolve()), "merged": merge, "format": format,
                                             "int8": int8, "lsllm_version": __version__})



def push_to_hub(folder: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload an export folder (model, tokenizer, model card) to a Hugging Face hub model repository, creating it
    if needed; return the repository's URL. Any failure (network, auth, offline mode) is one LsllmError that says
    the export itself is complete and kept."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    try:
        api = HfApi(token=token)
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message=f"lsllm export of {folder.name}")
    except Exception as err:  # the network boundary: httpx, hub HTTP errors, offline mode, bad repo ids
        raise LsllmError(f"could not upload {folder} to the hub repository {repo_id} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no message'}); the export in {folder} is "
                         "complete: once the name, network and token (HF_TOKEN or `hf auth login`) are right, "
                         f"upload it with `hf upload {repo_id} {folder}`") from None
    return str(url)
