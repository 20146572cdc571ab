"""Torn-file-proof writes: temp name in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# how libraries that write in native code (safetensors, torch) word a full disk
_FULL_DISK = re.compile(r"No space left on device|os error 28|code: 28|StorageFull|file write failed")


def storage_error(e: BaseException, path: Path) -> OSError | None:
    """The OSError of a failed write of `path`, naming it: a plain write's error (which names no
    file), or a full disk a library (safetensors, torch) reported in its own words; else None."""
    if isinstance(e, OSError):
        return OSError(e.errno, e.strerror, str(path)) if e.filename is None and e.errno else None
    if not _FULL_DISK.search(str(e)):
        return None
    if "file write failed" in str(e):  # torch does not say why: ask the disk
        try:
            if shutil.disk_usage(path.parent if path.parent.exists() else ".").free > 1 << 20:
                return None
        except OSError:
            return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on a clean exit it replaces `path` in one rename.

    A crash at any instant leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if (full := storage_error(e, path)) is not None:
            raise full from e
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder `.NAME.tmp-PID` beside `path`; on a clean exit its files are fsynced and it
    takes `path`'s place (an existing `path` is replaced).

    An exception removes the temp folder; a crash leaves it beside the old folder (or none), never a
    half-written `path`. Files written with any library inside it are covered.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if (full := storage_error(e, path)) is not None:
            raise full from e
        raise
    for file in tmp.rglob("*"):
        if file.is_file():
            _fsync_file(file)
    if path.exists():  # a rerun replaces it
        shutil.rmtree(path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
