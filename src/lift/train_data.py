"""The data side of a training run, in one of two orders (`lift train --data-order exact|stream`):

- exact (local data, the default): an index of every sample, read by random access in a seeded
  permutation per epoch: the same global batches for any world size, and a resume is just the step
  number (`lift.data.imagetext`);
- stream (object storage, `pipe:`, http(s)://; the default for URLs): whole shards read in order with a
  shuffle buffer, the aligned store shard read beside each image shard; a resume restores every
  worker's position from the checkpoint (`lift.data.stream`).

Both give batches of uint8 images decoded near their final size in the workers (`lift.data.decode`),
normalised on the device in the training step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from lift.data import imagetext
from lift.data.paths import is_url
from lift.distributed import DistInfo
from lift.errors import ErrorPolicy, LiftError
from lift.methods import Method

ORDERS = ("exact", "stream")


def data_order(cfg: Any) -> str:
    """`cfg.data_order`, or the default: stream when the training data is a URL, else exact."""
    if cfg.data_order is not None:
        return cfg.data_order
    specs = [cfg.train_data] if isinstance(cfg.train_data, str) else list(cfg.train_data)
    return "stream" if any(is_url(s) for s in specs) else "exact"


class ExactData:
    """The indexed order: which samples exist is decided up front, once, by the method's rule."""

    stateful = False

    def __init__(self, cfg: Any, method: Method, policy: ErrorPolicy) -> None:
        from lift.data.index import index_data

        self.cfg, self.method = cfg, method
        self.index = index_data(cfg.train_data, cfg.metadata)
        method.open()
        # one rule for every method: each bad sample through the policy once, before training
        self.samples = method.select(self.index, policy)
        self.total_steps = imagetext.total_steps_for(len(self.samples), cfg.batch_size, samples=cfg.samples,
                                                     epochs=cfg.epochs)  # fmt: skip
        self.steps_per_epoch = max(1, len(self.samples) // cfg.batch_size)

    def batches(self, *, start: int, images: Any, info: DistInfo, settings: dict[str, Any]) -> Iterator[dict]:
        dataset = imagetext.ImageTextDataset(self.samples, images, text_source=self.method.text_source(),
                                             seed=self.cfg.seed)  # fmt: skip
        sampler = imagetext.GlobalBatchSampler(
            len(self.samples), self.cfg.batch_size, seed=self.cfg.seed, total_steps=self.total_steps,
            start_step=start, rank=info.rank, world_size=info.world_size,
        )  # fmt: skip
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=imagetext.collate, **settings
        )
        return iter(loader)

    def epoch_of(self, step: int, batch: dict) -> int:
        return step // self.steps_per_epoch

    def ends_epoch(self, done: int) -> bool:
        return done % self.steps_per_epoch == 0

    def consumed(self, batch: dict) -> None:
        """The exact order's position is the step number alone."""

    def unused_note(self) -> str | None:
        return self.index.unused_note()

    @property
    def unused(self) -> int:
        return sum(self.index.unused.values())


class StreamData:
    """The stream order: shards read front to back; the position of every worker goes in the checkpoint."""

    stateful = True

    def __init__(self, cfg: Any, method: Method, policy: ErrorPolicy) -> None:
        from lift.data.stream import epoch_samples

        self.cfg, self.method = cfg, method
        method.open()
        self.store = getattr(method, "store", None)
        if cfg.samples is not None:
            self.total_steps = math.ceil(cfg.samples / cfg.batch_size)
        else:
            per_epoch = epoch_samples(cfg.train_data, store=self.store)
            if per_epoch is None:
                raise LiftError(
                    f"--epochs with --data-order stream needs the samples per epoch, which {cfg.train_data} does "
                    "not say up front (no store, _stats.json or local shards to count); give --samples N instead"
                )
            self.total_steps = max(1, int(cfg.epochs * (per_epoch // cfg.batch_size)))
            self.samples_per_epoch = per_epoch
        self.dataset: Any = None
        self._state: Any = None

    def batches(self, *, start: int, images: Any, info: DistInfo, settings: dict[str, Any]) -> Iterator[dict]:
        from lift.data.stream import StreamDataset

        self.dataset = StreamDataset(
            self.cfg.train_data, images=images, text_source=self.method.text_source(),
            batch_size=self.cfg.batch_size // info.world_size, seed=self.cfg.seed, rank=info.rank,
            world_size=info.world_size, workers=self.cfg.workers, buffer=self.cfg.shuffle_buffer,
            store=self.store, metadata=self.cfg.metadata,
        )  # fmt: skip
        if self._state is not None:
            self.dataset.load_state_dict(self._state)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=None, **settings)
        return iter(loader)

    def epoch_of(self, step: int, batch: dict) -> int:
        where = batch.get("where") or [(0,)]
        return int(where[-1][0])

    def ends_epoch(self, done: int) -> bool:
        return False  # epochs end at different steps on different workers: skips are noted at the end

    def consumed(self, batch: dict) -> None:
        self.dataset.consumed(batch)

    def state(self) -> Any:
        """Every rank's worker positions (a collective call: every rank calls it at a checkpoint)."""
        from lift.data.stream import gather_state

        return gather_state(self.dataset)

    def load_state(self, state: Any) -> None:
        self._state = state

    def unused_note(self) -> str | None:
        return None

    unused = 0


def open_data(cfg: Any, method: Method, policy: ErrorPolicy) -> ExactData | StreamData:
    return (StreamData if data_order(cfg) == "stream" else ExactData)(cfg, method, policy)
