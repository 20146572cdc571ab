"""Tar shards end with two zero blocks; `tarfile` stops quietly at a header cut short, so a shard
truncated at a 512-byte boundary would read as a shorter, valid one. Every reader of local tar
shards checks the end marker with `check_tar_end`, so `lift embed` and `lift train` refuse the same
damaged shards, with the same message."""

from __future__ import annotations

import tarfile

from lift.errors import LiftError


def check_tar_end(path: str, offset: int) -> None:
    """Raise LiftError naming `path` unless its end-of-archive marker sits at `offset` (`tar.offset`
    after iterating every member)."""
    with open(path, "rb") as f:
        f.seek(offset)
        marker = f.read(2 * tarfile.BLOCKSIZE)
    if len(marker) < 2 * tarfile.BLOCKSIZE or marker.strip(b"\0"):
        raise LiftError(
            f"{path}: tar shard is truncated at byte {offset} (no end-of-archive marker); "
            "re-download or re-create this shard"
        )
