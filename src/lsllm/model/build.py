"""Build, save and load LS models. Every folder written here loads with `from_pretrained`.

Model folder layout (`save_model`):
    lsllm.json            ModelSpec: task, labels, pooling, bidirectional, base model, LoRA settings
    adapter/              PEFT LoRA adapter (PeftModel.from_pretrained(AutoModel..., "adapter"))
    backbone/             instead of adapter/ for full fine-tuning: a plain AutoModel folder
    head.safetensors      the `score` head
    tokenizer files
Exports (copies and merged folders) are written by `lsllm.model.export`.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import (AutoConfig, AutoModel,
                          AutoTokenizer, PreTrainedTokenizerBase)
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from lsllm.config import ModelConfig
from lsllm.errors import ConfigError, ModelSourceError
from lsllm.files import atomic_folder
from lsllm.model.attention import check_attention, set_attention_mode
from lsllm.model.classifier import LSModel
from lsllm.model.lora import apply_lora, load_lora, resolve_lora
from lsllm.model.pooling import default_bidirectional, default_pooling
from lsllm.model.quantize import check_quantize, dequantized, one_cpu_kernel, prepare_for_training, quantization_config
from lsllm.model.sources import check_model_folder, loading, portable_source, resolve_recorded, resolve_source
from lsllm.model.spec import SPEC_FILE, ModelSpec

HEAD_FILE = "head.safetensors"


def is_encoder(config) -> bool:
    """BERT-style encoders: masked-LM families (decoder LLM families have no masked-LM class)."""
    return config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token (decoders often have none) and right padding."""
    with loading(path, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.sep_token
        if fallback is None:
            raise ModelSourceError(f"tokenizer of {path} has no pad, eos, unk or sep token to pad with; "
                                   "add a pad token to its tokenizer_config.json")
        tokenizer.pad_token = fallback
    # Right padding never leaves a causal query row with nothing to attend to.
    tokenizer.padding_side = "right"
    return tokenizer


@contextmanager
def _quiet_transformers():
    # Loading a CausalLM checkpoint into AutoModel reports the unused lm_head; that's expected.
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


EAGER_CPU_MAX_LENGTH = 256
"""On CPUs `auto` picks eager attention up to this max_length and SDPA above it. At classification lengths the
two train at the same speed on real padded batches (SDPA's flash backward was slower under bf16 on the machine
of RESULTS section 2), but eager attention keeps every layer's length x length probabilities for the backward
pass: `throughput.py --lengths` (RESULTS 2h, float32) measured SDPA at 1.00x eager's tokens/s at 256 tokens,
1.41x at 1,024 and 2.4x at 2,048, with 0.6, 1.4 and 4.9 GB less peak memory."""


def resolve_attention(attn_implementation: str, max_length: int | None = None) -> str:
    """`auto`: PyTorch SDPA (flash/efficient kernels) on GPUs; on CPUs eager for short inputs, SDPA for long."""
    if attn_implementation != "auto":
        return attn_implementation
    if torch.cuda.is_available() or (max_length or 0) > EAGER_CPU_MAX_LENGTH:
        return "sdpa"
    return "eager"


def load_backbone(path: str, bidirectional: bool, attn_implementation: str = "auto",
                  dtype: torch.dtype = torch.float32, check: bool = True, max_length: int | None = None,
                  quantize: str = "none", compute_dtype: torch.dtype | None = None):
    """`AutoModel` (no LM head) with the requested attention, proved by `check_attention`.
    Weights load from safetensors only: a pickled checkpoint can run code when loaded.
    quantize 4bit/8bit loads the linear layers through bitsandbytes (see lsllm.model.quantize), computing in
    compute_dtype; the probe then runs on the quantized model, the one that trains or predicts."""
    if Path(path).is_dir():
        check_model_folder(Path(path))
    with loading(path):
        config = AutoConfig.from_pretrained(path)
    encoder = is_encoder(config)
    if encoder and not bidirectional:
        raise ConfigError(f"{config.model_type} is an encoder: its attention is always bidirectional; drop --causal")
    with _quiet_transformers(), loading(path):
        backbone = AutoModel.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                             attn_implementation=resolve_attention(attn_implementation, max_length),
                                             quantization_config=quantization_config(quantize, compute_dtype))
    if quantize == "4bit":
        one_cpu_kernel(backbone)
    # A classifier never generates: no KV cache per forward (it costs a concatenation per layer and
    # makes torch.compile recompile for every layer index).
    backbone.config.use_cache = False
    if not encoder:
        set_attention_mode(backbone, bidirectional)
        if check:
            check_attention(backbone, bidirectional, pad_token_id=backbone.config.pad_token_id or 0)
    return backbone, encoder


