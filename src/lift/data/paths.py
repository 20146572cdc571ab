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


def shard_name(path: str) -> str:
    """The name a shard goes by: its file name up to the first dot (`00000.tar`, `00000.parquet` and
    `00000_stats.json` of img2dataset -> `00000`, `00000`, `00000_stats`), so stores join data by shard."""
    return Path(path).name.split(".", 1)[0]


def expand_paths(
    spec: str | os.PathLike | Iterable[str | os.PathLike], suffixes: tuple[str, ...] = ()
) -> list[str]:
    """Expand `spec` into concrete paths, in a stable order.

    Accepts a folder (its files ending in `suffixes`, sorted), a glob, a brace pattern
    (`shard-{00000..00099}.tar`), a comma-free list of any of these, or URLs (kept as given).
    A path that exists is used as it is, even when its name holds `[1]` or `{a,b}`.
    Raises LiftError when a local spec matches nothing.
    """
    specs = [os.fspath(spec)] if isinstance(spec, (str, os.PathLike)) else [os.fspath(s) for s in spec]
    out: list[str] = []
    for s in specs:
        # an existing file named `img[1].tar` or `{a,b}.tar` is that file, not a pattern
        parts = [s] if not is_url(s) and Path(s).expanduser().exists() else braceexpand.braceexpand(s)
        for part in parts:
            out.extend(_expand_one(part, suffixes))
    return out


def _expand_one(part: str, suffixes: tuple[str, ...]) -> list[str]:
    if is_url(part):
        return [part]
    p = Path(part).expanduser()
    if p.is_dir():
        found = sorted(
            str(f) for f in p.iterdir() if f.is_file() and (not suffixes or f.name.endswith(suffixes))
        )
        if not found:
            raise LiftError(f"{p}: folder has no files ending in {', '.join(suffixes) or 'anything'}")
        return found
    if p.exists():
        return [str(p)]
    if any(ch in part for ch in "*?["):
        found = sorted(glob.glob(str(p)))
        if not found:
            raise LiftError(f"{part}: glob matches no files")
        return found
    raise LiftError(f"{part}: no such file or folder")
