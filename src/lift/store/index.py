"""The store-wide key index: every key hash, sorted, beside its global row.

A lookup hashes the key, binary-searches the sorted hash array (a memmap: nothing is loaded) and
compares the stored key at each candidate row, so hash collisions and damaged index bytes give
"not found", never another key's vector. The index is built once, in `finalize`, from the
per-shard hash files; above `max_sort_rows` it is built bucket by bucket (top bits of the hash)
so that building a billion-key index never holds more than one bucket in memory.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from lift.atomic import atomic_write
from lift.errors import LiftError
from lift.store.format import INDEX_FILES, INDEX_ROW_DTYPE, KEY_HASH_DTYPE, OFFSET_DTYPE, new_checksum

MAX_SORT_ROWS = 1 << 24  # 16M rows, 256 MB of (hash, row) pairs sorted at once


class HashingWriter:
    """Writes bytes to a file while counting them and computing their blake2b."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.bytes, self._h = f, 0, new_checksum()

    def write(self, data: np.ndarray | bytes) -> None:
        view = (
            memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
            if isinstance(data, np.ndarray)
            else data
        )
        self.f.write(view)
        self._h.update(view)
        self.bytes += len(view)

    def record(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "blake2b": self._h.hexdigest()}


def read_key(root: Path, prefix: str, row: int) -> bytes:
    """The utf-8 bytes of one key, read straight from a shard's files."""
    off = np.fromfile(
        root / f"{prefix}.koff", dtype=OFFSET_DTYPE, count=2, offset=row * OFFSET_DTYPE.itemsize
    )
    with open(root / f"{prefix}.keys", "rb") as f:
        f.seek(int(off[0]))
        return f.read(int(off[1] - off[0]))


def _check_duplicates(
    hashes: np.ndarray, rows: np.ndarray, key_at: Callable[[int], tuple[bytes, str]]
) -> None:
    """Equal hashes are either a collision (fine) or a duplicate key (refused, naming it)."""
    same = np.flatnonzero(hashes[1:] == hashes[:-1])
    seen: dict[bytes, str] = {}
    for i in np.unique(np.concatenate([same, same + 1])):
        key, where = key_at(int(rows[i]))
        if key in seen:
            raise LiftError(
                f"duplicate key {key.decode('utf-8', 'replace')!r} in {seen[key]} and {where}: "
                "keys must be unique within a store"
            )
        seen[key] = where


def _bucket_pieces(
    root: Path, shards: list[tuple[str, int]], max_sort_rows: int, tmp: Path
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(hashes, global rows) per bucket of the hash space, in increasing hash order."""
    total = sum(rows for _, rows in shards)
    n_buckets = 1
    while n_buckets * max_sort_rows < total:
        n_buckets *= 2
    if n_buckets == 1:
        parts = [np.fromfile(root / f"{p}.khash", dtype=KEY_HASH_DTYPE) for p, _ in shards]
        yield (
            (np.concatenate(parts) if parts else np.empty(0, KEY_HASH_DTYPE)),
            np.arange(total, dtype=np.uint64),
        )
        return
    shift = np.uint64(64 - (n_buckets.bit_length() - 1))
    tmp.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        files = [
            (stack.enter_context(open(tmp / f"{b}.h", "wb")), stack.enter_context(open(tmp / f"{b}.r", "wb")))
            for b in range(n_buckets)
        ]
        start = 0
        for prefix, rows in shards:
            h = np.fromfile(root / f"{prefix}.khash", dtype=KEY_HASH_DTYPE)
            g = np.arange(start, start + rows, dtype=np.uint64)
            start += rows
            bucket = (h >> shift).astype(np.int64)
            order = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
            for b in np.flatnonzero(np.diff(bounds)):
                sel = order[bounds[b] : bounds[b + 1]]
                files[b][0].write(h[sel].astype(KEY_HASH_DTYPE).tobytes())
                files[b][1].write(g[sel].astype(INDEX_ROW_DTYPE).tobytes())
    for b in range(n_buckets):
        yield (
            np.fromfile(tmp / f"{b}.h", dtype=KEY_HASH_DTYPE),
            np.fromfile(tmp / f"{b}.r", dtype=INDEX_ROW_DTYPE).astype(np.uint64),
        )


def build_index(
    root: Path, shards: list[tuple[str, int]], *, max_sort_rows: int = MAX_SORT_ROWS
) -> dict[str, dict[str, Any]]:
    """Write index.hash and index.row atomically from the shards' hash files; returns their records.

    shards: (file prefix, rows) in store order. Raises LiftError on a key present twice.
    """
    starts = np.cumsum([0] + [rows for _, rows in shards])

    def key_at(g: int) -> tuple[bytes, str]:
        s = int(np.searchsorted(starts, g, side="right")) - 1
        return read_key(
            root, shards[s][0], g - int(starts[s])
        ), f"shard {s} ({shards[s][0]}) row {g - int(starts[s])}"

    tmp = root / ".index-build"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with (
            atomic_write(root / INDEX_FILES[0]) as fh,
            atomic_write(root / INDEX_FILES[1]) as fr,
        ):
            wh, wr = HashingWriter(fh), HashingWriter(fr)
            for hashes, rows in _bucket_pieces(root, shards, max_sort_rows, tmp):
                order = np.argsort(hashes, kind="stable")  # ties keep store order: deterministic
                hashes, rows = hashes[order], rows[order]
                _check_duplicates(hashes, rows, key_at)
                wh.write(hashes.astype(KEY_HASH_DTYPE))
                wr.write(rows.astype(INDEX_ROW_DTYPE))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return {INDEX_FILES[0]: wh.record(), INDEX_FILES[1]: wr.record()}
