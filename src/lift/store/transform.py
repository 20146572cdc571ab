"""A store transform: the fixed affine map `y = x @ matrix + bias` from a text encoder's raw output
to a transformed store's vectors (`lift store transform`: centre, PCA, whiten, truncate).

    t = StoreTransform.load("emb/pca64/transform.safetensors")    # or open_store(...).transform
    y = t.apply(x)                       # [..., in_dim] -> [..., out_dim] float32, computed in float64
    t.identity                           # {"sha256", "chain", "in_dim", "out_dim"}: what checkpoints record
    both = t.then(other)                 # first t, then other: one map, chains concatenated

`chain` lists the operations fitted, in order, one dict each (`op`, its size, the fit sample's rows
and seed, the explained variance of a PCA, the source store and its manifest checksum). The file is
safetensors: float64 `matrix` [in_dim, out_dim] and `bias` [out_dim], the chain as JSON in its
metadata (one key, `lift-store-transform`, holding a JSON object with sorted keys: safetensors
writes several metadata keys in a random order, and the file must be the same bytes every run).
A store transformed from an already transformed store also keeps the step it added
(`step_matrix`, `step_bias`: its input store's vectors -> its own, see `load_step`), so a resumed
job applies exactly the saved map without fitting again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lift.atomic import atomic_write
from lift.errors import LiftError, first_line
from lift.registry import Registry

FILE_FORMAT = "lift-store-transform"
FILE_VERSION = "1"
# where a chain entry was made, not what the map is: left out of the identity, so a store moved or
# transformed again from a copy of the same input keeps the same identity
PROVENANCE_KEYS = ("source_store",)

# short words for each kind of operation in a chain (identity summaries, `lift store info`)
OPS: Registry[Callable[[dict[str, Any]], str]] = Registry("store transform operation")


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "?"


@OPS.register("center", help="subtract the fit sample's mean")
def _center_words(op: dict[str, Any]) -> str:
    return "center"


@OPS.register("pca", help="project on the top-k principal axes (whitened: scaled to unit variance)")
def _pca_words(op: dict[str, Any]) -> str:
    return f"pca {op.get('k')}" + (" whitened" if op.get("whiten") else "")


@OPS.register("zca", help="ZCA whitening: unit covariance, axes kept")
def _zca_words(op: dict[str, Any]) -> str:
    return "zca-whiten"


@OPS.register("truncate", help="keep the first k coordinates (Matryoshka-style)")
def _truncate_words(op: dict[str, Any]) -> str:
    return f"truncate {op.get('k')}"


def op_summary(op: dict[str, Any]) -> str:
    """A few words for one chain entry: "pca 192 whitened", "truncate 64"."""
    name = op.get("op")
    return OPS.get(name)(op) if name in OPS else str(name)


def op_details(op: dict[str, Any]) -> str:
    """One line on one chain entry, for people: what it is and how it was fitted."""
    parts = [op_summary(op)]
    if "explained_variance" in op:
        parts.append(f"explained variance {_pct(op['explained_variance'])}")
    if op.get("eps") is not None:
        parts.append(f"eps {op['eps']:g} x largest eigenvalue, {op.get('regularised', 0)} regularised")
    if "fit_rows" in op:
        parts.append(
            f"fit on {op['fit_rows']:,} rows ({op.get('fit_vectors', op['fit_rows']):,} vectors), seed {op.get('seed')}"
        )
    return ", ".join(parts)


def _float64(a: Any, shape_ndim: int, what: str) -> np.ndarray:
    # our own read-only copy: the identity is computed once
    arr = np.array(a, dtype=np.float64, order="C", copy=True)
    arr.setflags(write=False)
    if arr.ndim != shape_ndim:
        raise LiftError(f"store transform: {what} must have {shape_ndim} dimension(s), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise LiftError(f"store transform: {what} holds NaN or inf")
    return arr


class StoreTransform:
    """The affine map `y = x @ matrix + bias` (float64 [in_dim, out_dim] and [out_dim]) and the chain of
    operations it was fitted from. Immutable: matrix and bias are read-only copies."""

    def __init__(self, matrix: Any, bias: Any, chain: list[dict[str, Any]] | None = None) -> None:
        self.matrix = _float64(matrix, 2, "matrix")
        self.bias = _float64(bias, 1, "bias")
        if self.bias.shape[0] != self.matrix.shape[1]:
            raise LiftError(
                f"store transform: bias has {self.bias.shape[0]} values for a matrix of {self.matrix.shape[1]} columns"
            )
        try:  # a JSON copy: what the file holds, and no caller's dict to change under the cached identity
            chain = json.loads(json.dumps(list(chain or [])))
        except (TypeError, ValueError) as e:
            raise LiftError(f"store transform: the chain must be JSON-serialisable ({e})") from None
        if not all(isinstance(op, dict) and isinstance(op.get("op"), str) for op in chain):
            raise LiftError("store transform: every chain entry must be a dict with an 'op' name")
        self.chain: list[dict[str, Any]] = chain
        self._identity: dict[str, Any] | None = None

    @classmethod
    def eye(cls, dim: int) -> StoreTransform:
        """The identity map of `dim`-d vectors (an empty chain)."""
        return cls(np.eye(dim), np.zeros(dim), [])

    @property
    def in_dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.matrix.shape[1])

    def apply(self, x: Any) -> np.ndarray:
        """[..., in_dim] -> [..., out_dim] float32, computed in float64."""
        arr = np.asarray(x)
        if arr.ndim < 1 or arr.shape[-1] != self.in_dim:
            raise LiftError(
                f"store transform maps {self.in_dim}-d vectors; got an array of shape {arr.shape}"
            )
        y = arr.astype(np.float64, copy=False) @ self.matrix + self.bias
        return y.astype(np.float32)

    def then(self, other: StoreTransform) -> StoreTransform:
        """The one map that applies self, then other (chains concatenated)."""
        if other.in_dim != self.out_dim:
            raise LiftError(
                f"cannot chain store transforms: the first gives {self.out_dim}-d vectors, the second takes "
                f"{other.in_dim}-d"
            )
        return StoreTransform(
            self.matrix @ other.matrix, self.bias @ other.matrix + other.bias, self.chain + other.chain
        )

    @property
    def identity(self) -> dict[str, Any]:
        """{"sha256", "chain" (short words per operation), "in_dim", "out_dim"}: JSON, what checkpoints
        record and compare. The hash covers the exact matrix and bias bytes and the chain (its
        provenance fields, such as the source store's path, left out)."""
        if self._identity is None:
            h = hashlib.sha256()
            h.update(f"{FILE_FORMAT}/{FILE_VERSION}:{self.in_dim}x{self.out_dim}\n".encode())
            h.update(self.matrix.astype("<f8").tobytes())
            h.update(self.bias.astype("<f8").tobytes())
            ops = [{k: v for k, v in op.items() if k not in PROVENANCE_KEYS} for op in self.chain]
            h.update(json.dumps(ops, sort_keys=True, separators=(",", ":")).encode())
            self._identity = {
                "sha256": h.hexdigest(),
                "chain": [op_summary(op) for op in self.chain],
                "in_dim": self.in_dim,
                "out_dim": self.out_dim,
            }
        return dict(self._identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreTransform) and self.identity == other.identity

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        ops = ", ".join(self.identity["chain"]) or "identity"
        return f"StoreTransform({self.in_dim} -> {self.out_dim}: {ops})"

    # ---- the file ---------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, *, step: StoreTransform | None = None) -> None:
        """Write the transform as safetensors, atomically. `step`: the map this job added to an already
        transformed input (its chain is the last entries of ours), kept so a resumed job can reuse it."""
        from safetensors.numpy import save

        tensors = {"matrix": self.matrix.astype("<f8"), "bias": self.bias.astype("<f8")}
        meta: dict[str, Any] = {"format": FILE_FORMAT, "version": FILE_VERSION, "chain": self.chain}
        if step is not None:
            if step.out_dim != self.out_dim or self.chain[len(self.chain) - len(step.chain) :] != step.chain:
                raise LiftError(
                    "store transform: the step saved must be the last part of the transform's chain"
                )
            tensors |= {"step_matrix": step.matrix.astype("<f8"), "step_bias": step.bias.astype("<f8")}
            meta["step_ops"] = len(step.chain)
        data = save(tensors, metadata={FILE_FORMAT: json.dumps(meta, sort_keys=True)})
        with atomic_write(path) as f:
            f.write(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> StoreTransform:
        """The transform saved at `path`; a one-line LiftError when it is missing or not one."""
        tensors, metadata = _read(Path(path))
        return _build(path, tensors["matrix"], tensors["bias"], _chain(path, metadata))


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors import safe_open

    if not path.is_file():
        raise LiftError(f"{path}: store transform file is missing")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # safetensors raises its own error types
        raise LiftError(f"{path}: not a readable store transform ({first_line(e)})") from None
    try:
        metadata = json.loads(header.get(FILE_FORMAT, ""))
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise LiftError(f"{path}: not a lift store transform (no readable {FILE_FORMAT!r} metadata)")
    if metadata.get("format") != FILE_FORMAT or metadata.get("version") != FILE_VERSION:
        raise LiftError(
            f"{path}: not a lift store transform of version {FILE_VERSION} "
            f"(format {metadata.get('format')!r}, version {metadata.get('version')!r})"
        )
    missing = [k for k in ("matrix", "bias") if k not in tensors]
    if missing:
        raise LiftError(f"{path}: store transform lacks {', '.join(missing)}")
    return tensors, metadata


def _chain(path: str | os.PathLike, metadata: dict[str, Any]) -> list[dict[str, Any]]:
    chain = metadata.get("chain", [])
    if not isinstance(chain, list):
        raise LiftError(f"{path}: store transform chain is not a list")
    return chain


def _build(path: str | os.PathLike, matrix: Any, bias: Any, chain: list[dict[str, Any]]) -> StoreTransform:
    try:
        return StoreTransform(matrix, bias, chain)
    except LiftError as e:
        raise LiftError(f"{path}: {e}") from None


def load_step(path: str | os.PathLike) -> StoreTransform:
    """The map the job that wrote `path` added to its input store's vectors: the saved step when its
    input was itself transformed, else the whole transform."""
    tensors, metadata = _read(Path(path))
    chain = _chain(path, metadata)
    if "step_matrix" not in tensors:
        return _build(path, tensors["matrix"], tensors["bias"], chain)
    n = metadata.get("step_ops")
    if not isinstance(n, int) or not 0 <= n <= len(chain) or "step_bias" not in tensors:
        raise LiftError(f"{path}: the step saved in the store transform is damaged")
    return _build(path, tensors["step_matrix"], tensors["step_bias"], chain[len(chain) - n :])
