"""Where `lift` may write, checked before any work starts.

Every output folder `lift` creates (a run, an export, a synthetic world, a demo) holds a marker
file naming what it is. An existing folder is replaced only when the user asks for it, `lift`
wrote it (the marker) as the same kind of output, and it is neither the source being read (nor
one of its ancestors) nor the working directory (nor one of its ancestors). Everything else is
refused in one line: `lift` never deletes what it did not create.

    out = prepare_output_dir("exports/b16", kind="export", overwrite=True, sources=["runs/b16"])
    ... write into a temp folder, then rename it onto `out` ...
    write_marker(folder, "export")
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lift.atomic import write_json
from lift.errors import LiftError, os_error_reason

MARKER = ".lift-output.json"


def write_marker(folder: str | os.PathLike, kind: str) -> None:
    """Mark `folder` as a `kind` output written by lift (what later replacements check). No time stamp:
    outputs stay byte-identical between runs."""
    from lift import __version__

    write_json(Path(folder) / MARKER, {"kind": kind, "lift_version": __version__})


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a folder lift wrote, or None."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: str | os.PathLike, *, flag: str = "--out") -> None:
    """Refuse an output location that cannot be written (read-only, no permission, a file in the way).

    Probes the nearest existing folder with a temp file that is removed at once, so the check is
    the real one (root ignores permission bits; a read-only mount does not).
    """
    path = Path(path)
    anc = _nearest_existing(path)
    if not anc.is_dir():
        raise LiftError(f"{flag} {path}: {anc} is a file, not a folder; choose another location")
    try:
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as e:
        raise LiftError(
            f"{flag} {path}: cannot write in {anc} ({os_error_reason(e)}); choose another location"
        ) from None


def _holds(folder: Path, other: Path) -> bool:
    """True when `folder` is `other` or one of its ancestors."""
    return folder == other or folder in other.parents


def check_replaceable(
    out: str | os.PathLike, *, kind: str, sources: Iterable[str | os.PathLike] = (), flag: str = "--out"
) -> None:
    """Refuse to replace `out` unless lift wrote it as `kind` and it holds neither a source nor the cwd."""
    out = Path(out)
    here = out.resolve()
    for src in sources:
        if _holds(here, Path(src).resolve()):
            raise LiftError(
                f"{flag} {out}: is the source {src} or holds it; replacing it would delete the input. "
                "Choose a new folder"
            )
    if _holds(here, Path.cwd().resolve()):
        raise LiftError(
            f"{flag} {out}: holds the working directory; lift will not replace it. Choose a new folder"
        )
    marker = read_marker(out)
    if marker is None:
        raise LiftError(
            f"{flag} {out}: exists and was not written by lift (no {MARKER}); lift replaces only its own "
            "outputs. Remove it yourself or choose a new folder"
        )
    if marker["kind"] != kind:
        raise LiftError(
            f"{flag} {out}: lift wrote it as a {marker['kind']!r} folder, not a {kind!r} one; it will not replace it. "
            "Choose a new folder"
        )


def check_output_folder(out: str | os.PathLike, *, flag: str = "--out") -> bool:
    """Refuse an output folder path that is a file or cannot be written; True when it exists and is
    not empty (the caller decides whether that is allowed)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LiftError(f"{flag} {out}: is an existing file; give a folder path")
    check_writable(out, flag=flag)
    return out.is_dir() and any(out.iterdir())


def prepare_output_dir(
    out: str | os.PathLike, *, kind: str, overwrite: bool = False, sources: Iterable[str | os.PathLike] = (),
    flag: str = "--out", exists_hint: str = "pass --overwrite to replace it, or choose a new folder",
) -> bool:  # fmt: skip
    """Check `out` before any work: not a file, writable, and either new/empty or replaceable.

    Returns True when `out` is an existing, non-empty folder that the caller may replace (only with
    `overwrite`); False when it is new or empty. Refuses an existing non-empty folder without
    `overwrite`, naming `exists_hint`.
    """
    out = Path(out)
    if not check_output_folder(out, flag=flag):
        return False
    if not overwrite:
        raise LiftError(f"{flag} {out}: already exists and is not empty; {exists_hint}")
    check_replaceable(out, kind=kind, sources=sources, flag=flag)
    return True


def check_output_file(
    path: str | os.PathLike, *, flag: str = "--out", replaceable: Callable[[Path], bool] | None = None,
    what: str = "a lift output",
) -> None:  # fmt: skip
    """Check a single output file before any work: not a folder, writable, and an existing file only
    when `replaceable(path)` says lift wrote it."""
    path = Path(path)
    if path.is_dir():
        raise LiftError(f"{flag} {path}: is a folder; give a file path (e.g. {path / 'result.json'})")
    check_writable(path.parent if path.exists() else path, flag=flag)
    if path.exists() and not (replaceable and replaceable(path)):
        raise LiftError(
            f"{flag} {path}: exists and is not {what}; lift will not overwrite it. Choose a new file"
        )