def build_model(config: ModelConfig, labels: list[str], *, max_length: int = 128, label_all_subtokens: bool = False,
                seed: int = 0, frozen_dtype: torch.dtype | None = None) -> tuple[LSModel, PreTrainedTokenizerBase]:
    """A fresh LS / LS-un model and its tokenizer, ready to train.

    `config` gives the base model, task, attention, pooling, LoRA, dropout and attention backend;
    max_length and label_all_subtokens (data settings) are recorded in the model's spec.
    frozen_dtype (e.g. torch.bfloat16) stores the frozen base weights in that dtype when LoRA is used:
    under bf16 autocast they are cast to bf16 anyway, so this saves that cast every step and half
    their memory. LoRA weights and the head stay float32. With config.quantize the base's linear layers are
    4-bit or 8-bit instead (QLoRA), computing in frozen_dtype (else float32).
    """
    from lsllm import __version__

    check_quantize(config.quantize)
    path = resolve_source(config.model)
    tokenizer = load_tokenizer(path)
    bidirectional = config.bidirectional
    if bidirectional is None:
        bidirectional = default_bidirectional(config.task, is_encoder(AutoConfig.from_pretrained(path)))
    backbone, encoder = load_backbone(path, bidirectional, config.attn_implementation, max_length=max_length,
                                      quantize=config.quantize, compute_dtype=frozen_dtype)
    backbone.config.pad_token_id = tokenizer.pad_token_id
    settings = resolve_lora(backbone, config.lora, config.lora_rank, config.lora_alpha, config.lora_dropout,
                            config.lora_targets)
    if config.quantize != "none":
        backbone = prepare_for_training(backbone)
    elif settings and frozen_dtype is not None:
        backbone.to(frozen_dtype)  # after the attention probe, which runs in float32
    spec = ModelSpec(task=config.task, labels=list(labels), base_model=portable_source(config.model),
                     bidirectional=bidirectional,
                     pooling=config.pooling or default_pooling(bidirectional, encoder), pool_over=config.pool_over,
                     encoder=encoder, dropout=config.dropout, max_length=max_length,
                     label_all_subtokens=label_all_subtokens, lora=settings, quantize=config.quantize,
                     lsllm_version=__version__)
    torch.manual_seed(seed)  # LoRA and head initialisation are part of the seeded run
    model = LSModel(apply_lora(backbone, settings), spec, backbone.config.hidden_size)
    std = getattr(backbone.config, "initializer_range", 0.02)
    torch.nn.init.normal_(model.score.weight, std=std)
    if model.score.bias is not None:
        torch.nn.init.zeros_(model.score.bias)
    return model, tokenizer


def compile_blocks(model: torch.nn.Module) -> int:
    """Compile every transformer block in place (`torch.compile`, dynamic shapes); returns how many.

    Per block, not the whole model: the blocks share one compiled graph, so compiling costs about a
    minute on 2 CPU cores instead of ~12 for the unrolled model, and ran as fast in a side-by-side test.
    In place (`nn.Module.compile`), so parameter names, checkpoints and saved adapters are unchanged.
    """
    config = model.backbone.config if isinstance(model, LSModel) else model.config
    layers = getattr(config, "num_hidden_layers", None)
    blocks = next((m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == layers
                   and len({type(b) for b in m}) == 1), None)
    if blocks is None:
        raise ValueError(f"found no list of {layers} transformer blocks to compile in {type(model).__name__}")
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


def uncompile(model: torch.nn.Module) -> None:
    """Undo `compile_blocks`: every module runs eagerly again (same parameters)."""
    for module in model.modules():
        module._compiled_call_impl = None


