"""Which shards each slot of the stream order reads in each epoch, and the shuffle buffer's seeded draws:
the order itself, a lane's position, and the replay (ints only, no data) that tells a resumed lane
which records its buffer held."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DRAW_BLOCK = 4096  # the shuffle's random numbers are drawn in blocks of this many


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
