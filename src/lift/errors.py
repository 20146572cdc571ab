"""User-facing errors and the stop/skip policy for bad input."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

ON_ERROR_CHOICES = ("stop", "skip")


class LiftError(Exception):
    """A problem with the user's input or files: printed as one line, no traceback.

    The message names the file, row or key and says what is wrong.
    """


def first_line(e: BaseException) -> str:
    """A library exception's message, cut to its first line (for one-line LiftErrors)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class LiftWarning(UserWarning):
    """Something the user should know that does not stop the job; the CLI prints it in one line."""


# errors of the place being written rather than of lift's input: told in one line, never a traceback
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def mount_point(path: str | os.PathLike) -> str:
    """The mount point holding `path` (or its nearest existing ancestor)."""
    p = os.path.abspath(path)
    while not os.path.exists(p) and p != os.path.dirname(p):
        p = os.path.dirname(p)
    while not os.path.ismount(p):
        p = os.path.dirname(p)
    return p


def os_error_reason(e: OSError) -> str:
    """A few words on an OSError: "no space left on device /mnt/x", "read-only file system", ..."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" {mount_point(e.filename)}" if e.filename else ""
        return ("disk quota exceeded" if e.errno == errno.EDQUOT else "no space left on device") + where
    return e.strerror.lower() if e.strerror else type(e).__name__


def os_error_message(e: OSError) -> str:
    """One line for an OSError that stopped a job: what happened, where, and what to do."""
    where = f"{e.filename}: " if e.filename else ""
    hint = {
        errno.ENOSPC: "free some space or write elsewhere",
        errno.EDQUOT: "free some space or write elsewhere",
    }
    todo = hint.get(e.errno, "choose a location you can write to")
    return f"{where}{os_error_reason(e)}; {todo}"


@dataclass
class ErrorPolicy:
    """Decides what happens to a bad item: stop the job (default) or skip it and count it."""

    mode: str = "stop"
    skipped: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    def __post_init__(self) -> None:
        if self.mode not in ON_ERROR_CHOICES:
            raise LiftError(f"--on-error must be one of {ON_ERROR_CHOICES}, got {self.mode!r}")

    def fail(self, message: str) -> None:
        """Raise `LiftError(message)` under `stop`; count it under `skip`."""
        if self.mode == "stop":
            raise LiftError(message)
        self.skipped += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(message)