def save_model(model: LSModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Write the model folder atomically (a temp folder renamed into place)."""
    folder = Path(folder)
    with atomic_folder(folder, replace=True) as tmp:  # the run's own model/ (best step so far)
        if model.spec.lora:
            model.backbone.save_pretrained(tmp / "adapter")
        else:
            model.backbone.save_pretrained(tmp / "backbone")
        save_file({k: v.detach().cpu().contiguous() for k, v in model.score.state_dict().items()}, tmp / HEAD_FILE)
        tokenizer.save_pretrained(tmp)
        model.spec.save(tmp)


def load_model(folder: Path, attn_implementation: str = "auto", merge: bool = False,
               frozen_dtype: torch.dtype | None = None) -> tuple[LSModel, PreTrainedTokenizerBase]:
    """Load a model folder written by `save_model` or `export_model`, in eval mode.

    frozen_dtype stores the frozen base weights of a LoRA model in that dtype, exactly as training
    did (see build_model), so predictions reproduce training-time evaluation. merge=True folds LoRA
    into the base weights instead (float32), as exports do. A quantized (QLoRA) base is quantized again
    exactly as in training (same weights, same result); merge=True dequantizes it first.
    """
    folder = Path(folder)
    spec = ModelSpec.load(folder)
    if spec.format == "onnx":
        raise ModelSourceError(f"{folder} is an ONNX export: lsllm predict, eval and serve run it (onnxruntime); "
                               "it has no PyTorch weights to load, train or export again: use its run folder")
    if spec.lora and not (folder / "adapter").is_dir():
        raise ModelSourceError(f"{folder} has no adapter/ folder, but its {SPEC_FILE} says it was trained with "
                               "LoRA; the model folder is incomplete: copy it again")
    head = _read_head(folder)  # before the weights load: a missing head fails in a second, not a minute
    tokenizer = load_tokenizer(str(folder))
    if (folder / "adapter").is_dir():
        # The base model as training recorded it (an absolute path for local ones, see portable_source).
        base = resolve_recorded(spec.base_model, folder / SPEC_FILE)
        check_quantize(spec.quantize)
        backbone, _ = load_backbone(base, spec.bidirectional, attn_implementation, max_length=spec.max_length,
                                    quantize=spec.quantize, compute_dtype=frozen_dtype)
        if spec.quantize != "none" and merge:
            backbone = dequantized(backbone)
        elif frozen_dtype is not None and not merge and spec.quantize == "none":
            backbone.to(frozen_dtype)
        backbone = load_lora(backbone, folder / "adapter")
    else:
        source = folder / "backbone" if (folder / "backbone").is_dir() else folder
        backbone, _ = load_backbone(str(source), spec.bidirectional, attn_implementation,
                                     max_length=spec.max_length)
    backbone.config.pad_token_id = tokenizer.pad_token_id
    hidden = (backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone).config.hidden_size
    model = LSModel(backbone, spec, hidden)
    try:
        model.score.load_state_dict(head)
    except RuntimeError as err:  # shape mismatch: labels or base model edited in lsllm.json
        detail = str(err).strip().splitlines()[-1].strip()
        raise ModelSourceError(f"the classification head in {folder} does not fit its {SPEC_FILE} "
                               f"({spec.num_labels} labels, hidden size {hidden}): {detail}; "
                               "restore the folder from a copy") from None
    if merge and spec.lora:
        model.backbone = model.backbone.merge_and_unload()
    return model.eval(), tokenizer


def _read_head(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / HEAD_FILE).is_file():
        with loading(folder / HEAD_FILE, "classification head"):
            return load_file(folder / HEAD_FILE)
    # A merged AutoModelFor*Classification export keeps the head as `score.*` inside its weights.
    head = {}
    for shard in folder.glob("*.safetensors"):
        with loading(shard, "classification head"):
            head.update({k.split(".", 1)[1]: v for k, v in load_file(shard).items() if k.startswith("score.")})
    if not head:
        raise ModelSourceError(f"no classification head in {folder} (no {HEAD_FILE}, no score.* weights); the "
                               "model folder is incomplete: copy it again or export it again")
    return head


__all__ = ["build_model", "save_model", "load_model", "load_tokenizer", "SPEC_FILE"]
