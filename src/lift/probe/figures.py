"""The probe's figures, on any `embed(texts) -> [N, D]` callable: the cosines of caption pairs
(SugarCrepe), of class prompts and of a caption set's nearest neighbours, and a vector set's geometry."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lift.errors import LiftError
from lift.probe.inputs import read_sugarcrepe_pairs

DEFAULT_MARGIN = 0.01
QUANTILES = (5, 25, 50, 75, 95)
CLOSEST = 5  # closest pairs named per probe
_CHUNK = 1024  # rows per block of the nearest-neighbour search: [chunk, N] float32 at a time

Embed = Callable[[Sequence[str]], Any]  # texts -> Tensor or ndarray [N, D]


def check_margin(margin: float) -> float:
    """`margin` as a float in (0, 2): cosines lie in [-1, 1], so 1 - margin must too."""
    try:
        value = float(margin)
    except (TypeError, ValueError):
        raise LiftError(f"--margin must be a number in (0, 2), got {margin!r}") from None
    if not 0 < value < 2:  # also refuses NaN
        raise LiftError(f"--margin must be in (0, 2) (pairs with cosine >= 1 - margin count), got {margin}")
    return value


def embed_matrix(embed: Embed, texts: Sequence[str]) -> np.ndarray:
    """float64 [N, D] unit rows of `embed(texts)`."""
    return unit(_vectors(embed, texts))


def _vectors(embed: Embed, texts: Sequence[str]) -> np.ndarray:
    """`embed(texts)` as float64 [N, D]; a LiftError when the callable returns the wrong shape or
    non-finite values."""
    texts = list(texts)
    out = embed(texts)
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().float().cpu().numpy()
    x = np.asarray(out, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(texts):
        raise LiftError(f"the encoder returned shape {x.shape} for {len(texts)} texts (expected [N, D])")
    if not np.isfinite(x).all():
        raise LiftError("the encoder returned NaN or infinite values")
    return x


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero: its cosine with anything is 0)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def distribution(values: np.ndarray, margin: float) -> dict[str, Any]:
    """Mean, quantiles and how many values reach 1 - margin."""
    values = np.asarray(values, dtype=np.float64)
    threshold = 1.0 - margin
    above = int((values >= threshold).sum())
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.percentile(values, QUANTILES))},
        "min": float(values.min()),
        "max": float(values.max()),
        "threshold": threshold,
        "n_above": above,
        "above": above / values.size,
    }


def probe_pairs(
    embed: Embed,
    pairs: Sequence[tuple[str, str]],
    *,
    margin: float = DEFAULT_MARGIN,
    ids: Sequence[str] | None = None,
    return_cosines: bool = False,
) -> dict[str, Any]:
    """cosine(positive, negative) over (positive, negative) caption pairs: its distribution and the share
    of pairs at or above 1 - margin (targets training can hardly tell apart)."""
    margin = check_margin(margin)
    pairs = list(pairs)
    if not pairs:
        raise LiftError("probe_pairs needs at least one (positive, negative) pair")
    x = embed_matrix(embed, [p for p, _ in pairs] + [n for _, n in pairs])
    cos = np.einsum("nd,nd->n", x[: len(pairs)], x[len(pairs) :])
    out = distribution(cos, margin)
    if return_cosines:
        out["cosines"] = cos.tolist()
        out["ids"] = list(ids) if ids is not None else [str(i) for i in range(len(pairs))]
    return out


def probe_sugarcrepe(
    embed: Embed,
    annotations: str | os.PathLike | Mapping[str, Sequence[tuple[str, str, str]]],
    *,
    margin: float = DEFAULT_MARGIN,
    subsets: Sequence[str] | None = None,
    return_cosines: bool = False,
) -> dict[str, dict[str, Any]]:
    """`probe_pairs` per SugarCrepe task: `annotations` is a folder or `read_sugarcrepe_pairs`'s result."""
    tasks = (
        annotations
        if isinstance(annotations, Mapping)
        else read_sugarcrepe_pairs(annotations, subsets=subsets)
    )
    embed = memoized(embed)  # positives recur across tasks: each text is embedded once
    return {
        subset: probe_pairs(
            embed,
            [(p, n) for _, p, n in items],
            margin=margin,
            ids=[i for i, _, _ in items],
            return_cosines=return_cosines,
        )  # fmt: skip
        for subset, items in tasks.items()
    }


