"""The texts and vectors the probe reads, checked before any model loads: SugarCrepe pairs, class
prompts, a (sampled) caption set, and a seeded sample of a store's vectors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lift.errors import ErrorPolicy, LiftError

DEFAULT_SAMPLE = 5000  # captions (and store rows) probed at most: seconds on a CPU, stable figures


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
