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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lift.distributed import DistInfo, barrier, init_process_group
from lift.errors import ErrorPolicy, LiftError
from lift.outputs import check_output_folder
from lift.store.codecs import CODECS, get_codec
from lift.store.fit import NEEDS_FIT, fit_ops, nonfinite_message, nonfinite_rows, sample_moments, sample_rows
from lift.store.format import HEADER, TRANSFORM_FILE, check_header, read_json
from lift.store.reader import EmbeddingStore, open_store
from lift.store.transform import StoreTransform, load_step
from lift.store.writer import StoreWriter

DEFAULT_FIT_ROWS = 100_000
DEFAULT_WHITEN_EPS = 1e-6
BATCH_ROWS = 4096
# the settings of an op that a rerun must repeat; the rest of a chain entry is what the fit found
SPEC_KEYS = ("op", "k", "whiten", "eps", "fit_rows_requested", "seed", "source_manifest_checksum")
_FLAG_OF = {"fit_rows_requested": "--fit-rows", "seed": "--seed", "eps": "--whiten-eps", "whiten": "--whiten"}


@dataclass(frozen=True)
class TransformPlan:
    """A checked job: the ops to fit (as specs), the output's dim and dtype, the fit sample's size."""

    specs: list[dict[str, Any]]
    out_dim: int
    dtype: str
    fit_rows: int  # rows requested
    seed: int
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_fit(self) -> bool:
        return any(s["op"] in NEEDS_FIT for s in self.specs)


