"""The stream data order: whole shards read front to back from wherever `webdataset.gopen` opens them
(local paths, `pipe:` commands, http(s):// URLs), for data on object storage or network file systems
where reading samples by random access (the exact order, `lift.data.imagetext`) is the slowest pattern.

The order (every part seeded; nothing depends on timing, download speed or worker scheduling):

- Epoch e permutes the shards by (seed, e). With S = world_size x lanes slots (a lane is a DataLoader
  worker; `workers=0` and `workers=1` both mean one lane), the k-th shard of the permutation goes to slot
  k mod S, slot = rank x lanes + lane: in an epoch every shard belongs to exactly one (rank, worker).
- A slot reads its shards one after the other, sequentially, and passes their samples through a shuffle
  buffer of `buffer` samples seeded by (seed, e, rank, lane): once full, each new sample takes the place
  of one drawn at random, which is yielded; after the slot's last shard the buffer drains at random.
- Augmentation and the caption view drawn use a per-sample seed of (seed, e, shard, position in shard).
- A slot goes on to its shards of epoch e + 1 as soon as its epoch-e samples are out: the stream never
  ends, nothing is dropped or padded, and every rank makes the same number of steps, set by the budget
  (an "epoch" is one pass over the shards, see `epoch_samples`). Slots finish epochs at different times,
  so a batch late in an epoch can mix samples of two epochs.
- Each lane yields whole batches of `batch_size` samples (this rank's share of the global batch; bad
  samples included, as error records, like the exact order's batches); torch's DataLoader takes them
  from lane 0, 1, 2, ... in turn, so each rank's batch sequence is fixed.

Samples follow `lift.data.samples` (webdataset keys; one image, at most one .txt and one .json; a
sample's members must sit next to each other in the tar, as webdataset requires). A bad sample or a
damaged shard (cut short, unreadable, a reader command that fails) becomes an error record naming the
shard, which the main process's error policy counts. CLIP captions come from the parquet beside a local
shard and the sample's own .txt / .json; LIFT reads the store shard named like the image shard
(`lift.data.paths.shard_name`) row by row beside it, so no random key lookups are made (a key missing on
either side is a bad sample, as in `lift.data.index.select_samples`).

Resume: every batch carries its lane's position after it (a few ints: the epoch, samples yielded in it,
the first shard not finished, where the open shards start in the lane's input). The main process records
the position of the last batch it consumed from each lane (`consumed`), and `state_dict()` is what a
checkpoint saves (plain ints and lists). A resumed lane replays its shuffle buffer's draws (ints only, no
data) to know which samples were in the buffer, re-reads the shards holding them from their start,
skipping what was already yielded, and then continues: the resumed stream is exactly the rest of the
uninterrupted one, none repeated, none skipped.

World size and workers: a resume needs the same world size and number of lanes (and the same shards,
seed and buffer; the batch size may change). `load_state_dict(..., relayout=True)` accepts another
layout: the epochs in progress are finished by the new slots from the shards no old slot had finished
(a shard that was part-read is read again from its start, so its samples seen before are seen twice
in that epoch; nothing is skipped), and later epochs follow the new layout's order, which differs from
the old one's. docs/streaming.md says the same for users.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import tarfile
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lift.data.imagetext import ImageDecoder, collate, make_item, sample_seed
from lift.data.index import (
    SIDECARS,
    Sample,
    caption_field_problem,
    members_problem,
    read_metadata,
    resolve_captions,
)
from lift.data.paths import expand_paths, is_url, shard_name
from lift.data.samples import is_image_ext, member_kind, split_key
from lift.errors import LiftError

VERSION = 1
SHARD_STRIDE = 1 << 32  # per-sample seeds: shard * SHARD_STRIDE + position
DRAW_BLOCK = 4096  # the shuffle's random numbers are drawn in blocks of this many
STORE_BATCH = 256  # store rows read at a time beside an image shard
STORE_LOOKAHEAD = 1024  # store rows held while looking for a key out of row order
TAIL_BYTES = 1 << 16  # bytes of a shard kept to check its end-of-archive marker


# ---- which shards a slot reads --------------------------------------------------------------------


def shard_order(num_shards: int, *, seed: int, epoch: int) -> list[int]:
    """The shards of `epoch` in the order slots take them: a permutation seeded by (seed, epoch)."""
    rng = np.random.default_rng([seed % 2**63, epoch, 0x5EED])
    return rng.permutation(num_shards).tolist()


@dataclass
class StreamPlan:
    """Which shards each slot reads in each epoch. `overrides` (epoch -> shard list) replace the epoch's
    permutation after a resume with another layout (only the shards still to be read)."""

    num_shards: int
    seed: int
    world_size: int
    lanes: int
    overrides: dict[int, list[int]] = field(default_factory=dict)

    @property
    def slots(self) -> int:
        return self.world_size * self.lanes

    def epoch_shards(self, epoch: int) -> list[int]:
        if epoch in self.overrides:
            return self.overrides[epoch]
        return shard_order(self.num_shards, seed=self.seed, epoch=epoch)

    def shards(self, epoch: int, slot: int) -> list[int]:
        return self.epoch_shards(epoch)[slot :: self.slots]


# ---- reading one shard ------------------------------------------------------------------------------


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


# ---- the shuffle buffer and its replay --------------------------------------------------------------


class _Draws:
    """The shuffle's random numbers, uniform in [0, 1), seeded by (seed, epoch, rank, lane)."""

    def __init__(self, seed: int, epoch: int, rank: int, lane: int) -> None:
        self.rng = np.random.default_rng([seed % 2**63, epoch, rank, lane])
        self.block: list[float] = []
        self.at = 0

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self.at == len(self.block):
                self.block, self.at = self.rng.random(DRAW_BLOCK).tolist(), 0
            k = min(n, len(self.block) - self.at)
            out.extend(self.block[self.at : self.at + k])
            self.at, n = self.at + k, n - k
        return np.asarray(out, dtype=np.float64)

    def pick(self, size: int) -> int:
        if self.at == len(self.block):
            self.block, self.at = self.rng.random(DRAW_BLOCK).tolist(), 0
        u = self.block[self.at]
        self.at += 1
        return min(int(u * size), size - 1)