def probe_classes(
    embed: Embed,
    prompts_by_class: Mapping[str, Sequence[str]] | Sequence[tuple[str, Sequence[str]]],
    *,
    margin: float = DEFAULT_MARGIN,
    closest: int = CLOSEST,
) -> dict[str, Any]:
    """Nearest-neighbour cosine between class vectors (per class the renormalised mean of its normalised
    prompt vectors, as zero-shot classification builds its classifier): mean, max, the share at or
    above 1 - margin, and the closest pairs by name. Repeated class names (ImageNet has two "crane"s)
    are kept: they are exactly the collisions worth seeing."""
    margin = check_margin(margin)
    classes = list(prompts_by_class.items() if isinstance(prompts_by_class, Mapping) else prompts_by_class)
    if len(classes) < 2:
        raise LiftError(f"probe_classes needs at least 2 classes, got {len(classes)}")
    counts = {len(p) for _, p in classes}
    if 0 in counts or len(counts) != 1:
        raise LiftError("probe_classes needs the same number (at least one) of prompts for every class")
    per = counts.pop()
    x = embed_matrix(embed, [t for _, prompts in classes for t in prompts])
    vectors = unit(x.reshape(len(classes), per, -1).mean(axis=1))
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.max(axis=1)
    stats = distribution(nn, margin)
    names = [name for name, _ in classes]
    upper = np.triu_indices(len(classes), k=1)
    order = np.argsort(-sim[upper], kind="stable")[:closest]
    pairs = [
        {"a": names[upper[0][k]], "b": names[upper[1][k]], "cosine": float(sim[upper][k])} for k in order
    ]
    return {
        "n_classes": len(classes),
        "templates": per,
        "nn_mean": stats["mean"],
        "nn_max": stats["max"],
        "nn_quantiles": stats["quantiles"],
        "threshold": stats["threshold"],
        "n_above": stats["n_above"],
        "above": stats["above"],
        "closest": pairs,
    }


def probe_geometry(vectors: Any) -> dict[str, Any]:
    """Anisotropy (the mean cosine over all pairs of distinct vectors: 0 for directions spread evenly,
    near 1 when every vector points the same way) and effective rank (exp of the entropy of the
    normalised eigenvalues of the unit vectors' covariance: how many directions the set really uses,
    between 1 and the dimension; 0 when the vectors do not vary at all)."""
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    x = unit(np.asarray(vectors, dtype=np.float64))
    if x.ndim != 2 or x.shape[0] < 2:
        raise LiftError(f"probe_geometry needs at least 2 vectors of shape [N, D], got {x.shape}")
    n, dim = x.shape
    total = x.sum(axis=0)
    # sum over i != j of <u_i, u_j> = |sum u|^2 - sum |u_i|^2: every pair, no sampling, O(N D)
    anisotropy = (float(total @ total) - float((x * x).sum())) / (n * (n - 1))
    centered = x - total / n
    eig = np.linalg.svd(centered, compute_uv=False) ** 2  # the covariance's eigenvalues, up to a factor
    mass = float(eig.sum())
    if mass <= 1e-12 * n:
        erank = 0.0
    else:
        p = eig[eig > 0] / mass
        erank = float(math.exp(-(p * np.log(p)).sum()))
    return {"n": n, "dim": dim, "anisotropy": anisotropy, "effective_rank": erank}


