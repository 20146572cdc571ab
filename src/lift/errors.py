"""User-facing errors and the stop/skip policy for bad input."""

from __future__ import annotations

from dataclasses import dataclass, field

ON_ERROR_CHOICES = ("stop", "skip")


class LiftError(Exception):
    """A problem with the user's input or files: printed as one line, no traceback.

    The message names the file, row or key and says what is wrong.
    """


def first_line(e: BaseException) -> str:
    """A library exception's message, cut to its first line (for one-line LiftErrors)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


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
