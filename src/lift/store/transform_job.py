"""The `lift store transform` job: fit a linear map on a seeded sample of a store, then write a new
store of the mapped vectors, shard for shard.

    transform_store(store="emb/raw", out="emb/pca64", pca=64, dtype="int8")

The new store keeps the input's shards, keys, views and encoder identity; its vectors are
`transform.apply(input vectors)` in its own dtype, and STORE/transform.safetensors maps the encoder's
raw output to them (a transformed input's own transform composed with this job's, so chains compose
into one map). The transform is fitted once (rank 0 under torchrun) and saved before any shard; a
rerun of the same command reuses it and skips finished shards, so a killed job ends as an
uninterrupted one would. A rerun with other options, or after the input store changed, is refused,
naming what differs; so is an output folder holding anything else.

Operations, from the flags: `--pca K` (with `--whiten`: PCA-whitening), `--whiten` alone (ZCA),
`--center`, `--truncate K` (after centring with `--center`), each optional, plus `--dtype`. `--pca`
and `--whiten` centre already (`--center` beside them changes nothing). Refused: `--pca` with
`--truncate` (a truncated PCA is a smaller `--pca`), `--whiten` with `--truncate` (run two transforms
to say which comes first), `--whiten-eps` without `--whiten`, `--fit-rows` / `--seed` when nothing is
fitted, and a job that changes nothing. A NaN or inf vector in the fit sample is refused before
anything is written; one elsewhere when its shard comes (earlier shards stay written, the rerun with
`--on-error skip` keeps them and leaves such rows out, counting them in the shard's `skipped`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lift.distributed import DistInfo, barrier, init_process_group
from lift.errors import ErrorPolicy, LiftError
from lift.store.codecs import get_codec
from lift.store.fit import fit_ops, nonfinite_message, nonfinite_rows, sample_moments, sample_rows
from lift.store.format import HEADER, TRANSFORM_FILE, read_json
from lift.store.reader import EmbeddingStore, open_store
from lift.store.transform import StoreTransform, load_step
from lift.store.transform_plan import (
    DEFAULT_FIT_ROWS,
    DEFAULT_WHITEN_EPS,
    SPEC_KEYS,
    TransformPlan,
    _fit_need,
    _needed_rows,
    check_out_paths,
    existing_transform,
    plan_transform,
)
from lift.store.writer import StoreWriter

# the plan's names stay importable from here, beside the job's
__all__ = [
    "BATCH_ROWS",
    "DEFAULT_FIT_ROWS",
    "DEFAULT_WHITEN_EPS",
    "SPEC_KEYS",
    "TransformPlan",
    "check_out_paths",
    "existing_transform",
    "fit_step",
    "plan_transform",
    "summary_lines",
    "transform_store",
]

BATCH_ROWS = 4096


def _rank0_first(info: DistInfo, fn: Any) -> Any:
    """Run `fn` on rank 0 only; every rank raises when it failed (no rank waits forever at a barrier)."""
    if not info.enabled:
        return fn()
    import torch.distributed as dist

    result, message = None, [None]
    if info.is_main:
        try:
            result = fn()
        except BaseException as e:
            message = [str(e) if isinstance(e, LiftError) else f"rank 0 failed: {type(e).__name__}: {e}"]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise LiftError(message[0])
    return result


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="row", desc=desc, disable=not enabled, dynamic_ncols=True, file=sys.stderr)


def fit_step(
    source: EmbeddingStore, plan: TransformPlan, *, on_error: str = "stop", progress: bool = False
) -> StoreTransform | None:
    """The map this job adds to the store's vectors (None when it only changes the dtype): the plan's
    ops fitted on a seeded sample of min(fit_rows, rows) rows, every view of a row one vector."""
    specs = [{**s, **plan.provenance} for s in plan.specs]
    moments = None
    if plan.needs_fit:
        rows = sample_rows(len(source), fit_rows=plan.fit_rows, seed=plan.seed)
        bar = _bar(len(rows), "lift store transform: fit", progress)
        try:
            moments = sample_moments(source, rows, on_error=on_error, progress=bar.update)
        finally:
            bar.close()
        need, what = _fit_need(plan.specs, source.dim)
        if moments.vectors < need:
            raise LiftError(
                f"{source.path}: {moments.skipped} sampled row(s) held NaN or inf and were left out; the "
                f"{moments.vectors} vectors left are too few to {what}: it needs "
                f"{_needed_rows(need, source.num_views)}; raise --fit-rows"
            )
    return fit_ops(specs, source.dim, moments)


@dataclass
class _Prepared:
    writer: StoreWriter
    transform: StoreTransform | None  # the new store's (raw encoder output -> its vectors)
    step: StoreTransform | None  # the input store's vectors -> the new store's (None: unchanged)
    reused: bool
    done: list[int]


def _prepare(
    out: Path, source: EmbeddingStore, plan: TransformPlan, *, on_error: str, progress: bool
) -> _Prepared:
    """Rank 0's part before any shard: check the output folder, fit and save the transform (or reuse
    the saved one), create the store's header, and check the finished shards."""
    check_out_paths(out, source)
    saved = existing_transform(out, source, plan)
    reused = saved is not None
    if saved is not None:
        transform, step = saved
    else:
        step = fit_step(source, plan, on_error=on_error, progress=progress)
        kept: StoreTransform | None = None  # the step, saved beside a composed transform
        if source.transform is None:
            transform = step
        else:
            kept = step if step is not None else StoreTransform.eye(source.dim)
            transform = source.transform.then(kept)
        _check_begun_store(out, transform)
        if transform is not None:
            transform.save(out / TRANSFORM_FILE, step=kept)
    if step is not None and not step.chain:  # a dtype change of a transformed store: vectors as they are
        step = None
    writer = _open_writer(out, source, plan, transform)
    done, changed = [], []
    for i in range(source.num_shards):
        entry = writer.done_entry(i)
        if entry is None:
            continue
        if entry.get("inputs") != _shard_inputs(source, i):
            changed.append(f"shard {i} ({source.shard_names[i]})")
        done.append(i)
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise LiftError(
            f"--out {out}: the finished {changed[0]}{more} was not made from {source.path} by this job; "
            "write to a new --out"
        )
    return _Prepared(writer, transform, step, reused, done)


