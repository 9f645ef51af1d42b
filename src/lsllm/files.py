"""Writing the user's disk safely: atomic files and folders, normal permissions, one writer per output.

- A file or folder appears under its final name only when complete (temp beside it, then `os.replace`),
  so a reader or a killed process sees the old content or the whole new one, never half.
- Temporary folders are locked (`flock`) while their writer lives; a later writer of the same target
  removes the ones whose writer died (kill -9 leaves them behind), never one still being written.
- `output_lock` gives one process at a time a target path (a run folder, an export), from its
  first check to its final rename; `cache_lock` makes a second builder of a shared cache entry wait
  for the first instead of failing.
- Nothing here deletes or replaces a user's existing file or folder unless the caller says so.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lsllm.errors import LsllmError, RunFolderError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_mode(path: str | os.PathLike, folder: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700; give results the mode a plain open()/mkdir would have."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def _temp_file(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_bytes_atomic(path: str | os.PathLike, write) -> None:
    """Call `write(binary_file)` on a temp file beside `path`, fsync, then rename it to `path`."""
    path = Path(path)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        normal_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8, newlines verbatim) to `path` atomically."""
    write_bytes_atomic(path, lambda f: f.write(text.encode("utf-8")))


def json_default(obj: Any) -> Any:
    """`json.dumps` fallback for numpy scalars/arrays and paths."""
    if hasattr(obj, "tolist"):  # numpy arrays and scalars (and torch tensors)
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Pretty JSON (indent=2, key order kept, non-ASCII kept) written atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False, default=json_default)
    write_text_atomic(path, text + "\n")


def read_json_object(path: str | os.PathLike, fix: str, error: type[LsllmError] = LsllmError) -> dict:
    """A JSON object from a file lsllm wrote (or a model's config); any problem is one `error` naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise error(f"{path} is not valid JSON ({err}); {fix}") from None
    if not isinstance(data, dict):
        raise error(f"{path} must hold a JSON object; {fix}")
    return data


# ---------------------------------------------------------------------------
# locks


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise


@contextmanager
def output_lock(target: str | os.PathLike, what: str = "run folder") -> Iterator[None]:
    """Hold an exclusive lock on `target` (which need not exist) for the whole block.

    The lock is a hidden file `.<name>.lock` beside the target, removed on exit; the kernel drops the
    `flock` when its holder dies, so a killed process never blocks the next one.
    """
    target = Path(target)
    lock = target.with_name(f".{target.name}.lock")
    while True:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise unwritable(target, err) from None
        if not _try_flock(fd):
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise RunFolderError(
                f"{what} {target} is in use by another lsllm process{f' (pid {holder})' if holder else ''}; "
                "wait for it to finish or choose another --output")
        try:  # the previous holder may have unlinked the file between our open and flock: retry on the new one
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        _remove_quietly(str(lock))
        os.close(fd)


@contextmanager
def cache_lock(target: str | os.PathLike) -> Iterator[None]:
    """Wait for, then hold, the lock of a cache entry that any number of processes may need at once.

    Two `lsllm train` runs started together on a fresh machine both need the same converted model: the
    first builds it, the second blocks here and then finds it built (callers check again inside the
    block). The lock file `.<name>.lock` stays beside the entry: unlinking it would let a waiter lock a
    file that a newcomer no longer sees. The kernel drops the lock when its holder dies.
    """
    target = Path(target)
    lock = target.with_name(f".{target.name}.lock")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise unwritable(target, err) from None
    try:
        if not _try_flock(fd):  # say why nothing happens for a while (a Gemma conversion takes a minute)
            warnings.warn(f"waiting for another lsllm process to finish writing {target}", stacklevel=3)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def unwritable(path: str | os.PathLike, err: OSError) -> LsllmError:
    """A one-line error for a location we can't write (read-only, full, missing permission)."""
    reason = err.strerror or str(err)
    return LsllmError(f"cannot write {path}: {reason}; choose an --output on a writable disk with free space")


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, before any work, if a file can't be created beside `path`."""
    path = Path(path)
    if path.is_dir():
        raise LsllmError(f"{path} is a folder; pass a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_file(path, suffix=".probe")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise unwritable(path, err) from None


# ---------------------------------------------------------------------------
# folders


def temp_prefix(folder: Path) -> str:
    return f".{folder.name}.tmp-"


def remove_stale_temps(folder: Path) -> None:
    """Remove temp folders of `folder` left by writers that died (their lock is free)."""
    if not folder.parent.is_dir():
        return
    for candidate in folder.parent.glob(temp_prefix(folder) + "*"):
        if not candidate.is_dir() or candidate.is_symlink():
            continue
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _try_flock(fd):
                shutil.rmtree(candidate, ignore_errors=True)
        finally:
            os.close(fd)


@contextmanager
def atomic_folder(folder: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `folder`; on success it becomes `folder`, on error it vanishes.

    An existing `folder` is replaced only with replace=True (the caller decides that it is its own);
    otherwise it is an error and nothing is touched.
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=temp_prefix(folder)))
    except OSError as err:
        raise unwritable(folder, err) from None
    fd = os.open(tmp, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held while we write: remove_stale_temps leaves it alone
    try:
        normal_mode(tmp, folder=True)
        yield tmp
        if folder.exists() or folder.is_symlink():
            if not replace:
                raise RunFolderError(f"{folder} already exists; nothing was written")
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when `path` is `folder` or below it (after resolving links)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents
