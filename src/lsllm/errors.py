"""Every problem a user can fix is an `LsllmError`: the CLI prints it as one `error:` line and exits 2.

The subclasses say which input was wrong; each message names the file (and line) and what to do.
"""
from __future__ import annotations


class LsllmError(ValueError):
    """A problem with the user's input, configuration or files (not a bug in lsllm)."""


class ConfigError(LsllmError):
    """Invalid configuration; the message lists every problem found."""


class DataError(LsllmError):
    """Bad input data. The message names the file, the line and what to do."""


class ModelSourceError(LsllmError):
    """A model source that can't be resolved or loaded; the message says what to do."""


class AttentionModeError(LsllmError):
    """The backbone's attention does not behave as requested (causal / bidirectional / padding)."""


class RunFolderError(LsllmError):
    """A run or output folder that can't be used: exists, is busy, or has nothing to resume."""
