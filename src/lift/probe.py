"""What a frozen text encoder can teach, measured on text alone (issue 17, `lift probe`).

LIFT trains an image tower to land on the frozen encoder's vector of its caption, so two captions
whose vectors (nearly) coincide are a distinction no tower can learn from that target. These probes
measure that ceiling before any GPU time is spent, on any `embed(texts) -> [N, D]` callable (a
`TextEncoder`, a store's encoder followed by its transform, or a stub in tests):

    probe_pairs(embed, [(pos, neg), ...], margin=0.01)          # SugarCrepe-style pairs
    probe_sugarcrepe(embed, "world/sugarcrepe")                  # every task file of a folder
    probe_classes(embed, class_prompts(names, templates))        # zero-shot class prompts
    probe_captions(embed, captions, groups=image_ids)            # a caption set (retrieval ceiling)
    probe_geometry(vectors)                                      # anisotropy and effective rank

All cosines are of L2-normalised vectors (what the loss compares). A pair or neighbour counts as
*too close* when its cosine is at least `1 - margin`; the default margin 0.01 (cosine 0.99, a
Euclidean distance of 0.14 between unit targets) is our convention for "closer than a trained head's
prediction error can plausibly resolve", not a law: the quantiles are reported beside it.

`encoder_subject` / `store_subject` build the things to compare (one column each), `probe_subject`
runs every probe on one, and `probe_report` / `markdown_report` put them side by side.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lift.errors import ErrorPolicy, LiftError

DEFAULT_MARGIN = 0.01
QUANTILES = (5, 25, 50, 75, 95)
CLOSEST = 5  # closest pairs named per probe
DEFAULT_SAMPLE = 5000  # captions (and store rows) probed at most: seconds on a CPU, stable figures
REPORT_FORMAT = "lift-probe"  # the JSON's "format": marks a file `lift probe --out` may replace
_CHUNK = 1024  # rows per block of the nearest-neighbour search: [chunk, N] float32 at a time

Embed = Callable[[Sequence[str]], Any]  # texts -> Tensor or ndarray [N, D]


# ---------------------------------------------------------------- the figures


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


def sugarcrepe_files(annotations: str | os.PathLike, subsets: Sequence[str] | None = None) -> dict[str, Path]:
    """{subset: file} of the SugarCrepe task files in a folder (all that exist, or exactly `subsets`)."""
    from lift.evaluate.results import SUGARCREPE_SUBSETS

    folder = Path(annotations)
    if not folder.is_dir():
        raise LiftError(f"{folder}: no such folder (--annotations must hold add_obj.json ... swap_att.json)")
    if subsets:
        unknown = [s for s in subsets if s not in SUGARCREPE_SUBSETS]
        if unknown:
            raise LiftError(f"unknown SugarCrepe subset(s) {unknown}; known: {list(SUGARCREPE_SUBSETS)}")
        missing = [s for s in subsets if not (folder / f"{s}.json").is_file()]
        if missing:
            raise LiftError(f"{folder}: no {', '.join(f'{s}.json' for s in missing)}")
    found = {
        s: folder / f"{s}.json" for s in (subsets or SUGARCREPE_SUBSETS) if (folder / f"{s}.json").is_file()
    }
    if not found:
        raise LiftError(
            f"{folder}: no SugarCrepe files (expected some of {', '.join(f'{s}.json' for s in SUGARCREPE_SUBSETS)})"
        )
    return found


def read_sugarcrepe_pairs(
    annotations: str | os.PathLike, *, subsets: Sequence[str] | None = None, policy: ErrorPolicy | None = None
) -> dict[str, list[tuple[str, str, str]]]:
    """{subset: [(item id, caption, negative caption)]} read as `lift eval sugarcrepe` reads them."""
    from lift.evaluate.formats import read_sugarcrepe_file

    policy = policy or ErrorPolicy()
    out = {}
    for subset, path in sugarcrepe_files(annotations, subsets).items():
        items = read_sugarcrepe_file(path, policy)
        if not items:
            raise LiftError(f"{path}: no usable items")
        out[subset] = [(it.id, it.caption, it.negative_caption) for it in items]
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


def default_template() -> str:
    """The prompt template zero-shot evaluation uses when none is given."""
    from lift.evaluate.zeroshot import DEFAULT_TEMPLATE

    return DEFAULT_TEMPLATE


def class_prompts(
    classnames: Sequence[str], templates: Sequence[str] | None = None
) -> list[tuple[str, list[str]]]:
    """[(class name, its prompts)] as zero-shot evaluation builds them (default: lift's one template)."""
    from lift.evaluate.zeroshot import fill

    templates = list(templates or [default_template()])
    return [(name, [fill(t, name) for t in templates]) for name in classnames]


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


# ---------------------------------------------------------------- inputs


def read_class_list(path: str | os.PathLike) -> list[str]:
    """Class names from a txt file (one per line) or ImageNet's `imagenet_class_index.json`
    ({"0": [wnid, name]}, in index order, "_" read as a space), as `lift eval zeroshot` reads them."""
    from lift.config import read_json
    from lift.evaluate.formats import read_classnames

    path = Path(path)
    if not path.is_file():
        raise LiftError(f"{path}: no such class-name file (--classnames)")
    if path.suffix == ".json":
        data = read_json(path)
        entries = list(data.items()) if isinstance(data, dict) else []
        if not entries or not all(
            k.isdigit() and isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
            for k, v in entries
        ):
            raise LiftError(f'{path}: expected imagenet_class_index.json\'s {{"0": [wnid, name]}} layout')
        wnids = [v[0] for _, v in sorted(entries, key=lambda kv: int(kv[0]))]
        names = read_classnames(path, wnids)  # the layout's own reader names each class
    else:
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as e:
            raise LiftError(f"{path}: not UTF-8 text at byte {e.start}; one class name per line") from None
        except OSError as e:
            raise LiftError(f"{path}: cannot read class names: {e}") from None
    if len(names) < 2:
        raise LiftError(
            f"{path}: {len(names)} class name(s); the probe compares classes, so it needs 2 or more"
        )
    return names


@dataclass
class CaptionSet:
    captions: list[str]
    groups: list[Any] | None  # image id per caption (retrieval sets), None for a flat caption file
    kind: str  # "coco", "txt" or a caption format (parquet, jsonl, ...)
    total: int  # captions in the file before sampling
    skipped: int = 0


def _is_coco(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    from lift.config import read_json

    try:
        data = read_json(path)
    except LiftError:
        return False  # not one JSON document: perhaps JSON lines
    return isinstance(data, dict) and "annotations" in data


def read_caption_set(
    path: str | os.PathLike,
    *,
    caption_field: str | None = None,
    fmt: str = "auto",
    sample: int | None = DEFAULT_SAMPLE,
    seed: int = 0,
    policy: ErrorPolicy | None = None,
) -> CaptionSet:
    """Captions to probe: a COCO captions JSON (grouped by image, as retrieval uses them), a .txt file
    (one caption per line), or any caption file or folder `lift embed` reads (parquet, JSON lines, CSV,
    TSV, webdataset tars; `caption_field` picks the column). At most `sample` captions, drawn with
    `seed` (a COCO set by whole images, so each kept image keeps all its captions)."""
    policy = policy or ErrorPolicy()
    path = Path(path)
    if not path.exists():
        raise LiftError(f"{path}: no such caption file (--captions)")
    groups: list[Any] | None = None
    skipped = 0
    if _is_coco(path):
        from lift.evaluate.formats import read_coco_captions

        if caption_field is not None:
            raise LiftError("--caption-field: a COCO captions JSON has one caption field; leave it out")
        data = read_coco_captions(path, path.parent, policy)
        captions = [c for caps in data.captions for c in caps]
        groups = [i for i, caps in zip(data.ids, data.captions) for _ in caps]
        kind, skipped = "coco", data.skipped_captions
    elif path.suffix == ".txt" and fmt == "auto":
        if caption_field is not None:
            raise LiftError("--caption-field: a .txt caption file has one caption per line and no fields")
        try:
            captions = [
                line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        except UnicodeDecodeError as e:
            raise LiftError(f"{path}: not UTF-8 text at byte {e.start}; one caption per line") from None
        kind = "txt"
    else:
        from lift.data.captions import parse_caption_fields, read_captions, source_files, source_for

        if len(parse_caption_fields(caption_field) or [None]) > 1:
            raise LiftError(f"--caption-field {caption_field!r}: name one caption field to probe")
        files = source_files(str(path), fmt)
        captions = []
        for file in files:
            got = read_captions(file, fmt=fmt, caption_field=caption_field, policy=policy)
            captions += got.captions
            skipped += got.skipped
        kind = source_for(files[0], fmt).name
    if not captions:
        raise LiftError(f"{path}: no usable captions")
    total = len(captions)
    if sample is not None and total > sample:
        captions, groups = _sample(captions, groups, sample, seed)
    return CaptionSet(captions=captions, groups=groups, kind=kind, total=total, skipped=skipped)


def _sample(
    captions: list[str], groups: list[Any] | None, n: int, seed: int
) -> tuple[list[str], list[Any] | None]:
    """A seeded sample of about `n` captions in file order: whole groups when grouped."""
    rng = np.random.default_rng(seed)
    if groups is None:
        keep = np.sort(rng.choice(len(captions), size=n, replace=False))
        return [captions[i] for i in keep], None
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    chosen: list[int] = []
    for k in rng.permutation(len(members)):
        rows = list(members.values())[k]
        if chosen and len(chosen) + len(rows) > n:
            break
        chosen += rows
    chosen.sort()
    return [captions[i] for i in chosen], [groups[i] for i in chosen]


def sample_store_vectors(store: Any, n: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """{view: float32 [m, dim]}: the same seeded sample of up to `n` rows (store order) of each view, drawn
    as `lift store transform` draws its fit sample (with its seed, the very rows it was fitted on)."""
    from lift.store.fit import sample_rows

    rows = sample_rows(len(store), fit_rows=n, seed=seed)
    starts = np.cumsum([0] + [store.shard_len(i) for i in range(store.num_shards)])
    shard_of = np.searchsorted(starts, rows, side="right") - 1
    parts = [store.read_rows(int(s), rows[shard_of == s] - starts[s]) for s in np.unique(shard_of)]
    got = np.concatenate(parts) if parts else np.zeros((0, store.num_views, store.dim), np.float32)
    if got.ndim == 2:  # a one-view store reads (n, dim)
        got = got[:, None, :]
    return {v: got[:, i, :] for i, v in enumerate(store.views)}


# ---------------------------------------------------------------- what is probed: encoders and stores


@dataclass
class Subject:
    """One column of the probe: a label, the frozen encoder, and the store (and its transform) when the
    column is a store. `embed` is the encoder's output mapped through the transform; subjects sharing
    an encoder share `raw`, so each text is embedded once for all of them."""

    label: str
    encoder: Any  # the TextEncoder (anything with `.encode(texts)`, `.identity`, `.path`)
    raw: Embed  # the encoder's memoised output, before any transform
    store: Any = None  # the EmbeddingStore, for store subjects
    transform_map: Any = None  # the store's StoreTransform, if any

    @property
    def kind(self) -> str:
        return "store" if self.store is not None else "encoder"

    @property
    def text_encoder(self) -> dict[str, Any]:
        return self.encoder.identity

    @property
    def transform(self) -> dict[str, Any] | None:
        return transform_identity(self.transform_map)

    @property
    def embed(self) -> Embed:
        t = self.transform_map
        return self.raw if t is None else (lambda texts: np.asarray(t.apply(self.raw(texts))))


def transform_identity(transform: Any) -> dict[str, Any] | None:
    """What a store transform records about itself (its identity dict), None for no transform."""
    if transform is None:
        return None
    for name in ("identity", "to_dict", "describe"):
        value = getattr(transform, name, None)
        value = value() if callable(value) else value
        if isinstance(value, dict):
            return value
    return {"repr": repr(transform)}


def encoder_embed(encoder: Any) -> Embed:
    """texts -> float32 [N, D]: the encoder's vectors."""
    return lambda texts: encoder.encode(list(texts)).float().numpy()


def encoder_subject(
    text_encoder: str = "default",
    *,
    pooling: str = "auto",
    max_tokens: int = 77,
    instruction: str = "",
    trust_remote_code: bool = False,
    device: str = "auto",
    batch_size: int = 128,
    label: str | None = None,
) -> Subject:
    """A raw encoder (a local Hugging Face folder or "default") as a probe column."""
    from lift.text import TextEncoder

    enc = TextEncoder.from_pretrained(
        text_encoder, pooling=pooling, max_tokens=max_tokens, instruction=instruction,
        trust_remote_code=trust_remote_code, device=device, batch_size=batch_size,
    )  # fmt: skip
    return Subject(label=label or str(text_encoder), encoder=enc, raw=memoized(encoder_embed(enc)))


def store_encoder_identity(store: Any) -> dict[str, Any]:
    """The identity of the encoder a store's vectors came from (before its transform)."""
    own = getattr(store, "encoder_identity", None)
    if isinstance(own, dict):
        return own
    return {k: v for k, v in store.identity.items() if k != "transform"}


def store_subject(
    store: str | os.PathLike,
    *,
    loaded: Sequence[Subject] = (),
    text_encoder: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
    device: str = "auto",
    batch_size: int = 128,
    label: str | None = None,
) -> Subject:
    """A store as a probe column: its encoder rebuilt from the identity it records, then its transform.

    A subject in `loaded` with exactly the store's encoder identity lends its encoder and its embedded
    texts. Otherwise the encoder folder is `text_encoder` when given (it must be the store's encoder),
    else the folder of a subject in `loaded` with the store's weights, else the folder the store
    records (`extra.text_encoder_path`).
    """
    from lift.identity import identity_diff
    from lift.store import open_store
    from lift.text import TextEncoder

    st = open_store(store)
    identity = store_encoder_identity(st)
    transform = getattr(st, "transform", None)
    same = next((s for s in loaded if not identity_diff(s.text_encoder, identity)), None)
    if same is not None and text_encoder is None:
        return Subject(
            label=label or str(store), encoder=same.encoder, raw=same.raw, store=st, transform_map=transform
        )
    weights = next(
        (s for s in loaded if s.text_encoder.get("weights_sha256") == identity.get("weights_sha256")), None
    )
    recorded = (st.manifest.get("extra") or {}).get("text_encoder_path")
    folder = text_encoder or (str(weights.encoder.path) if weights is not None else recorded)
    if not folder or not Path(folder).is_dir():
        raise LiftError(
            f"store {store}: its text encoder folder {folder or '(not recorded)'} is missing, and no "
            f"--text-encoder given holds its weights ({identity.get('name')}, sha256 "
            f"{str(identity.get('weights_sha256'))[:12]}...); name the folder now holding it with --text-encoder"
        )
    enc = TextEncoder.from_identity(
        identity, folder, trust_remote_code=trust_remote_code, device=device, batch_size=batch_size
    )
    return Subject(
        label=label or str(store),
        encoder=enc,
        raw=memoized(encoder_embed(enc)),
        store=st,
        transform_map=transform,
    )


# ---------------------------------------------------------------- running and reporting


@dataclass
class ProbeInputs:
    """The texts every column is probed on, read (and checked) once before any model loads."""

    sugarcrepe: dict[str, list[tuple[str, str, str]]] | None = None
    classes: list[tuple[str, list[str]]] | None = None
    captions: CaptionSet | None = None
    sources: dict[str, Any] = field(default_factory=dict)


def read_inputs(
    *,
    annotations: str | os.PathLike | None = None,
    subsets: Sequence[str] | None = None,
    classnames: str | os.PathLike | None = None,
    templates: str | os.PathLike | Sequence[str] | None = None,
    captions: str | os.PathLike | None = None,
    caption_field: str | None = None,
    caption_format: str = "auto",
    sample: int | None = DEFAULT_SAMPLE,
    seed: int = 0,
    policy: ErrorPolicy | None = None,
) -> ProbeInputs:
    """Read every input the probe needs; one-line LiftErrors for missing or unreadable ones."""
    from lift.evaluate.formats import read_templates

    policy = policy or ErrorPolicy()
    inputs = ProbeInputs()
    if annotations is not None:
        inputs.sugarcrepe = read_sugarcrepe_pairs(annotations, subsets=subsets, policy=policy)
        inputs.sources["annotations"] = str(annotations)
    if templates is not None and classnames is None:
        raise LiftError("--templates: prompts are built from class names; give --classnames too")
    if classnames is not None:
        names = read_class_list(classnames)
        if isinstance(templates, (str, os.PathLike)):
            inputs.sources["templates_file"] = str(templates)
            templates = read_templates(templates)
        inputs.classes = class_prompts(names, templates)
        inputs.sources["classnames"] = str(classnames)
        inputs.sources["templates"] = list(templates) if templates else [default_template()]
    if caption_field is not None and captions is None:
        raise LiftError("--caption-field: it names a field of --captions; give --captions too")
    if captions is not None:
        inputs.captions = read_caption_set(
            captions, caption_field=caption_field, fmt=caption_format, sample=sample, seed=seed, policy=policy
        )
        inputs.sources["captions"] = str(captions)
    return inputs


def probe_subject(
    subject: Subject,
    inputs: ProbeInputs,
    *,
    margin: float = DEFAULT_MARGIN,
    store_sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    return_cosines: bool = False,
) -> dict[str, Any]:
    """Every probe the inputs allow on one subject, as one JSON-ready column."""
    started = time.perf_counter()
    embed = memoized(subject.embed)
    column: dict[str, Any] = {
        "label": subject.label,
        "kind": subject.kind,
        "text_encoder": subject.text_encoder,
        "transform": subject.transform,
        "store": str(subject.store.path) if subject.store is not None else None,
        "text_encoder_path": str(subject.encoder.path),
        "text_encoder_name": _encoder_name(str(subject.encoder.path), subject.text_encoder),
    }
    if inputs.sugarcrepe is not None:
        column["sugarcrepe"] = probe_sugarcrepe(
            embed, inputs.sugarcrepe, margin=margin, return_cosines=return_cosines
        )
    if inputs.classes is not None:
        column["classes"] = probe_classes(embed, inputs.classes, margin=margin)
    if inputs.captions is not None:
        c = inputs.captions
        column["captions"] = probe_captions(embed, c.captions, groups=c.groups, margin=margin)
    if subject.store is not None and store_sample > 0:
        column["store_vectors"] = {
            view: probe_geometry(vectors) if len(vectors) >= 2 else None
            for view, vectors in sample_store_vectors(subject.store, store_sample, seed=seed).items()
        }
    column["dim"] = int(getattr(subject.transform_map, "out_dim", None) or subject.encoder.dim)
    column["seconds"] = round(time.perf_counter() - started, 3)
    return column


def probe_report(
    columns: Sequence[dict[str, Any]],
    inputs: ProbeInputs,
    *,
    margin: float,
    seed: int,
    sample: int | None,
    store_sample: int | None = None,
) -> dict[str, Any]:
    """The whole result as one JSON-ready dict."""
    caption_info = None
    if inputs.captions is not None:
        c = inputs.captions
        caption_info = {"kind": c.kind, "probed": len(c.captions), "total": c.total, "skipped": c.skipped,
                        "grouped": c.groups is not None}  # fmt: skip
    return {
        "format": REPORT_FORMAT,
        "margin": margin,
        "threshold": 1.0 - margin,
        "seed": seed,
        "sample": sample,
        "store_sample": store_sample,
        "inputs": {**inputs.sources, "captions_set": caption_info},
        "columns": list(columns),
    }


def _encoder_name(path: str | None, identity: dict[str, Any]) -> str:
    """The encoder as people know it: the packaged default's folder is just called "model"."""
    from lift.text.default import default_encoder_path

    try:
        default = path is not None and Path(path) == default_encoder_path()
    except LiftError:
        default = False
    return "all-MiniLM-L6-v2 (packaged default)" if default else str(identity.get("name"))


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _describe(column: dict[str, Any]) -> str:
    e = column["text_encoder"]
    name = column.get("text_encoder_name") or e.get("name")
    enc = f"{name} ({e.get('pooling')} pooling, {e.get('max_length')} tokens, {e.get('dim')}-d)"
    if column["kind"] == "encoder":
        return f"{column['label']}: {enc}, no transform"
    t = column.get("transform")
    kind = "no transform" if t is None else f"transform {_transform_name(t)}"
    return f"{column['label']}: store of {enc}, {kind}, {column['dim']}-d targets"


def _transform_name(t: dict[str, Any]) -> str:
    for key in ("name", "chain", "steps", "kind"):
        if key in t:
            value = t[key]
            if isinstance(value, list):
                if not value:
                    return "identity"
                return "+".join(
                    v.get("kind", v.get("name", str(v))) if isinstance(v, dict) else str(v) for v in value
                )
            return str(value)
    return "(recorded in the JSON)"


def markdown_report(report: dict[str, Any]) -> str:
    """The probe for people: one column per encoder or store, one row per figure."""
    cols = report["columns"]
    th = report["threshold"]
    lines = [
        f"lift probe: margin {report['margin']:g} (targets at cosine >= {th:g} count as too close for "
        "training to resolve)",
    ]
    lines += [f"  {_describe(c)}" for c in cols]
    head = ["figure", *(_cell(c["label"]) for c in cols)]
    rows: list[list[str]] = []

    def section(title: str) -> None:
        rows.append([f"**{title}**", *([""] * len(cols))])

    def row(name: str, fn: Callable[[dict[str, Any]], str]) -> None:
        rows.append([name, *(fn(c) for c in cols)])

    first = cols[0]
    if "sugarcrepe" in first:
        section(f"SugarCrepe cos(positive, negative): mean [5%-95%], share >= {th:g}")
        for subset, r in first["sugarcrepe"].items():
            row(f"{subset} ({r['n']} pairs)", lambda c, s=subset: _pairs_cell(c["sugarcrepe"][s]))
    if "classes" in first:
        k = first["classes"]
        section(
            f"class prompts ({k['n_classes']} classes, {k['templates']} template(s)): nearest-neighbour cos"
        )
        row("mean / max", lambda c: f"{c['classes']['nn_mean']:.3f} / {c['classes']['nn_max']:.3f}")
        row(f"classes >= {th:g}", lambda c: f"{c['classes']['n_above']} ({_pct(c['classes']['above'])})")
        row("closest pair", lambda c: _cell(_pair_text(c["classes"]["closest"][0])))
    if "captions" in first:
        cap = first["captions"]
        info = report["inputs"]["captions_set"]
        grouped = info["grouped"]
        section(
            f"captions ({info['probed']} of {info['total']}, {cap['n_distinct']} distinct"
            + (f", {cap['n_groups']} images)" if grouped else ")")
        )
        row("anisotropy (mean cos of pairs)", lambda c: _num(c["captions"]["geometry"]["anisotropy"]))
        row("effective rank", lambda c: _erank(c["captions"]["geometry"]))
        what = "another image's caption of another text" if grouped else "another caption"
        row(f"nearest {what}: mean cos", lambda c: _nn(c["captions"]["nn_distinct"], "mean"))
        row(
            f"captions with one >= {th:g} (the encoder's ceiling)",
            lambda c: _nn(c["captions"]["nn_distinct"], "above"),
        )
        if grouped:  # the same text under two images: a ceiling of the test set, not of the encoder
            row(
                "captions whose text another image has too",
                lambda c: str(c["captions"]["identical_elsewhere"]),
            )
    if any("store_vectors" in c for c in cols):
        views = sorted({v for c in cols for v in c.get("store_vectors", {})})
        section("store vectors (seeded sample)")
        for v in views:
            name = f" [{v}]" if len(views) > 1 else ""
            row(f"anisotropy{name}", lambda c, v=v: _geo(c, v, "anisotropy"))
            row(f"effective rank{name}", lambda c, v=v: _geo(c, v, "effective_rank"))
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = []
    for c in cols:
        if "captions" in c and c["captions"].get("closest"):
            p = c["captions"]["closest"][0]
            notes.append(f"closest captions ({c['label']}): {_pair_text(p)}")
    return "\n".join(lines + ([""] + notes if notes else []))


def _pairs_cell(r: dict[str, Any]) -> str:
    q = r["quantiles"]
    return f"{r['mean']:.3f} [{q['5']:.3f}-{q['95']:.3f}], {_pct(r['above'])}"


def _pair_text(p: dict[str, Any]) -> str:
    """Two texts for people: a long shared beginning is elided so that where they differ shows."""
    a, b = p["a"], p["b"]
    same = len(os.path.commonprefix([a, b]))
    if same > 40:
        cut = a.rfind(" ", 0, same - 15) + 1
        a, b = "..." + a[cut:], "..." + b[cut:]
    return f"{_short(a)!r} ~ {_short(b)!r} {p['cosine']:.3f}"


def _erank(g: dict[str, Any] | None) -> str:
    return "-" if g is None else f"{g['effective_rank']:.1f} of {g['dim']}"


def _nn(stats: dict[str, Any] | None, what: str) -> str:
    if stats is None:
        return "-"
    if what == "mean":
        return _num(stats["mean"])
    return f"{stats['n_above']} ({_pct(stats['above'])})"


def _num(x: float) -> str:
    text = f"{x:.3f}"
    return "0.000" if text == "-0.000" else text


def _geo(column: dict[str, Any], view: str, key: str) -> str:
    g = (column.get("store_vectors") or {}).get(view)
    if g is None:
        return "-"
    return _erank(g) if key == "effective_rank" else _num(g[key])