def replay(out: int, buffer: int, length: int | None, draws: _Draws) -> tuple[list[int], int]:
    """The buffer after `out` outputs, as input indices by buffer slot, and the next input index, for a
    lane whose input holds `length` records (None: more than were read). Uses the same draws as the live
    shuffle (`draws` is advanced past them) and reads no data."""
    fill = buffer if length is None else min(buffer, length)
    steady = out if length is None else min(out, max(0, length - fill))
    slots = np.arange(fill, dtype=np.int64)
    if steady:
        u = draws.take(steady)
        where = np.minimum((u * buffer).astype(np.int64), buffer - 1)
        last = np.full(fill, -1, dtype=np.int64)
        np.maximum.at(last, where, np.arange(steady, dtype=np.int64))
        slots = np.where(last >= 0, fill + last, slots)
    buf = slots.tolist()
    for _ in range(out - steady):  # draining: the last slot fills the gap
        i = draws.pick(len(buf))
        buf[i] = buf[-1]
        buf.pop()
    return buf, fill + steady


def fresh_position(epoch: int = 0) -> dict[str, Any]:
    """A lane's position at the start of an epoch."""
    return {"epoch": epoch, "out": 0, "first": 0, "starts": [], "length": -1}


class _Inputs:
    """A lane's records of one epoch, shard after shard, numbered by their index in the lane's input."""

    def __init__(self, lane: _Lane, shards: list[int], j: int, start: int, known: dict[int, int]) -> None:
        self.lane, self.shards, self.j, self.count, self.known = lane, shards, j, start, known
        self.starts: dict[int, int] = dict(known)
        self.it: Iterator[Record] | None = None
        self.done = False

    def next(self) -> tuple[int, int, Record] | None:
        while not self.done:
            if self.it is None:
                if self.j >= len(self.shards):
                    self.done = True
                    break
                expected = self.known.get(self.j)
                if expected is not None and expected != self.count:  # the shard before gave other records
                    before = self.lane.ds.urls[self.shards[self.j - 1]]
                    raise LiftError(
                        f"{before}: the shard has changed since the checkpoint was written (it holds "
                        f"{self.count - self.starts[self.j - 1]} records, it held "
                        f"{expected - self.starts[self.j - 1]}); the stream position cannot be resumed"
                    )
                self.starts[self.j] = self.count
                self.it = self.lane.ds.records(self.shards[self.j])
            rec = next(self.it, None)
            if rec is None:
                self.it, self.j = None, self.j + 1
                continue
            self.count += 1
            return self.count - 1, self.j, rec
        return None

    def fully_read(self, j: int) -> bool:
        return self.done or j < self.j


