"""Fitting store transforms: a seeded sample of rows, its mean and covariance accumulated in float64
chunk by chunk (never the whole store in memory), then `numpy.linalg.eigh`.

    rows = sample_rows(len(store), fit_rows=100_000, seed=0)
    moments = sample_moments(store, rows, on_error="stop")     # every view of a row is one vector
    t = fit_ops([{"op": "pca", "k": 64, "whiten": False, "eps": None}], store.dim, moments)

Whitening divides by sqrt(lambda) where lambda is a covariance eigenvalue; eigenvalues below
`eps * largest` (a singular or nearly singular covariance) are raised to that floor, and the chain
entry counts them (`regularised`). Eigenvectors have a fixed sign: the largest-magnitude component of
each is positive (the first such component on ties), so a refit gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lift.errors import ErrorPolicy, LiftError
from lift.registry import Registry
from lift.store.reader import EmbeddingStore
from lift.store.transform import StoreTransform

CHUNK_ROWS = 4096


def sample_rows(total: int, *, fit_rows: int, seed: int) -> np.ndarray:
    """The global rows (store order, sorted, int64) of a seeded sample of min(fit_rows, total) rows."""
    if fit_rows >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=fit_rows, replace=False).astype(np.int64))


@dataclass
class Moments:
    """Mean and (population) covariance of the fit sample, float64."""

    mean: np.ndarray
    cov: np.ndarray
    rows: int  # rows used
    vectors: int  # vectors used (rows x views)
    skipped: int  # sampled rows left out (non-finite vectors, --on-error skip)


class MomentAccumulator:
    """Streaming sum and sum of outer products in float64, shifted by the first chunk's mean so the
    covariance does not lose digits to a large mean (normalised embeddings are far from the origin)."""

    def __init__(self, dim: int) -> None:
        self.dim, self.n = dim, 0
        self.shift: np.ndarray | None = None
        self.s1 = np.zeros(dim)
        self.s2 = np.zeros((dim, dim))

    def add(self, x: np.ndarray) -> None:
        """x: (n, dim) vectors."""
        if not len(x):
            return
        x = np.asarray(x, dtype=np.float64)
        if self.shift is None:
            self.shift = x.mean(axis=0)
        d = x - self.shift
        self.n += len(d)
        self.s1 += d.sum(axis=0)
        self.s2 += d.T @ d

    def moments(self, rows: int, skipped: int) -> Moments:
        if self.n == 0 or self.shift is None:
            raise LiftError("store transform: the fit sample holds no vectors")
        m = self.s1 / self.n
        cov = self.s2 / self.n - np.outer(m, m)
        cov = (cov + cov.T) / 2  # exactly symmetric for eigh
        return Moments(mean=self.shift + m, cov=cov, rows=rows, vectors=self.n, skipped=skipped)


def nonfinite_rows(x: np.ndarray) -> np.ndarray:
    """Rows of x ((n, V, dim) or (n, dim)) holding a NaN or an inf in any view: (n,) bool."""
    return ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)


def nonfinite_message(store: EmbeddingStore, shard: int, row: int, key: str, x_row: np.ndarray) -> str:
    """One line naming a row of the store whose vector is not finite."""
    views = np.flatnonzero(~np.isfinite(x_row.reshape(store.num_views, -1)).all(axis=1))
    which = "" if store.num_views == 1 else f" view {store.views[int(views[0])]!r}"
    return (
        f"{store.path} shard {shard} ({store.shard_names[shard]}) row {row}: the vector of key {key!r}{which} "
        "is NaN or inf; rerun with --on-error skip to leave such rows out"
    )


def sample_moments(
    store: EmbeddingStore, rows: np.ndarray, *, on_error: str = "stop", chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], Any] | None = None,
) -> Moments:  # fmt: skip
    """Mean and covariance of the sampled global rows, every view of a row one vector. A row holding a
    NaN or inf is refused naming its shard and key (`on_error="stop"`), or left out and counted."""
    policy = ErrorPolicy(on_error)
    acc = MomentAccumulator(store.dim)
    starts = np.cumsum([0] + [store.shard_len(i) for i in range(store.num_shards)])
    shard_of = np.searchsorted(starts, rows, side="right") - 1  # rows are sorted: so are their shards
    shards, first = np.unique(shard_of, return_index=True)
    used = 0
    for s, local in zip(shards.tolist(), np.split(rows - starts[shard_of], first[1:])):
        for a in range(0, len(local), chunk_rows):
            part = local[a : a + chunk_rows]
            x = store.read_rows(s, part).reshape(len(part), store.num_views, store.dim)
            bad = nonfinite_rows(x)
            for j in np.flatnonzero(bad).tolist():
                key = store.shard_key(s, int(part[j]))
                policy.fail(nonfinite_message(store, s, int(part[j]), key, x[j]))
            keep = x[~bad]
            acc.add(keep.reshape(-1, store.dim))
            used += len(keep)
            if progress is not None:
                progress(len(part))
    return acc.moments(used, policy.skipped)


def _fit_record(m: Moments) -> dict[str, Any]:
    return {"fit_rows": m.rows, "fit_vectors": m.vectors} | ({"fit_skipped": m.skipped} if m.skipped else {})


def _eigen(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, >= 0) and eigenvectors (columns) of a covariance, each column's
    largest-magnitude component made positive."""
    w, v = np.linalg.eigh(cov)
    w, v = np.clip(w[::-1], 0.0, None), v[:, ::-1]
    big = np.argmax(np.abs(v), axis=0)
    signs = np.where(v[big, np.arange(v.shape[1])] < 0, -1.0, 1.0)
    return w, np.ascontiguousarray(v * signs)


