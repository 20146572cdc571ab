"""Planning a `lift store transform` job before any work: its options checked against the input store
(`plan_transform`), and the output folder checked against the job (`check_out_paths`,
`existing_transform`: the transform an earlier run of the same job saved there)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lift.errors import LiftError
from lift.outputs import check_output_folder
from lift.store.codecs import CODECS
from lift.store.fit import NEEDS_FIT
from lift.store.format import HEADER, TRANSFORM_FILE, check_header, read_json
from lift.store.reader import EmbeddingStore
from lift.store.transform import StoreTransform, load_step

DEFAULT_FIT_ROWS = 100_000
DEFAULT_WHITEN_EPS = 1e-6
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
