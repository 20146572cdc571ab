"""One (rank, lane)'s endless stream of records: its shards read in turn through the seeded shuffle
buffer, epoch after epoch, resumed from a saved position by refilling the buffer it had."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lift.data.stream.order import _Draws, fresh_position, replay
from lift.data.stream.shard import Record
from lift.errors import LiftError

if TYPE_CHECKING:
    from lift.data.stream.dataset import StreamDataset


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