def _int_flag(value: Any, flag: str, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise LiftError(f"{flag} must be an integer >= {low}, got {value!r}")
    return int(value)


def _needed_rows(vectors: int, views: int) -> str:
    rows = math.ceil(vectors / views)
    return f"{vectors} vectors" + (f" ({rows} rows of {views} views)" if views > 1 else f" ({rows} rows)")


def plan_transform(
    source: EmbeddingStore, *, center: bool = False, whiten: bool = False, whiten_eps: float | None = None,
    pca: int | None = None, truncate: int | None = None, dtype: str | None = None, fit_rows: int | None = None,
    seed: int | None = None,
) -> TransformPlan:  # fmt: skip
    """Check the options against the store (one-line LiftError naming the flag) and say what to do."""
    dim = source.dim
    if dtype is not None and dtype not in CODECS:
        raise LiftError(f"--dtype {dtype!r}: unknown store dtype; choose one of {', '.join(CODECS.names())}")
    if whiten_eps is not None and not whiten:
        raise LiftError("--whiten-eps applies only with --whiten; add --whiten or leave --whiten-eps out")
    if whiten_eps is not None and not (isinstance(whiten_eps, (int, float)) and 0 < whiten_eps < 1):
        raise LiftError(
            f"--whiten-eps must be a number > 0 and < 1 (relative to the largest eigenvalue), got {whiten_eps!r}"
        )
    if pca is not None and truncate is not None:
        raise LiftError(
            "--pca and --truncate together: a truncated PCA is a smaller PCA; give --pca K alone "
            "(or run `lift store transform` twice)"
        )
    if whiten and truncate is not None:
        raise LiftError(
            "--whiten and --truncate together: run `lift store transform` twice, in the order you mean "
            "(--truncate then --whiten, or the other way round)"
        )
    for flag, k in (("--pca", pca), ("--truncate", truncate)):
        if k is not None:
            _int_flag(k, flag, 1)
            if k > dim:
                raise LiftError(f"{flag} {k}: larger than the store's dim {dim}; choose 1..{dim}")
    fitted = bool(center or whiten or pca is not None)
    for flag, value in (("--fit-rows", fit_rows), ("--seed", seed)):
        if value is not None:
            _int_flag(value, flag, 1 if flag == "--fit-rows" else 0)
            if not fitted:
                raise LiftError(f"{flag} applies only when a transform is fitted (--center, --whiten, --pca)")
    out_dtype = dtype if dtype is not None else source.dtype
    if not (fitted or truncate is not None) and out_dtype == source.dtype:
        raise LiftError(
            f"nothing to do: give --center, --whiten, --pca, --truncate or a --dtype other than the "
            f"store's {source.dtype}"
        )
    rows = fit_rows if fit_rows is not None else DEFAULT_FIT_ROWS
    seed = seed if seed is not None else 0
    eps = (whiten_eps if whiten_eps is not None else DEFAULT_WHITEN_EPS) if whiten else None
    checksum = source.manifest["manifest_checksum"]
    fit = {"fit_rows_requested": rows, "seed": seed, "source_manifest_checksum": checksum}
    specs: list[dict[str, Any]] = []
    if pca is not None:
        specs.append({"op": "pca", "k": int(pca), "whiten": bool(whiten), "eps": eps, **fit})
    elif whiten:
        specs.append({"op": "zca", "eps": eps, **fit})
    elif center:
        specs.append({"op": "center", **fit})
    if truncate is not None:
        specs.append({"op": "truncate", "k": int(truncate), "source_manifest_checksum": checksum})
    if fitted:
        _check_fit_size(source, specs, rows)
    out_dim = int(pca if pca is not None else truncate if truncate is not None else dim)
    provenance = {"source_store": os.path.abspath(source.path)}
    return TransformPlan(specs, out_dim, out_dtype, rows, seed, provenance)


def _fit_need(specs: list[dict[str, Any]], dim: int) -> tuple[int, str]:
    """The fewest fit vectors that determine the first op (k + 1 for k principal axes, dim + 1 to
    whiten, 1 to centre), and what they are for."""
    first = specs[0] if specs else {"op": "truncate"}
    if first["op"] == "pca":
        return first["k"] + 1, f"find {first['k']} principal axes (--pca {first['k']})"
    if first["op"] == "zca":
        return dim + 1, f"whiten {dim}-d vectors (--whiten)"
    return (1, "centre") if first["op"] in NEEDS_FIT else (0, "")


def _check_fit_size(source: EmbeddingStore, plan_specs: list[dict[str, Any]], fit_rows: int) -> None:
    if len(source) == 0:
        raise LiftError(f"{source.path}: the store has no rows to fit a transform on")
    need, what = _fit_need(plan_specs, source.dim)
    have = min(fit_rows, len(source)) * source.num_views
    if have >= need:
        return
    if fit_rows < len(source):
        why, todo = f"--fit-rows {fit_rows} gives {have}", "raise --fit-rows"
    else:
        why, todo = f"the store has only {len(source)} rows ({have} vectors)", "use a bigger store"
    raise LiftError(
        f"a fit sample needs at least {_needed_rows(need, source.num_views)} to {what}; {why}; {todo}"
    )


# ---- the output folder ------------------------------------------------------------------------------


def _is_lift_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def check_out_paths(out: Path, source: EmbeddingStore) -> None:
    """Refuse an output folder that is the input store, lies inside it, or holds it; or a file or an
    unwritable place."""
    here, src = out.resolve(), Path(source.path).resolve()
    if here == src:
        raise LiftError(f"--out {out}: is the input store; write the transformed store to a new folder")
    if src in here.parents:
        raise LiftError(f"--out {out}: lies inside the input store {source.path}; choose a folder outside it")
    if here in src.parents:
        raise LiftError(f"--out {out}: holds the input store {source.path}; choose a new folder")
    check_output_folder(out)


def _op_words(specs: list[dict[str, Any]]) -> str:
    from lift.store.transform import op_summary

    return "+".join(op_summary(s) for s in specs) or "none"


def _spec_diffs(
    saved: list[dict[str, Any]], wanted: list[dict[str, Any]], source: EmbeddingStore
) -> list[str]:
    """What differs between the ops a saved transform recorded and this job's, in flag words."""
    if [s.get("op") for s in saved] != [w["op"] for w in wanted] or [s.get("k") for s in saved] != [
        w.get("k") for w in wanted
    ]:
        return [f"operations {_op_words(saved)} then, {_op_words(wanted)} now"]
    diffs = []
    for s, w in zip(saved, wanted):
        for key in SPEC_KEYS:
            if key in w and s.get(key) != w[key] and key != "source_manifest_checksum":
                diffs.append(f"{_FLAG_OF.get(key, key)} {s.get(key)!r} then, {w[key]!r} now")
    if any(s.get("source_manifest_checksum") != w["source_manifest_checksum"] for s, w in zip(saved, wanted)):
        diffs.append(f"the input store {source.path} changed since (its manifest checksum differs)")
    return list(dict.fromkeys(diffs))


def _header_diffs(header: dict[str, Any], source: EmbeddingStore, plan: TransformPlan) -> list[str]:
    diffs = []
    if header.get("identity") != source.identity:
        diffs.append("it was made from another text encoder's store")
    elif header.get("views") != source.views or header.get("shard_names") != source.shard_names:
        diffs.append("it was made from another input store (its views or shards differ)")
    if header.get("dtype") != plan.dtype:
        diffs.append(f"--dtype {header.get('dtype')} then, {plan.dtype} now")
    if header.get("dim") != plan.out_dim and not diffs:
        diffs.append(f"dim {header.get('dim')} then, {plan.out_dim} now")
    return diffs


def existing_transform(
    out: Path, source: EmbeddingStore, plan: TransformPlan
) -> tuple[StoreTransform, StoreTransform] | None:
    """The (transform, step) saved in `out` by an earlier run of this same job, to be reused; None when
    there is none yet. Refuses a non-empty `out` that is anything else, naming what differs."""
    names = {p.name for p in out.iterdir() if not _is_lift_temp(p.name)} if out.is_dir() else set()
    if not names:
        return None
    if HEADER not in names and TRANSFORM_FILE not in names:
        raise LiftError(
            f"--out {out}: folder is not empty and is not a transform of {source.path} "
            f"(found {', '.join(sorted(names)[:3])}); choose a new or empty folder"
        )
    diffs: list[str] = []
    if HEADER in names:
        header = read_json(out / HEADER, "store header")
        check_header(header, out / HEADER)
        diffs += _header_diffs(header, source, plan)
    saved: tuple[StoreTransform, StoreTransform] | None = None
    if TRANSFORM_FILE in names:
        try:
            saved = StoreTransform.load(out / TRANSFORM_FILE), load_step(out / TRANSFORM_FILE)
        except LiftError as e:
            raise LiftError(
                f"--out {out}: {e}; it cannot be this job's transform: remove it or choose a new folder"
            ) from None
        full, step = saved
        before = source.transform.chain if source.transform is not None else []
        if full.chain[: len(full.chain) - len(step.chain)] != before:
            diffs.append(
                f"it continues another input transform ({_op_words(full.chain[: len(full.chain) - len(step.chain)])})"
            )
        diffs += _spec_diffs(step.chain, plan.specs, source)
    elif plan.specs and HEADER in names and not read_json(out / HEADER, "store header").get("transform"):
        diffs.append(f"operations none then, {_op_words(plan.specs)} now")
    if diffs:
        raise LiftError(
            f"--out {out}: holds a store transform of another job ({'; '.join(dict.fromkeys(diffs))}); write to "
            "a new --out, or rerun with the options it was made with"
        )
    return saved


# ---- the job ----------------------------------------------------------------------------------------


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
