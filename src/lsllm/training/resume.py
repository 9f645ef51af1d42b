"""`--resume` continues the interrupted run only: same data, same settings, apart from a few that can't
change what the run learns.

When a run starts, `record_run_inputs` writes `run_inputs.json` into its work folder: the full config and
a fingerprint (size, sha256) of every input file. `check_resume` compares a resume's config and files
with it and refuses any difference outside RESUMABLE_CHANGES, so a resumed run never silently mixes two
trainings (and config.yaml, rewritten on resume, never describes a run that didn't happen).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lsllm.config import RunConfig
from lsllm.errors import LsllmError, RunFolderError
from lsllm.files import write_json_atomic

RUN_INPUTS = "run_inputs.json"

# Settings a resume may change. Allowed: extending the run (max_steps, epochs; the LR decay then follows
# the new length from here on) and settings that only change speed, memory or logging.
# Refused, like everything else:
# - train.eval_every: evaluations pick the kept model, so a new cadence mixes two selections that no
#   config describes; it also changes what a stale count (in evaluations) of early stopping means.
# - train.early_stopping: the saved stale count was measured against the old patience; a lower one can
#   end the run at once, a higher one keeps a run going that the original settings would have stopped.
RESUMABLE_CHANGES = frozenset({"train.max_steps", "train.epochs", "train.eval_batch_size", "train.log_every",
                               "train.compile", "train.report_to"})

# Compared by content (sha256), not by path: a moved or renamed file with the same bytes is fine.
INPUT_FILES = ("data.train", "data.validation", "data.test", "prompt.file")


def _get(config: RunConfig, dotted: str) -> str | None:
    section, name = dotted.split(".")
    return getattr(getattr(config, section), name)


def _sha256_file(path: Path, digest=None):
    digest = digest or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest


def fingerprint(path: str) -> dict[str, Any]:
    """Path as given, absolute path, size and sha256 of a file, or of a folder (e.g. `save_to_disk`):
    sha256 over "<sha256 of file>  <relative path>" lines of every file, sorted like `sha256sum`."""
    source = Path(path)
    entry: dict[str, Any] = {"path": path, "resolved": str(source.resolve()), "size": None, "sha256": None}
    if source.is_file():
        entry.update(size=source.stat().st_size, sha256=_sha256_file(source).hexdigest())
    elif source.is_dir():
        files = sorted((p.relative_to(source).as_posix(), p) for p in source.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for name, p in files:
            digest.update(f"{_sha256_file(p).hexdigest()}  {name}\n".encode())
        entry.update(size=sum(p.stat().st_size for _, p in files), sha256=digest.hexdigest())
    return entry  # size and sha256 stay None for a path that doesn't exist


def fingerprint_inputs(config: RunConfig) -> dict[str, dict[str, Any]]:
    """{"data.train": {path, resolved, size, sha256}, ...} for every input file the config names."""
    return {key: fingerprint(_get(config, key)) for key in INPUT_FILES if _get(config, key)}


def record_run_inputs(work_dir: str | Path, config: RunConfig) -> None:
    """Write work_dir/run_inputs.json: what check_resume compares a later --resume with."""
    write_json_atomic(Path(work_dir) / RUN_INPUTS, {"inputs": fingerprint_inputs(config), "config": config.to_dict()})


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one {'a.b': value} dict (the config's dotted field names)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _load_saved(work: Path) -> tuple[RunConfig, dict | None]:
    """The interrupted run's config and input fingerprints (None when only config.yaml is there)."""
    record, yaml_file = work / RUN_INPUTS, work / "config.yaml"
    try:
        if record.is_file():
            saved = json.loads(record.read_text(encoding="utf-8"))
            if not (isinstance(saved, dict) and isinstance(saved.get("inputs"), dict)
                    and isinstance(saved.get("config"), dict)):
                raise LsllmError(f"{record}: expected an object with inputs and config")
            return RunConfig.from_dict(saved["config"], str(record)), saved["inputs"]
        if yaml_file.is_file():  # a run started before run_inputs.json existed: settings only
            return RunConfig.from_yaml(yaml_file), None
    except (ValueError, TypeError, AttributeError, KeyError) as err:  # bad JSON, unknown keys (LsllmError)
        raise RunFolderError(f"cannot resume {work}: can't read the interrupted run's settings "
                             f"({err}); delete {work} to start over") from None
    raise RunFolderError(f"cannot resume {work}: it has neither {RUN_INPUTS} nor config.yaml, so its settings "
                         f"are unknown; delete {work} to start over")


def check_resume(work_dir: str | Path, config: RunConfig) -> list[str]:
    """Raise RunFolderError listing every difference between `config` (and its input files) and the
    interrupted run in work_dir, outside RESUMABLE_CHANGES; return the allowed differences, for the log.

    Configs are compared exactly as RunConfig.to_dict() gives them: `lr: null` and `lr: 0.0005` differ
    even where 0.0005 is the default. That is the rule config.yaml can show, and resolving defaults
    (lr, pooling, LoRA settings...) would need the model; repeating the original command never trips it.
    """
    work = Path(work_dir)
    saved, inputs = _load_saved(work)
    before, now = flatten(saved.to_dict()), flatten(config.to_dict())
    refused, allowed = [], []
    for key in sorted(before.keys() | now.keys()):
        # output: the same run folder by construction (only its spelling can differ). Input paths: below.
        if key == "output" or (key in INPUT_FILES and inputs is not None):
            continue
        if before.get(key) != now.get(key):
            (allowed if key in RESUMABLE_CHANGES else refused).append(f"{key}: {before.get(key)} -> {now.get(key)}")
    if inputs is not None:
        current = fingerprint_inputs(config)
        for key in INPUT_FILES:
            old, new = inputs.get(key), current.get(key)
            if old is None or new is None:
                if old != new:
                    refused.append(f"{key}: {old and old.get('path')} -> {new and new['path']}")
            elif new["sha256"] is None:
                refused.append(f"{key}: {new['path']} does not exist")
            elif old.get("sha256") != new["sha256"]:
                refused.append(f"{key}: {new['path']} changed since the run started "
                               f"(sha256 {str(old.get('sha256'))[:12]} -> {str(new['sha256'])[:12]})")
            elif old.get("resolved") != new["resolved"]:
                allowed.append(f"{key}: {old.get('path')} -> {new['path']} (same content)")
    if refused:
        raise RunFolderError(
            f"cannot resume {work}: settings differ from the interrupted run: {'; '.join(refused)}; rerun with "
            f"the original settings (only {', '.join(sorted(RESUMABLE_CHANGES))} may change) or start a new run "
            "with another --output")
    return allowed