def _whiten_scale(w: np.ndarray, largest: float, eps: float) -> tuple[np.ndarray, int]:
    """1 / sqrt(lambda) with lambda floored at eps * largest; and how many were floored."""
    floor = eps * largest
    if floor <= 0:  # an all-zero covariance: nothing to whiten
        raise LiftError("store transform: the fit sample has zero variance; it cannot be whitened")
    return 1.0 / np.sqrt(np.maximum(w, floor)), int((w < floor).sum())


# op name -> fn(moments of the fit sample or None, input dim, the op's spec) -> StoreTransform of that one op.
# A spec holds the op's settings (`k`, `whiten`, `eps`, ...): the chain entry is the spec plus what the
# fit found. `needs_fit`: the ops that need the sample's moments.
FITTERS: Registry[Callable[[Moments | None, int, dict[str, Any]], StoreTransform]] = Registry(
    "store transform operation"
)
NEEDS_FIT = ("center", "pca", "zca")


@FITTERS.register("center", help="y = x - mean")
def center_op(m: Moments | None, dim: int, spec: dict[str, Any]) -> StoreTransform:
    assert m is not None
    return StoreTransform(np.eye(dim), -m.mean, [{**spec, **_fit_record(m)}])


@FITTERS.register("pca", help="y = (x - mean) @ V_k, whitened: @ diag(1 / sqrt(lambda_k))")
def pca_op(m: Moments | None, dim: int, spec: dict[str, Any]) -> StoreTransform:
    """Records the explained variance (of the unwhitened projection)."""
    assert m is not None
    k = spec["k"]
    w, v = _eigen(m.cov)
    total = float(w.sum())
    vk = v[:, :k]
    op = {**spec, "explained_variance": float(w[:k].sum() / total) if total > 0 else 0.0}
    if spec.get("whiten"):
        scale, op["regularised"] = _whiten_scale(w[:k], float(w[0]), spec["eps"])
        vk = vk * scale
    return StoreTransform(vk, -m.mean @ vk, [op | _fit_record(m)])


@FITTERS.register("zca", help="y = (x - mean) @ V diag(1 / sqrt(lambda)) V^T: unit covariance, axes kept")
def zca_op(m: Moments | None, dim: int, spec: dict[str, Any]) -> StoreTransform:
    assert m is not None
    w, v = _eigen(m.cov)
    scale, regularised = _whiten_scale(w, float(w[0]), spec["eps"])
    matrix = (v * scale) @ v.T
    return StoreTransform(matrix, -m.mean @ matrix, [{**spec, "regularised": regularised, **_fit_record(m)}])


@FITTERS.register("truncate", help="y = x[..., :k]")
def truncate_op(m: Moments | None, dim: int, spec: dict[str, Any]) -> StoreTransform:
    k = spec["k"]
    return StoreTransform(np.eye(dim)[:, :k], np.zeros(k), [dict(spec)])


def fit_ops(specs: list[dict[str, Any]], dim: int, moments: Moments | None) -> StoreTransform | None:
    """The one map of the ops `specs` describe, in order (None for no op)."""
    out: StoreTransform | None = None
    for spec in specs:
        t = FITTERS.get(spec["op"])(moments, out.out_dim if out else dim, spec)
        out = t if out is None else out.then(t)
    return out
