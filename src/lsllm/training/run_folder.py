"""The run folder's life: checked before any work, built in `<output>.incomplete`, renamed when complete.

lsllm only ever removes an `.incomplete` folder it made itself (it holds RUN_MARKER) and never writes over
a finished run or a folder of the user's.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from lsllm.config import RunConfig
from lsllm.errors import RunFolderError
from lsllm.files import write_text_atomic
from lsllm.training.checkpoint import CHECKPOINT
from lsllm.training.resume import record_run_inputs

RUN_MARKER = ".lsllm-run"
"""Written into `<output>.incomplete` when lsllm creates it: only such a folder is ever removed by lsllm."""


def check_run_folders(output: Path, work: Path, resume: bool) -> None:
    """Refuse anything that would overwrite a finished run or a folder lsllm did not create."""
    if output.exists() or output.is_symlink():
        raise RunFolderError(f"run folder {output} already exists; choose another --output or delete it")
    if resume and not (work / CHECKPOINT).is_dir():
        raise RunFolderError(f"nothing to resume: {work / CHECKPOINT} does not exist")
    if not resume and (work / CHECKPOINT).is_dir():
        raise RunFolderError(f"an interrupted run is in {work}; pass --resume to continue it, or delete it")
    if work.exists() and not (work / RUN_MARKER).is_file():
        raise RunFolderError(f"{work} exists but was not made by lsllm; move it away or choose another --output")


def fresh_work_folder(work: Path, config: RunConfig) -> None:
    """A new `<output>.incomplete`; one left by a run that died before its first checkpoint is replaced
    (it holds only that run's config and early log lines: check_run_folders proved it is lsllm's)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / RUN_MARKER).write_text("lsllm run folder in progress; renamed to its final name when complete\n")
    record_settings(work, config)


def record_settings(work: Path, config: RunConfig) -> None:
    """config.yaml and run_inputs.json as the run now stands (after a resume: with its allowed changes)."""
    write_text_atomic(work / "config.yaml", config.to_yaml())
    record_run_inputs(work, config)


def finish_run_folder(work: Path, output: Path) -> None:
    """Rename the complete run into place (never over something that appeared meanwhile)."""
    (work / RUN_MARKER).unlink(missing_ok=True)
    if output.exists() or output.is_symlink():
        raise RunFolderError(f"{output} appeared while training; the finished run is kept in {work}")
    os.replace(work, output)
