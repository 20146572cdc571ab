"""The `lift embed` stage: every caption embedded once by the frozen text encoder into a store.

One output shard per input file, in the same order, so shard i of the store sits beside shard i
of the images. Under torchrun each rank embeds shards rank::world_size and writes only those;
rank 0 completes the manifest once all exist. A rerun skips finished shards, so a killed job
ends, after the same command again, with the store an uninterrupted run writes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from lift.data.captions import read_captions, source_files
from lift.distributed import barrier, init_process_group, shards_for_rank
from lift.errors import ErrorPolicy
from lift.store import StoreWriter
from lift.text import TextEncoder


def shard_name(path: str) -> str:
    """The name image shards go by (file name up to its first dot), so stores join with data by shard."""
    return Path(path).name.split(".", 1)[0]


class _Progress:
    """A bar of distinct captions embedded per second; its total (hence the ETA) is extrapolated from
    the shards read so far, since counting rows first would read every file twice."""

    def __init__(self, num_shards: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.num_shards, self.seen_shards, self.seen_rows = num_shards, 0, 0
        self.bar = tqdm(
            unit="caption", desc="lift embed", disable=not enabled, dynamic_ncols=True, file=sys.stderr
        )

    def shard_read(self, rows: int) -> None:
        self.seen_shards += 1
        self.seen_rows += rows
        self.bar.total = round(self.seen_rows / self.seen_shards * self.num_shards)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _sum_across_ranks(values: list[int]) -> list[int]:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces only GPU tensors
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


def _embed_shards(
    todo: list[tuple[int, str]], enc: TextEncoder, writer: StoreWriter, policy: ErrorPolicy, bar: _Progress,
    read_options: dict[str, Any],
) -> dict[str, int]:  # fmt: skip
    """Read, embed and write each (index, path) shard; returns caption counts."""
    counts = {"captions": 0, "unique": 0, "skipped": 0}
    for i, path in todo:
        keys, captions, skipped = read_captions(path, policy=policy, **read_options)
        unique = len(set(captions))
        bar.shard_read(unique)
        emb = enc.encode(captions, progress=bar.bar.update)  # [N, dim]
        writer.write_shard(i, keys, emb.numpy(), skipped=skipped)
        counts["captions"] += len(captions)
        counts["unique"] += unique
        counts["skipped"] += skipped
    return counts


def embed_captions(
    *,
    sources: list[str] | str,
    out: str | os.PathLike,
    encoder: str | os.PathLike | TextEncoder = "default",
    store_dtype: str = "float16",
    key_field: str | None = None,
    caption_field: str | None = None,
    fmt: str = "auto",
    on_error: str = "stop",
    progress: bool = True,
    **encoder_options: Any,
) -> dict[str, Any]:
    """Embed every caption of `sources` into the store at `out`; returns the job summary.

    `encoder`: "default", a model folder, or a loaded TextEncoder; `encoder_options` go to
    `TextEncoder.from_pretrained` (pooling, max_length, instruction, normalize, append_eos, dtype,
    device, batch_size, trust_remote_code).
    Exact duplicate captions are embedded once per shard: deduplicating across shards would make a
    shard's bytes depend on which shards ran before it, and a resumed job could then differ.
    """
    policy = ErrorPolicy(on_error)
    started_group = not _dist_initialized()
    info = init_process_group()
    try:
        paths = source_files(sources)
        if isinstance(encoder, TextEncoder):
            if encoder_options:
                raise TypeError(
                    f"encoder options {sorted(encoder_options)} given with an already loaded encoder"
                )
            enc = encoder
        else:
            enc = TextEncoder.from_pretrained(encoder, **encoder_options)
        read_options = {"fmt": fmt, "key_field": key_field, "caption_field": caption_field}
        writer = StoreWriter(
            out,
            identity=enc.identity,
            dim=enc.dim,
            dtype=store_dtype,
            shard_names=[shard_name(p) for p in paths],
            sources=paths,
            extra={"text_encoder_path": str(enc.path), **read_options},
        )
        mine = shards_for_rank(paths, info)
        todo = [(i, p) for i, p in mine if not writer.is_done(i)]
        bar = _Progress(len(todo), progress and info.is_main)
        start = time.perf_counter()
        try:
            counts = _embed_shards(todo, enc, writer, policy, bar, read_options)
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        barrier()
        totals = dict(zip(counts, _sum_across_ranks(list(counts.values()))))
        manifest = writer.finalize() if info.is_main else None
        barrier()  # nobody returns before the store is complete
    finally:
        if started_group and _dist_initialized():
            import torch.distributed as dist

            dist.destroy_process_group()
    return {
        "store": str(out),
        **totals,
        "shards": len(paths),
        "shards_already_done": len(mine) - len(todo),
        "rows_in_store": manifest["rows"] if manifest else None,
        "seconds": round(seconds, 3),
        "captions_per_s": round(totals["captions"] / seconds, 1) if seconds > 0 else 0.0,
        "skipped_examples": policy.examples,
        "world_size": info.world_size,
    }


def _dist_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def summary_line(summary: dict[str, Any]) -> str:
    s = summary
    done = f", {s['shards_already_done']} shard(s) already done" if s["shards_already_done"] else ""
    return (
        f"lift embed: {s['captions']} captions ({s['unique']} unique, {s['skipped']} skipped) in "
        f"{s['seconds']:.1f} s, {s['captions_per_s']:.1f} captions/s{done} -> {s['store']}"
    )
