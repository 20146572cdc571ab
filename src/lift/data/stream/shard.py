"""Reading one shard of the stream order front to back: its tar members grouped into sample records,
the store shard of its name read row by row beside it (LIFT), and the parquet beside it (CLIP)."""

from __future__ import annotations

import contextlib
import tarfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lift.data.index import SIDECARS, members_problem, read_metadata
from lift.data.paths import is_url, shard_name
from lift.data.samples import is_image_ext, member_kind, split_key
from lift.errors import LiftError

STORE_BATCH = 256  # store rows read at a time beside an image shard
STORE_LOOKAHEAD = 1024  # store rows held while looking for a key out of row order
TAIL_BYTES = 1 << 16  # bytes of a shard kept to check its end-of-archive marker


@dataclass
class Record:
    """One input of a slot: a sample's raw members (decoded only when it leaves the shuffle buffer), or
    an error (`error`: the whole message) for a damaged shard or a key missing on one side."""

    shard: int  # index in the run's shard list
    pos: int  # position in the shard's records
    url: str
    key: str = ""
    members: dict[str, bytes] = field(default_factory=dict)
    captions: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    vector: np.ndarray | None = None
    error: str | None = None


class _Tail:
    """A stream that keeps its last bytes: a streamed `tarfile` stops quietly at a shard cut at a block
    boundary, so the end-of-archive marker is checked here (as `lift.data.tars` does for local files)."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.pos = raw, 0
        self.chunks: deque[bytes] = deque()
        self.kept = 0  # bytes in `chunks`: the stream's last ones

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.pos += len(data)
        self.chunks.append(data)
        self.kept += len(data)
        while self.kept - len(self.chunks[0]) >= TAIL_BYTES:
            self.kept -= len(self.chunks.popleft())
        return data

    def at(self, offset: int, n: int) -> bytes:
        """Bytes offset..offset+n of the stream (fewer at its end), reading on as needed."""
        while self.pos < offset + n and self.read(tarfile.RECORDSIZE):
            pass
        start = offset - (self.pos - self.kept)
        return b"".join(self.chunks)[start : start + n] if start >= 0 else b""


def _close(raw: Any) -> int | None:
    """Close a shard's stream; the exit status of its reader command (webdataset's Pipe), if any."""
    if raw is None:
        return None
    with contextlib.suppress(OSError):  # the status says it
        raw.close()
    return getattr(raw, "status", None)


def _members(url: str, keep: Callable[[str], bool]) -> Iterator[tuple[str, str, bytes] | str]:
    """(key, ext, bytes) of the shard's members in tar order (those `keep(ext)` wants), then a message
    string if the shard is damaged (cut short, unreadable, its reader failing)."""
    import webdataset

    raw, failure = None, None
    try:
        raw = webdataset.gopen(url, "rb")
        stream = _Tail(raw)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                tar.members = []  # a streamed tar would keep every header otherwise
                parts = split_key(info.name) if info.isfile() else None
                if parts is None or not keep(parts[1]):
                    continue
                data = tar.extractfile(info).read()  # type: ignore[union-attr]
                if len(data) != info.size:
                    raise tarfile.ReadError("unexpected end of data")
                yield parts[0], parts[1], data
            end = tar.offset
        marker = stream.at(end, 2 * tarfile.BLOCKSIZE)
        if len(marker) < 2 * tarfile.BLOCKSIZE or marker.strip(b"\0"):
            raise LiftError(
                f"{url}: tar shard is truncated at byte {end} (no end-of-archive marker); "
                "re-download or re-create this shard"
            )
    except (LiftError, tarfile.TarError, OSError, ValueError) as e:
        failure = e
    finally:
        status = _close(raw)  # also when the consumer stops early
    if failure is None:
        return  # a reader failing after the end marker: the shard was read whole
    if status not in (None, 0):
        yield f"{url}: the shard could not be read to its end (its reader exited with status {status})"
    elif isinstance(failure, LiftError):
        yield str(failure)
    else:
        yield f"{url}: not a readable tar shard: {failure}"


class _StoreShard:
    """The store shard named like an image shard, read in row order beside it. A key is looked for
    among the next rows (up to STORE_LOOKAHEAD held); one further away (a store written in another
    order) is read by its row, so the result never depends on the order, only the speed."""

    def __init__(self, store: Any, index: int) -> None:
        self.store, self.index = store, index
        self.batches = store.iter_shard(index, batch_size=STORE_BATCH)
        self.keys: list[str] = []
        self.vectors: np.ndarray | None = None
        self.at = 0  # next row of the current batch
        self.read = 0  # rows handed out so far
        self.pending: dict[str, np.ndarray] = {}
        self.taken: set[str] = set()
        self.row_of: dict[str, int] | None = None

    def _next_row(self) -> tuple[str, np.ndarray] | None:
        if self.at == len(self.keys):
            nxt = next(self.batches, None)
            if nxt is None:
                return None
            self.keys, self.vectors, self.at = nxt[0], nxt[1], 0
        row = self.keys[self.at], self.vectors[self.at]  # type: ignore[index]
        self.at += 1
        self.read += 1
        return row

    def take(self, key: str) -> np.ndarray | None:
        """The key's vector(s) ([D], or [V, D] for a store of V views), or None when the shard lacks it."""
        if key in self.taken:
            return None
        if key in self.pending:
            self.taken.add(key)
            return self.pending.pop(key)
        while len(self.pending) < STORE_LOOKAHEAD:
            row = self._next_row()
            if row is None:
                break
            if row[0] == key:
                self.taken.add(key)
                return row[1]
            if row[0] not in self.taken:
                self.pending[row[0]] = row[1]
        if self.row_of is None:
            self.row_of = {k: r for r, k in enumerate(self.store.shard_keys(self.index))}
        row_index = self.row_of.get(key)
        if row_index is None:
            return None
        self.taken.add(key)
        return self.store.get(self.index, row_index)

    def leftover(self) -> list[str]:
        """Keys of the shard no sample took, in row order."""
        rest = self.store.shard_keys(self.index)[self.read :]
        return [k for k in [*self.pending, *rest] if k not in self.taken]