def probe_captions(
    embed: Embed,
    captions: Sequence[str],
    *,
    groups: Sequence[Any] | None = None,
    margin: float = DEFAULT_MARGIN,
    closest: int = CLOSEST,
) -> dict[str, Any]:
    """A caption set's geometry and its nearest neighbours: per caption, the cosine of its nearest
    caption of another image (`groups`: each caption's image id, as in a retrieval test set) or, for a
    flat list (`groups` None), of its nearest other text.

    - `nn`: over every other-image caption, the same text included (at cosine 1): how many captions
      retrieval can hardly tell from another image's, whatever the cause;
    - `nn_distinct`: over other-image captions of another text: the encoder's own ceiling;
    - `identical_elsewhere`: captions whose very text another image also has (the test set's ceiling).
    `n_above` counts captions whose neighbour is at or above 1 - margin; `closest` names the closest
    pairs of different texts."""
    margin = check_margin(margin)
    captions = list(captions)
    if groups is None:  # each distinct text is its own group
        texts = list(dict.fromkeys(captions))
        group_of: list[Any] = list(range(len(texts)))
    else:
        if len(groups) != len(captions):
            raise LiftError(f"probe_captions: {len(groups)} groups for {len(captions)} captions")
        texts, group_of = captions, list(groups)
    if len(texts) < 2:
        raise LiftError(f"probe_captions needs at least 2 distinct captions, got {len(texts)}")
    unique = list(dict.fromkeys(texts))
    x_unique = embed_matrix(embed, unique)
    where = {t: i for i, t in enumerate(unique)}
    text_ids = np.asarray([where[t] for t in texts])
    codes = np.unique(np.asarray([repr(g) for g in group_of]), return_inverse=True)[1]
    (nn, _), (nn_d, arg_d) = _nearest_other(x_unique[text_ids].astype(np.float32), codes, text_ids)
    text_groups: dict[int, set[int]] = {}
    for t, g in zip(text_ids.tolist(), codes.tolist()):
        text_groups.setdefault(t, set()).add(g)
    seen, pairs = set(), []
    for i in np.argsort(-nn_d, kind="stable"):
        if np.isneginf(nn_d[i]):
            break
        key = frozenset((texts[i], texts[arg_d[i]]))
        if key not in seen:
            seen.add(key)
            pairs.append({"a": texts[i], "b": texts[arg_d[i]], "cosine": float(min(nn_d[i], 1.0))})
        if len(pairs) == closest:
            break
    return {
        "n_captions": len(captions),
        "n_distinct": len(unique),
        "n_groups": int(codes.max()) + 1,
        "geometry": probe_geometry(x_unique),
        "nn": _found(nn, margin),
        "nn_distinct": _found(nn_d, margin),
        "identical_elsewhere": int(sum(len(text_groups[t]) > 1 for t in text_ids.tolist())),
        "closest": pairs,
    }


def _found(best: np.ndarray, margin: float) -> dict[str, Any] | None:
    """`distribution` of the neighbours found (None when no caption has one)."""
    ok = ~np.isneginf(best)
    return distribution(np.minimum(best[ok], 1.0), margin) if ok.any() else None


def _nearest_other(
    x: np.ndarray, codes: np.ndarray, text_ids: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Per row, (highest cosine, its row) among rows of another group, then among those of another text
    too (-inf / -1 when there is none)."""
    n = len(x)
    found = [(np.full(n, -np.inf), np.full(n, -1)), (np.full(n, -np.inf), np.full(n, -1))]
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        rows = np.arange(stop - start)
        sim = x[start:stop] @ x.T
        sim[codes[start:stop, None] == codes[None, :]] = -np.inf
        for k, (best, arg) in enumerate(found):
            if k == 1:  # the same text under another image: cosine 1, but no fault of the encoder
                sim[text_ids[start:stop, None] == text_ids[None, :]] = -np.inf
            arg[start:stop] = sim.argmax(axis=1)
            best[start:stop] = sim[rows, arg[start:stop]]
    return found[0], found[1]


def memoized(embed: Embed) -> Embed:
    """`embed` that embeds each distinct text once across calls (its float32 vectors are kept)."""
    if getattr(embed, "_lift_memo", None) is not None:
        return embed
    memo: dict[str, np.ndarray] = {}

    def call(texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        new = [t for t in dict.fromkeys(texts) if t not in memo]
        if new:
            memo.update(zip(new, _vectors(embed, new).astype(np.float32)))
        if not texts:
            return np.zeros((0, 0), np.float32)
        return np.stack([memo[t] for t in texts])

    call._lift_memo = memo  # type: ignore[attr-defined]
    return call