class _Lane:
    """One (rank, lane)'s endless stream of (record, epoch); `position` is where it stands after the
    record it yielded last."""

    def __init__(self, ds: StreamDataset, lane: int, position: dict[str, Any]) -> None:
        self.ds, self.lane = ds, lane
        self.slot = ds.rank * ds.lanes + lane
        self.position = copy.deepcopy(position)

    def __iter__(self) -> Iterator[tuple[Record, int]]:
        empty = 0
        while True:
            epoch = self.position["epoch"]
            shards = self.ds.plan.shards(epoch, self.slot)
            read = yield from self._epoch(epoch, shards)
            empty = empty + 1 if shards and not read else 0
            if empty >= 2:
                names = ", ".join(self.ds.urls[s] for s in shards[:3])
                raise LiftError(
                    f"rank {self.ds.rank} worker {self.lane}: no samples in epochs {epoch - 1} and {epoch} "
                    f"(its shards, e.g. {names}, are empty)"
                )
            self.position = fresh_position(epoch + 1)

    def _epoch(self, epoch: int, shards: list[int]) -> Iterator[tuple[Record, int]]:
        """The lane's epoch from its position on; returns how many records it read."""
        p, size = self.position, self.ds.buffer
        out, length = p["out"], (p["length"] if p["length"] >= 0 else None)
        draws = _Draws(self.ds.seed, epoch, self.ds.rank, self.lane)
        slots, nxt = replay(out, size, length, draws)
        known = {p["first"] + i: s for i, s in enumerate(p["starts"])}
        lo = min(slots) if slots else nxt
        j0 = max((j for j, s in known.items() if s <= lo), default=0)
        if lo > 0 and j0 not in known:
            raise LiftError(f"rank {self.ds.rank} worker {self.lane}: the saved stream position is damaged")
        inputs = _Inputs(self, shards, j0, known.get(j0, 0), known)

        # refill the buffer: re-read the inputs lo..nxt-1 it held (on a fresh start: the first fill)
        buf: list[tuple[int, Record] | None] = [None] * len(slots)
        want = {idx: i for i, idx in enumerate(slots)}
        while inputs.count < nxt:
            got = inputs.next()
            if got is None:
                if out or length is not None:
                    raise LiftError(
                        f"rank {self.ds.rank} worker {self.lane}: its shards of epoch {epoch} hold fewer "
                        "samples than when the checkpoint was written; the stream position cannot be resumed"
                    )
                length = inputs.count
                buf = buf[:length]
                break
            idx, j, rec = got
            if idx in want:
                buf[want[idx]] = (j, rec)
        held = Counter(j for j, _ in buf)  # type: ignore[misc]
        first = j0

        def moved(j: int) -> dict[str, Any]:
            """The position after an output of shard j."""
            nonlocal first
            held[j] -= 1
            while first < len(shards) and inputs.fully_read(first) and held[first] == 0:
                first += 1
            if length is not None and not buf:
                return fresh_position(epoch + 1)
            starts = [inputs.starts[j] for j in range(first, inputs.j + 1) if j in inputs.starts]
            return {"epoch": epoch, "out": out, "first": first, "starts": starts,
                    "length": -1 if length is None else length}  # fmt: skip

        while True:
            if length is None:
                got = inputs.next()
                if got is None:
                    length = inputs.count
                else:
                    idx, j, rec = got
                    i = draws.pick(size)
                    (oj, orec), buf[i] = buf[i], (j, rec)  # type: ignore[misc]
                    held[j] += 1
                    out += 1
                    self.position = moved(oj)
                    yield orec, epoch
                    continue
            if not buf:
                return inputs.count
            i = draws.pick(len(buf))
            (oj, orec), buf[i] = buf[i], buf[-1]  # type: ignore[misc]
            buf.pop()
            out += 1
            self.position = moved(oj)
            yield orec, epoch


# ---- the dataset --------------------------------------------------------------------------------------


class _Current(dict):
    """The store a text source sees in stream mode: the vector(s) of the sample being made, read beside
    its shard (StoreText looks its sample up by key)."""


