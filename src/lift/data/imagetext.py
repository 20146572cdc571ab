"""Image-text training data: an index of samples (tar shards or image folders + parquet), joined
with the embedding store by key (LIFT) or with captions (CLIP), read by index in a fixed order.

Why an index instead of a webdataset stream: reading samples by index lets the global batch order
be a seeded permutation that depends only on (seed, epoch), never on world size, workers or where a
run was resumed, so a 2-process run sees the same global batches as a 1-process run and a resumed
run the same batches as an uninterrupted one. The index is built once by reading tar headers
(seconds for thousands of shards on a local disk). The trade-off at web scale: shards must be local
(or mounted) files with random access; streaming from `pipe:`/`s3://` with shuffle buffers would
give up the exact, world-size-independent order.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lift.data.paths import expand_paths, is_url
from lift.errors import ErrorPolicy, LiftError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")
CAPTION_FIELDS = ("short", "long", "random")
# parquet / json column for each caption kind (img2dataset + Recap-DataComp names)
SHORT_COLUMNS = ("org_caption", "caption", "text")
LONG_COLUMNS = ("re_caption", "long_caption")


@dataclass
class Sample:
    """Where one training sample lives. `members` maps extension -> (offset, size) inside a tar,
    or -> a file path for image folders."""

    key: str
    source: str
    members: dict[str, Any]
    captions: dict[str, str] = field(default_factory=dict)


def _first(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = row.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _captions_from_row(row: dict[str, Any]) -> dict[str, str]:
    out = {}
    if short := _first(row, SHORT_COLUMNS):
        out["short"] = short
    if long := _first(row, LONG_COLUMNS):
        out["long"] = long
    return out


def read_metadata(paths: list[str]) -> dict[str, dict[str, str]]:
    """key -> {"short": ..., "long": ...} from parquet files with a `key` column."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, str]] = {}
    for path in paths:
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for unreadable files
            raise LiftError(f"{path}: cannot read parquet metadata: {e}") from None
        if "key" not in table.column_names:
            raise LiftError(f"{path}: parquet metadata has no 'key' column (columns: {table.column_names})")
        for row in table.to_pylist():
            out[str(row["key"])] = _captions_from_row(row)
    return out


def _index_tar(path: str) -> list[Sample]:
    """One Sample per key in a tar (webdataset convention: key = member name up to the first dot)."""
    by_key: dict[str, Sample] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                name = info.name
                base = os.path.basename(name)
                if "." not in base or base.startswith("."):
                    continue
                stem, ext = base.split(".", 1)
                key = os.path.join(os.path.dirname(name), stem)
                sample = by_key.setdefault(key, Sample(key=key, source=path, members={}))
                sample.members[ext.lower()] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError) as e:
        raise LiftError(f"{path}: not a readable tar shard: {e}") from None
    return list(by_key.values())


def _index_folder(paths: list[str]) -> list[Sample]:
    """Image folders (img2dataset `files` layout): KEY.jpg with optional KEY.txt / KEY.json beside it."""
    samples = []
    for path in paths:
        p = Path(path)
        stem, ext = p.name.split(".", 1) if "." in p.name else (p.name, "")
        if ext.lower() not in IMAGE_EXTS:
            continue
        members: dict[str, Any] = {ext.lower(): str(p)}
        for side in ("txt", "json"):
            if (q := p.with_name(f"{stem}.{side}")).is_file():
                members[side] = str(q)
        samples.append(Sample(key=stem, source=str(p), members=members))
    return samples