def _check_begun_store(out: Path, transform: StoreTransform | None) -> None:
    """A store begun earlier whose transform file is gone (removed after damage) takes only the transform
    its header records: refused before this fit is saved over anything."""
    if not (out / HEADER).exists():
        return
    recorded = read_json(out / HEADER, "store header").get("transform")
    if recorded != (transform.identity if transform is not None else None):
        then = "+".join(recorded["chain"]) if isinstance(recorded, dict) else "no transform"
        now = "+".join(transform.identity["chain"]) if transform is not None else "no transform"
        raise LiftError(
            f"--out {out}: the store was begun with transform {then} (its {TRANSFORM_FILE} is gone) and this "
            f"job fits another ({now}, sha256 differs); write to a new --out, or rerun with the options it was "
            "made with"
        )


def _shard_inputs(source: EmbeddingStore, i: int) -> dict[str, Any]:
    return {"source_shard_checksum": source.manifest["shards"][i]["checksum"]}


def _open_writer(
    out: Path, source: EmbeddingStore, plan: TransformPlan, transform: StoreTransform | None
) -> StoreWriter:
    extra = {**(source.manifest.get("extra") or {}), **plan.provenance}
    return StoreWriter(
        out, identity=source.identity, dim=plan.out_dim, dtype=plan.dtype, shard_names=source.shard_names,
        views=source.views, sources=source.manifest.get("sources") or [], extra=extra, transform=transform,
    )  # fmt: skip


def _write_shard(
    source: EmbeddingStore,
    i: int,
    step: StoreTransform | None,
    writer: StoreWriter,
    policy: ErrorPolicy,
    bar: Any,
) -> tuple[int, int]:
    """Map shard i of the input into shard i of the output; returns (rows written, rows left out)."""
    views, dim = source.num_views, writer.dim
    codec = get_codec(writer.dtype)
    limit = float(np.finfo(codec.storage).max) if codec.storage.kind == "f" else math.inf
    keys_out: list[str] = []
    parts: list[np.ndarray] = []
    start, dropped = 0, 0
    for keys, x in source.iter_shard(i, batch_size=BATCH_ROWS):
        x = x.reshape(len(keys), views, source.dim)
        bad = nonfinite_rows(x)
        for j in np.flatnonzero(bad).tolist():
            policy.fail(nonfinite_message(source, i, start + j, keys[j], x[j]))
        dropped += int(bad.sum())
        x = x[~bad]
        y = step.apply(x) if step is not None else x
        if y.size and float(np.abs(y).max()) > limit:
            row = int(np.flatnonzero(np.abs(y).reshape(len(y), -1).max(axis=1) > limit)[0])
            kept = [k for k, b in zip(keys, bad) if not b]
            raise LiftError(
                f"{source.path} shard {i}: the transformed vector of key {kept[row]!r} exceeds the range of "
                f"{writer.dtype} (max {limit:g}); use --dtype float32 or bfloat16"
            )
        keys_out += [k for k, b in zip(keys, bad) if not b] if bad.any() else keys
        parts.append(np.asarray(y, dtype=np.float32))
        start += len(keys)
        bar.update(len(keys))
    vectors = np.concatenate(parts) if parts else np.empty((0, views, dim), np.float32)
    entry = source.manifest["shards"][i]
    writer.write_shard(
        i, keys_out, vectors, skipped=int(entry.get("skipped", 0)) + dropped,
        truncated=int(entry.get("truncated", 0)), inputs=_shard_inputs(source, i),
    )  # fmt: skip
    return len(keys_out), dropped