class _StoreByKey:
    """For an image shard without a store shard of its name: lookups by key (random access)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def take(self, key: str) -> np.ndarray | None:
        found = self.store.locate(key)
        return None if found is None else self.store.get(*found)

    def leftover(self) -> list[str]:
        return []


def _parquet_beside(url: str) -> dict[str, dict[str, Any]]:
    """img2dataset's per-shard parquet next to a local shard (captions by key), or nothing."""
    if is_url(url):
        return {}
    path = Path(url).with_suffix(".parquet")
    return read_metadata([str(path)]) if path.is_file() else {}


def read_shard(
    url: str, shard: int, *, store: Any = None, captions: bool = True, metadata: dict[str, Any] | None = None
) -> Iterator[Record]:
    """The records of one shard, in order: its samples (grouped by webdataset key), an error record if
    it is damaged, and for LIFT (`store`) one error record per stored key no sample had.

    `captions`: keep the .txt / .json members and the parquet captions (CLIP); LIFT keeps the image only
    and attaches the stored vector(s). `metadata`: captions by key from --metadata parquet files."""
    meta = {**(metadata or {}), **_parquet_beside(url)} if captions else {}
    aligned: _StoreShard | _StoreByKey | None = None
    if store is not None:
        name = shard_name(url)
        names = store.shard_names
        aligned = _StoreShard(store, names.index(name)) if name in names else _StoreByKey(store)

    def keep(ext: str) -> bool:
        return is_image_ext(ext) or member_kind(ext) in SIDECARS

    pos, seen = 0, set()
    group: dict[str, bytes] = {}
    key, problem = "", None

    def finish() -> Record | None:
        # a key with neither an image nor a caption is no sample (the exact order counts it as unused)
        if not any(is_image_ext(e) or member_kind(e) == "txt" for e in group):
            return None
        bad = problem or members_problem(group)
        members = group if captions else {e: d for e, d in group.items() if is_image_ext(e)}
        rec = Record(shard, pos, url, key, members, dict(meta.get(key, {})), bad)
        if aligned is not None:
            rec.vector = aligned.take(key)
            if rec.vector is None and not bad:
                rec.error = f"{url}: sample {key!r} has no embedding in the store"
        return rec

    for item in _members(url, keep):
        if isinstance(item, str):  # the shard is damaged: what was read before stays, as in the exact order
            rec = finish() if group else None
            if rec is not None:
                yield rec
                pos += 1
            group = {}
            yield Record(shard, pos, url, error=item)
            pos += 1
            break
        k, ext, data = item
        if k != key or not group:
            rec = finish() if group else None
            if rec is not None:
                yield rec
                pos += 1
            key, group, problem = k, {}, None
            if k in seen:
                problem = f"its members are not next to each other in {url} (webdataset needs a sample's files together)"
            seen.add(k)
        if ext in group:
            problem = f"'{k}.{ext}' appears twice"
        group[ext] = data
    else:
        rec = finish() if group else None
        if rec is not None:
            yield rec
            pos += 1
    if isinstance(aligned, _StoreShard):
        for k in aligned.leftover():
            message = f"store shard {shard_name(url)}: key {k!r} has an embedding but no image in the data"
            yield Record(shard, pos, url, k, error=message)
            pos += 1