def build_index(train_data: str | list[str], metadata: str | None = None) -> list[Sample]:
    """Every sample of `train_data` (tar shards or image folders), with parquet captions merged in.

    Captions come from, in order: `metadata` parquet files, a parquet beside each tar (img2dataset
    writes `00000.parquet` next to `00000.tar`), then the sample's own .txt / .json at read time.
    """
    specs = [train_data] if isinstance(train_data, str) else list(train_data)
    if any(is_url(s) for s in specs):
        raise LiftError(
            f"{train_data}: URLs are not supported by the indexed loader; copy or mount the shards locally"
        )
    tars = [s for s in specs if s.endswith(".tar") or Path(s).is_dir() and any(Path(s).glob("*.tar"))]
    samples: list[Sample] = []
    if tars:
        shard_paths = expand_paths(tars, suffixes=(".tar",))
        for shard in shard_paths:
            shard_samples = _index_tar(shard)
            sidecar = Path(shard).with_suffix(".parquet")
            if sidecar.is_file():
                meta = read_metadata([str(sidecar)])
                for s in shard_samples:
                    s.captions.update(meta.get(s.key, {}))
            samples.extend(shard_samples)
    folders = [s for s in specs if s not in tars]
    if folders:
        files = []
        for spec in folders:
            p = Path(spec)
            files.extend(
                sorted(str(f) for f in p.rglob("*") if f.is_file()) if p.is_dir() else expand_paths(spec)
            )
        samples.extend(_index_folder(files))
    if metadata:
        meta = read_metadata(expand_paths(metadata, suffixes=(".parquet",)))
        for s in samples:
            s.captions.update(meta.get(s.key, {}))
    if not samples:
        raise LiftError(f"{train_data}: no image-text samples found")
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))
        raise LiftError(f"{train_data}: key {dup!r} appears in more than one sample; keys must be unique")
    return samples


def join_store(samples: list[Sample], store: Any, policy: ErrorPolicy) -> list[Sample]:
    """Keep the samples that have an embedding; a sample without one is a bad input (policy).

    An embedding without an image is one too, checked shard by shard where the store's shards are
    named like the data's (as `lift embed` writes them): so training on a subset of the shards
    with the full store stays allowed.
    """
    kept = []
    for s in samples:
        if s.key in store:
            kept.append(s)
        else:
            policy.fail(f"{s.source}: sample {s.key!r} has no embedding in the store")
    have_by_shard: dict[str, set[str]] = {}
    for s in kept:
        have_by_shard.setdefault(Path(s.source).name.split(".", 1)[0], set()).add(s.key)
    for i, name in enumerate(getattr(store, "shard_names", [])):
        if name in have_by_shard and store.shard_len(i) > len(have_by_shard[name]):
            for key in store.shard_keys(i):
                if key not in have_by_shard[name]:
                    policy.fail(f"store shard {name}: key {key!r} has an embedding but no image in the data")
    return kept


