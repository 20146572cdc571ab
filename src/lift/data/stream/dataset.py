"""The stream order's dataset: this rank's batches from its lanes (`StreamDataset`), the position a
checkpoint saves and a run resumes at (also under another layout), and every rank's (`gather_state`)."""

from __future__ import annotations

import copy
import hashlib
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from lift.data.imagetext import ImageDecoder, collate, make_item, sample_seed
from lift.data.index import SIDECARS, Sample, caption_field_problem, read_metadata, resolve_captions
from lift.data.paths import expand_paths, shard_name
from lift.data.samples import is_image_ext, member_kind
from lift.data.stream.lane import _Lane
from lift.data.stream.order import StreamPlan, fresh_position
from lift.data.stream.shard import Record, read_shard
from lift.errors import LiftError

VERSION = 1
SHARD_STRIDE = 1 << 32  # per-sample seeds: shard * SHARD_STRIDE + position


class _Current(dict):
    """The store a text source sees in stream mode: the vector(s) of the sample being made, read beside
    its shard (StoreText looks its sample up by key)."""


class StreamDataset(torch.utils.data.IterableDataset):
    """This rank's endless stream of batches in the stream order (the `lift.data.stream` docstring).

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
        `gather_state` gives). Another world size or worker count is refused unless `relayout` (the
        `lift.data.stream` docstring); then `note` says what was done."""
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