def transform_store(
    *, store: str | os.PathLike, out: str | os.PathLike, center: bool = False, whiten: bool = False,
    whiten_eps: float | None = None, pca: int | None = None, truncate: int | None = None, dtype: str | None = None,
    fit_rows: int | None = None, seed: int | None = None, on_error: str = "stop", progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Fit the transform the options describe on `store` and write the transformed store to `out`;
    returns the job summary (rank 0; other ranks get `rows_in_store` None).

    `fit_rows` (default 100,000, capped at the store's rows) and `seed` (default 0) choose the fit
    sample; `whiten_eps` (default 1e-6) is relative to the largest covariance eigenvalue; `dtype`
    defaults to the input's. See the module docstring for the combinations refused.
    """
    policy = ErrorPolicy(on_error)
    out = Path(out)
    started_group = not _dist_initialized()
    info = init_process_group()
    try:
        source = open_store(store)
        plan = plan_transform(
            source, center=center, whiten=whiten, whiten_eps=whiten_eps, pca=pca, truncate=truncate,
            dtype=dtype, fit_rows=fit_rows, seed=seed,
        )  # fmt: skip
        started = time.perf_counter()
        prep = _rank0_first(
            info, lambda: _prepare(out, source, plan, on_error=on_error, progress=progress and info.is_main)
        )
        _barrier(info)
        if not info.is_main:  # rank 0 saved the transform and began the store: load them
            saved = (out / TRANSFORM_FILE).exists()
            transform = StoreTransform.load(out / TRANSFORM_FILE) if saved else None
            step = load_step(out / TRANSFORM_FILE) if saved else None
            writer = _open_writer(out, source, plan, transform)
            done = [i for i in range(source.num_shards) if writer.is_done(i)]
            prep = _Prepared(writer, transform, step if step is not None and step.chain else None, True, done)
        mine = [i for i in range(source.num_shards) if i % info.world_size == info.rank]
        todo = [i for i in mine if i not in prep.done]
        bar = _bar(sum(source.shard_len(i) for i in todo), "lift store transform", progress and info.is_main)
        rows = dropped = 0
        try:
            for i in todo:
                r, d = _write_shard(source, i, prep.step, prep.writer, policy, bar)
                rows, dropped = rows + r, dropped + d
        finally:
            bar.close()
        _barrier(info)
        manifest = _rank0_first(info, prep.writer.finalize)
        _barrier(info)
        seconds = time.perf_counter() - started
    finally:
        if started_group and _dist_initialized():
            import torch.distributed as dist

            dist.destroy_process_group()
    return _summary(source, out, plan, prep, manifest, dropped, policy, seconds, todo)


def _barrier(info: DistInfo) -> None:
    if info.enabled:  # lift.distributed.barrier imports torch, which a plain run does not need
        barrier()


def _dist_initialized() -> bool:
    """Whether a process group is up; never imports torch for a plain run (a group needs it imported)."""
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def _summary(
    source: EmbeddingStore, out: Path, plan: TransformPlan, prep: _Prepared, manifest: dict[str, Any] | None,
    dropped: int, policy: ErrorPolicy, seconds: float, todo: list[int],
) -> dict[str, Any]:  # fmt: skip
    t = prep.transform
    ops = prep.step.chain if prep.step is not None else []
    return {
        "store": str(out),
        "source": str(source.path),
        "rows_in_store": manifest["rows"] if manifest else None,
        # every rank's: the new store's skipped rows beyond the input's
        "rows_left_out": manifest["skipped"] - source.manifest["skipped"] if manifest else dropped,
        "in_dim": source.dim,
        "out_dim": plan.out_dim,
        "source_dtype": source.dtype,
        "dtype": plan.dtype,
        "ops": ops,
        "chain": t.chain if t is not None else [],
        "transform": t.identity if t is not None else None,
        "transform_reused": prep.reused,
        "shards": source.num_shards,
        "shards_already_done": len(prep.done),
        "shards_written": len(todo),
        "source_bytes_per_row": source.bytes_per_row,
        "bytes_per_row": open_store(out).bytes_per_row if manifest else None,
        "seconds": round(seconds, 3),
        "skipped_examples": policy.examples,
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The lines `lift store transform` prints: what was done, then notes on what was regularised or
    left out."""
    from lift.store.transform import op_details

    s = summary
    ops = "; ".join(op_details(op) for op in s["ops"]) or "vectors unchanged"
    done = f", {s['shards_already_done']} shard(s) already done" if s["shards_already_done"] else ""
    reused = ", the saved transform reused" if s["transform_reused"] and s["ops"] else ""
    lines = [
        f"lift store transform: {s['rows_in_store']:,} rows, {s['in_dim']}-d {s['source_dtype']} -> "
        f"{s['out_dim']}-d {s['dtype']} ({s['source_bytes_per_row']:,} -> {s['bytes_per_row']:,} bytes per row) "
        f"in {s['shards']} shard(s){done}{reused}, {s['seconds']:.1f} s -> {s['store']}",
        f"  {ops}",
    ]
    for op in s["ops"]:
        if op.get("regularised"):
            lines.append(
                f"  note: {op['regularised']} covariance eigenvalue(s) were below {op['eps']:g} x the largest "
                "(the covariance is singular or nearly so) and were raised to that before whitening"
            )
    if s["rows_left_out"]:
        lines.append(f"  left out: {s['rows_left_out']} row(s) holding NaN or inf (counted as skipped)")
    lines += [f"  skipped: {m}" for m in s["skipped_examples"]]
    return lines