def _read_member(sample: Sample, ext: str) -> bytes:
    where = sample.members[ext]
    if isinstance(where, str):
        return Path(where).read_bytes()
    offset, size = where
    with open(sample.source, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _image_ext(sample: Sample) -> str | None:
    return next((e for e in IMAGE_EXTS if e in sample.members), None)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A per-sample seed: augmentation and caption choice depend on nothing but (seed, epoch, index)."""
    return (seed * 1_000_003 + epoch) * 1_000_000_007 + index


class ImageTextDataset(torch.utils.data.Dataset):
    """Map-style dataset over `samples`; items are addressed as (epoch, index).

    Returns a dict with `key`, `image` [3, H, W] and `embedding` (LIFT) or `caption` (CLIP),
    or `error` (a one-line message) for a bad sample, which the collate function passes on so
    the main process applies the error policy (workers cannot share its counter).
    """

    def __init__(
        self,
        samples: list[Sample],
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        store: Any = None,
        caption_field: str = "short",
        seed: int = 0,
    ) -> None:
        if caption_field not in CAPTION_FIELDS:
            raise LiftError(f"--caption-field must be one of {CAPTION_FIELDS}, got {caption_field!r}")
        self.samples = samples
        self.transform = transform
        self.store = store
        self.caption_field = caption_field
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def _caption(self, s: Sample, rng: np.random.Generator) -> str:
        captions = dict(s.captions)
        if "txt" in s.members and "short" not in captions:
            captions["short"] = _read_member(s, "txt").decode("utf-8").strip()
        if "json" in s.members and not {"short", "long"} <= set(captions):
            row = json.loads(_read_member(s, "json"))
            captions = {**_captions_from_row(row), **captions}
        want = self.caption_field
        if want == "random":
            want = ("short", "long")[int(rng.integers(2))]
        if want not in captions:
            raise ValueError(f"no {want} caption (found: {sorted(captions) or 'none'})")
        return captions[want]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, index = item
        s = self.samples[index]
        seed = sample_seed(self.seed, epoch, index)
        out: dict[str, Any] = {"key": s.key}
        try:
            ext = _image_ext(s)
            if ext is None:
                raise ValueError("no image")
            try:
                image = Image.open(io.BytesIO(_read_member(s, ext)))
                image = image.convert("RGB")
            except Exception as e:  # PIL raises many types for corrupt files
                raise ValueError(f"corrupt image {s.key}.{ext}: {e}") from None
            # Seeded per sample so augmentation is identical across workers, ranks and resumes.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed % (2**63))
                out["image"] = self.transform(image)
            if self.store is not None:
                emb = np.asarray(self.store[s.key], dtype=np.float32)
                if not np.isfinite(emb).all():
                    raise ValueError("embedding has NaN or inf values")
                out["embedding"] = torch.from_numpy(emb.copy())
            else:
                out["caption"] = self._caption(s, np.random.default_rng(seed))
        except (ValueError, OSError, KeyError, UnicodeDecodeError) as e:
            return {"key": s.key, "error": f"{s.source}: sample {s.key!r}: {e}"}
        return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good items; bad ones travel as `errors` for the main process's policy."""
    good = [it for it in items if "error" not in it]
    batch: dict[str, Any] = {
        "keys": [it["key"] for it in good],
        "errors": [it["error"] for it in items if "error" in it],
    }
    if good:
        batch["images"] = torch.stack([it["image"] for it in good])
        if "embedding" in good[0]:
            batch["embeddings"] = torch.stack([it["embedding"] for it in good])
        else:
            batch["captions"] = [it["caption"] for it in good]
    return batch


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's slice of each global batch, from `start_step` on.

    Global batch b of epoch e is perm_e[b*B:(b+1)*B] with perm_e a permutation seeded by
    (seed, e): the same for any world size. Incomplete last batches are dropped.
    """

    def __init__(
        self, n: int, batch_size: int, *, seed: int, total_steps: int, start_step: int = 0, rank: int = 0,
        world_size: int = 1,
    ) -> None:  # fmt: skip
        if batch_size % world_size:
            raise LiftError(f"--batch-size {batch_size} must be divisible by the world size {world_size}")
        self.steps_per_epoch = n // batch_size
        if self.steps_per_epoch == 0:
            raise LiftError(f"--batch-size {batch_size} is larger than the dataset ({n} samples)")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.total_steps, self.start_step = total_steps, start_step
        self.rank, self.world_size = rank, world_size

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        local = self.batch_size // self.world_size
        epoch, perm = -1, None
        for step in range(self.start_step, self.total_steps):
            e, b = divmod(step, self.steps_per_epoch)
            if e != epoch:
                epoch, perm = e, self.permutation(e)
            start = b * self.batch_size + self.rank * local
            yield [(e, int(i)) for i in perm[start : start + local]]


def total_steps_for(n: int, batch_size: int, *, samples: int | None, epochs: float | None) -> int:
    """Optimizer steps for a budget of `samples` seen or `epochs` passes (one of them)."""
    if samples:
        return math.ceil(samples / batch_size)
    if epochs:
        return max(1, int(epochs * (n // batch_size)))
    raise LiftError("give a budget: --samples N or --epochs E")


def train_transform(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Callable:
    """The paper's augmentation: RandomResizedCrop(scale 0.9-1.0, bicubic) + CLIP mean/std (open_clip)."""
    from open_clip.transform import AugmentationCfg, image_transform

    return image_transform(
        image_size, is_train=True, mean=mean, std=std, interpolation="bicubic",
        aug_cfg=AugmentationCfg(scale=(0.9, 1.0)),
    )  # fmt: skip


def eval_transform(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Callable:
    """Resize the short side + center crop + mean/std (open_clip's eval transform)."""
    from open_clip.transform import image_transform

    return image_transform(image_size, is_train=False, mean=mean, std=std, interpolation="bicubic")