class StreamDataset(torch.utils.data.IterableDataset):
    """This rank's endless stream of batches in the stream order (module docstring).

    Use it with `DataLoader(ds, batch_size=None, num_workers=workers)` (the same `workers` as given
    here) and call `consumed(batch)` for every batch the loop takes; `state_dict()` is then the position
    to checkpoint and `load_state_dict()` (before iterating) resumes there. A batch is `collate`'s dict
    (`keys`, `images`, `texts`, `errors`) plus `where` ((epoch, shard, position) of every record, errors
    included) and `position` (the lane's position after it).

    `text_source`: the method's (`Method.text_source()`); for LIFT give `store` too, and its `store[key]`
    lookups are served from the store shard read beside each image shard. `views`: the caption views
    whose every one must be usable (CLIP's, as `select_samples` checks); None for LIFT.
    """

    def __init__(
        self, shards: str | list[str], *, images: ImageDecoder, text_source: Any,
        batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, workers: int = 0,
        buffer: int = 1000, store: Any = None, views: list[str] | tuple[str, ...] | None = None,
        metadata: str | None = None,
    ) -> None:  # fmt: skip
        self.urls = expand_paths(shards, suffixes=(".tar",))
        if batch_size < 1:
            raise LiftError(f"the per-rank batch size must be at least 1, got {batch_size}")
        if buffer < 1:
            raise LiftError(f"--shuffle-buffer must be at least 1, got {buffer}")
        if workers < 0:
            raise LiftError(f"--workers must be at least 0, got {workers}")
        self.lanes = max(workers, 1)
        if len(self.urls) < world_size * self.lanes:
            raise LiftError(
                f"{shards}: the stream order gives every (rank, worker) whole shards, and {len(self.urls)} "
                f"shard(s) cannot feed {world_size} rank(s) x {self.lanes} worker(s); use fewer --workers or "
                "split the data into more shards"
            )
        self.images, self.text_source, self.batch_size = images, text_source, batch_size
        self.seed, self.rank, self.world_size, self.buffer = seed, rank, world_size, buffer
        self.store = store
        if store is not None and not hasattr(text_source, "store"):
            raise TypeError("a store was given, but the text source does not read one (`.store`)")
        # CLIP's caption views; the text source's own when not given (a LIFT store needs none)
        self.views = tuple(views if views is not None else () if store else getattr(text_source, "views", ()))
        self.metadata = read_metadata(expand_paths(metadata, suffixes=(".parquet",))) if metadata else None
        self.plan = StreamPlan(len(self.urls), seed, world_size, self.lanes)
        self.positions = [fresh_position() for _ in range(self.lanes)]
        self.next_lane = 0
        self.note: str | None = None  # what a resume with another layout did (one line), for the log

    # ---- in the workers ----

    def records(self, shard: int) -> Iterator[Record]:
        return read_shard(
            self.urls[shard], shard, store=self.store, captions=self.store is None, metadata=self.metadata
        )

    def lane_records(self, lane: int) -> Iterator[tuple[Record, int]]:
        """The lane's records in the order it yields them, with their epoch, from its position on
        (no decoding: for inspection and tests)."""
        return iter(_Lane(self, lane, self.positions[lane]))

    def _text(self) -> Any:
        if self.store is None:
            return self.text_source
        text = copy.copy(self.text_source)
        text.store = _Current()
        return text

    def make_item(self, rec: Record, epoch: int, text: Any) -> dict[str, Any]:
        """What `ImageTextDataset` gives for a sample (or its error record), from the record's bytes."""
        if rec.error:
            return {"key": rec.key, "error": rec.error}
        ext = next((e for e in rec.members if is_image_ext(e)), "")
        sample = Sample(rec.key, rec.url, {ext: (0, len(rec.members[ext]))} if ext else {}, rec.captions)

        def text_of(rng: np.random.Generator) -> Any:
            if self.views:  # every view is checked, so a random draw never changes which samples exist
                sample.captions = self._captions(rec)
                if problem := next(
                    filter(None, (caption_field_problem(sample.captions, v) for v in self.views)), None
                ):
                    raise ValueError(problem)
            if self.store is not None:
                text.store.clear()
                text.store[rec.key] = rec.vector
            return text(sample, rng)

        return make_item(
            key=rec.key, source=rec.url, data=lambda: rec.members[ext], name=f"{rec.key}.{ext}",
            seed=sample_seed(self.seed, epoch, rec.shard * SHARD_STRIDE + rec.pos), images=self.images,
            text=text_of, problem=rec.problem,
        )  # fmt: skip

    def _captions(self, rec: Record) -> dict[str, Any]:
        """The record's captions completed from its own .txt / .json, by `resolve_captions`'s rules."""
        blob, members = io.BytesIO(), {}
        for ext, data in rec.members.items():
            if member_kind(ext) in SIDECARS:
                members[ext] = (blob.tell(), len(data))
                blob.write(data)
        side = Sample(rec.key, rec.url, members, rec.captions)
        return resolve_captions(side, self.views, blob)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        physical, count = (0, 1) if info is None else (info.id, info.num_workers)
        lane_id = (physical + self.next_lane) % self.lanes  # DataLoader asks worker 0 first, always
        items: list[dict[str, Any]] = []
        where: list[tuple[int, int, int]] = []
        try:
            if count != self.lanes:
                raise LiftError(
                    f"the stream was made for {self.lanes} DataLoader worker(s) but runs in {count}; "
                    "give the DataLoader the same num_workers"
                )
            lane = _Lane(self, lane_id, self.positions[lane_id])
            text = self._text()
            for rec, epoch in lane:
                items.append(self.make_item(rec, epoch, text))
                where.append((epoch, rec.shard, rec.pos))
                if len(items) == self.batch_size:
                    batch = collate(items)
                    batch["where"] = where
                    batch["position"] = {"lane": lane_id, "state": copy.deepcopy(lane.position)}
                    yield batch
                    items, where = [], []
        except LiftError as e:  # the main process raises it, as one line, in `consumed`
            yield {"fatal": str(e), "keys": [], "errors": []}

    # ---- in the main process ----

    def consumed(self, batch: dict[str, Any]) -> None:
        """Record that the loop took `batch` (raises the one-line LiftError a worker sent instead)."""
        if "fatal" in batch:
            raise LiftError(batch["fatal"])
        lane = batch["position"]["lane"]
        self.positions[lane] = batch["position"]["state"]
        self.next_lane = (lane + 1) % self.lanes

    def _identity(self) -> dict[str, Any]:
        names = "\n".join(shard_name(u) for u in self.urls).encode()
        return {"seed": self.seed, "shards": len(self.urls), "names": hashlib.sha256(names).hexdigest()[:16],
                "buffer": self.buffer}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """This rank's position: plain ints, strings and lists (JSON, and `torch.load(weights_only=True)`).
        Under DDP every rank's goes in the checkpoint (`gather_state`)."""
        return {
            "version": VERSION, "order": "stream", **self._identity(), "world_size": self.world_size,
            "workers": self.lanes, "rank": self.rank, "next_worker": self.next_lane,
            "lanes": copy.deepcopy(self.positions),
            "overrides": [[e, list(s)] for e, s in sorted(self.plan.overrides.items())],
        }  # fmt: skip

    def load_state_dict(
        self, state: dict[str, Any] | list[dict[str, Any]], *, relayout: bool = False
    ) -> None:
        """Resume at a saved position: this rank's dict, or every rank's (a list in rank order, as
        `gather_state` gives). Another world size or worker count is refused unless `relayout` (module
        docstring); then `note` says what was done."""
        states = state if isinstance(state, list) else [state]
        if not states or not all(isinstance(s, dict) for s in states):
            raise LiftError("the checkpoint's stream position is not a list of dicts")
        for s in states:
            if s.get("version") != VERSION or s.get("order") != "stream":
                raise LiftError(f"the checkpoint's position is not a stream position of version {VERSION}")
            diff = [f"{k}: {s.get(k)!r} != {v!r}" for k, v in self._identity().items() if s.get(k) != v]
            if diff:
                raise LiftError(
                    f"cannot resume the stream order: the checkpoint's data differs ({'; '.join(diff)})"
                )
        old = states[0]
        same = old["world_size"] == self.world_size and old["workers"] == self.lanes
        if same:
            mine = [s for s in states if s.get("rank") == self.rank]
            if not mine:
                raise LiftError(f"the checkpoint's stream position has no entry for rank {self.rank}")
            self.plan.overrides = {int(e): list(s) for e, s in mine[0]["overrides"]}
            self.positions = copy.deepcopy(mine[0]["lanes"])
            self.next_lane = int(mine[0]["next_worker"])
            return
        layout = f"{old['world_size']} rank(s) x {old['workers']} worker(s)"
        if not relayout:
            raise LiftError(
                f"the checkpoint's stream position is for {layout}, this run has {self.world_size} x "
                f"{self.lanes}; resume with the same world size and --workers (docs/streaming.md)"
            )
        if len(states) != old["world_size"]:
            raise LiftError(f"a new layout needs every rank's stream position ({len(states)} of {layout})")
        self._relayout(sorted(states, key=lambda s: s["rank"]))

    def _relayout(self, states: list[dict[str, Any]]) -> None:
        """Finish the epochs in progress with this layout, from the shards no old slot had finished."""
        old = states[0]
        plan = StreamPlan(
            len(self.urls), self.seed, old["world_size"], old["workers"],
            {int(e): list(s) for e, s in old["overrides"]},
        )  # fmt: skip
        lanes = [(r * plan.lanes + w, p) for r, s in enumerate(states) for w, p in enumerate(s["lanes"])]
        low, high = min(p["epoch"] for _, p in lanes), max(p["epoch"] for _, p in lanes)
        overrides, again = {}, 0
        for epoch in range(low, high + 1):
            order, finished = plan.epoch_shards(epoch), set()
            for slot, p in lanes:
                mine = order[slot :: plan.slots]
                if p["epoch"] > epoch:
                    finished.update(mine)
                elif p["epoch"] == epoch:
                    finished.update(mine[: p["first"]])
                    again += len(p["starts"])  # the shards it had opened and not finished
            overrides[epoch] = [s for s in order if s not in finished]
        self.plan.overrides = overrides
        self.positions = [fresh_position(low) for _ in range(self.lanes)]
        self.next_lane = 0
        left = sum(len(s) for s in overrides.values())
        self.note = (
            f"stream order resumed from {old['world_size']} x {old['workers']} to {self.world_size} x "
            f"{self.lanes} (ranks x workers): epochs {low}..{high} finish with their {left} unfinished shard(s), "
            f"{again} of them part-read before (read again from their start)"
        )


