"""Turn a user's shard spec (folder, glob, brace pattern, list, URL) into a sorted list of paths."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

import braceexpand

from lift.errors import LiftError

_URL_PREFIXES = ("pipe:", "s3://", "gs://", "http://", "https://", "hf://")


def is_url(spec: str) -> bool:
    return spec.startswith(_URL_PREFIXES)


def expand_paths(
    spec: str | os.PathLike | Iterable[str | os.PathLike], suffixes: tuple[str, ...] = ()
) -> list[str]:
    """Expand `spec` into concrete paths, in a stable order.

    Accepts a folder (its files ending in `suffixes`, sorted), a glob, a brace pattern
    (`shard-{00000..00099}.tar`), a comma-free list of any of these, or URLs (kept as given).
    Raises LiftError when a local spec matches nothing.
    """
    specs = [os.fspath(spec)] if isinstance(spec, (str, os.PathLike)) else [os.fspath(s) for s in spec]
    out: list[str] = []
    for s in specs:
        for part in braceexpand.braceexpand(s):
            if is_url(part):
                out.append(part)
                continue
            p = Path(part).expanduser()
            if p.is_dir():
                found = sorted(
                    str(f) for f in p.iterdir() if f.is_file() and (not suffixes or f.name.endswith(suffixes))
                )
                if not found:
                    raise LiftError(f"{p}: folder has no files ending in {', '.join(suffixes) or 'anything'}")
                out.extend(found)
            elif any(ch in part for ch in "*?["):
                found = sorted(glob.glob(str(p)))
                if not found:
                    raise LiftError(f"{part}: glob matches no files")
                out.extend(found)
            elif p.exists():
                out.append(str(p))
            else:
                raise LiftError(f"{part}: no such file or folder")
    return out