def gather_state(dataset: StreamDataset) -> list[dict[str, Any]]:
    """Every rank's stream position, in rank order, for the checkpoint (a collective call under DDP)."""
    state = dataset.state_dict()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [state]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, state)
    return out


# ---- how many samples an epoch has ----------------------------------------------------------------------


def _local_count(path: str) -> int | None:
    """Samples in a local shard, from img2dataset's `_stats.json` or parquet, else its tar headers."""
    p = Path(path)
    stats = p.with_name(f"{shard_name(path)}_stats.json")
    if stats.is_file():
        try:
            return int(json.loads(stats.read_text())["successes"])
        except (ValueError, KeyError, TypeError, OSError):
            pass
    sidecar = p.with_suffix(".parquet")
    if sidecar.is_file():
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(sidecar, columns=None)
        except Exception:  # an unreadable parquet: count the tar instead
            table = None
        if table is not None:
            if "status" in table.column_names:
                return sum(1 for s in table.column("status").to_pylist() if s == "success")
            return table.num_rows
    try:
        with tarfile.open(path, "r:") as tar:
            return len(
                {
                    parts[0]
                    for m in tar
                    if m.isfile() and (parts := split_key(m.name)) and is_image_ext(parts[1])
                }
            )
    except (tarfile.TarError, OSError):
        return None


def epoch_samples(shards: str | list[str], *, store: Any = None) -> int | None:
    """Samples in one pass over `shards`, when known up front: the store's rows per shard (LIFT), else
    for local shards img2dataset's `_stats.json` / parquet or the tar headers. None when a shard's size
    cannot be known without reading it (a URL): give the budget in samples then."""
    urls = expand_paths(shards, suffixes=(".tar",))
    if store is not None and all(shard_name(u) in store.shard_names for u in urls):
        names = store.shard_names
        return sum(store.shard_len(names.index(shard_name(u))) for u in urls)
    total = 0
    for url in urls:
        n = None if is_url(url) or not os.path.isfile(url) else _local_count(url)
        if n is None:
            return None
        total += n
    return total
