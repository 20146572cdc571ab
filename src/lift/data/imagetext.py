"""Image-text training data read by index in a fixed order: the dataset, the global batch sampler
and the transforms. Which samples exist and which are trained on is `lift.data.index`.

Why an index instead of a webdataset stream: reading samples by index lets the global batch order
be a seeded permutation that depends only on (seed, epoch), never on world size, workers or where a
run was resumed, so a 2-process run sees the same global batches as a 1-process run and a resumed
run the same batches as an uninterrupted one. The index is built once by reading tar headers
(seconds for thousands of shards on a local disk). The trade-off at web scale: shards must be local
(or mounted) files with random access; streaming from `pipe:`/`s3://` with shuffle buffers would
give up the exact, world-size-independent order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from lift.data.images import load_rgb
from lift.data.index import (  # noqa: F401 (re-exported: the training stage's one import for its data)
    DataIndex,
    Sample,
    build_index,
    caption_field_problem,
    index_data,
    join_store,
    read_member,
    resolve_captions,
    select_samples,
)
from lift.errors import LiftError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A per-sample seed: augmentation and caption choice depend on nothing but (seed, epoch, index)."""
    return (seed * 1_000_003 + epoch) * 1_000_000_007 + index


class TextSource(Protocol):
    """What a method trains the images against, per sample: stored vector(s) (LIFT) or caption(s)
    (CLIP). Called in DataLoader workers; raises ValueError for a bad sample."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> np.ndarray | str | list[str]: ...


class ImageDecoder(Protocol):
    """Image bytes -> Tensor [3, H, W], its random crop seeded by `seed`; ValueError for a bad image.
    `lift.data.decode.PillowDecoder` (training: uint8, normalised on the device) or `ReferenceImages`."""

    def __call__(self, data: bytes, *, seed: int, name: str) -> Any: ...


class ReferenceImages:
    """The reference path: open_clip's PIL transform (`train_transform`) on the whole decoded image,
    float and normalised in the worker; what the fast decoder is measured and tested against."""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, data: bytes, *, seed: int, name: str) -> torch.Tensor:
        try:
            image = load_rgb(data)
        except Exception as e:  # PIL raises many types for corrupt files
            raise ValueError(f"corrupt image {name}: {e}") from None
        with torch.random.fork_rng(devices=[]):  # the crop drawn from the sample's seed alone
            torch.manual_seed(seed % (2**63))
            return self.transform(image)


def make_item(
    *, key: str, source: str, data: Callable[[], bytes], name: str, seed: int, images: ImageDecoder,
    text: Callable[[np.random.Generator], Any], problem: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One training item, {"key", "image", "text"}, or {"key", "error"}: a bad sample travels as a one-line
    message for the main process's error policy (workers cannot share its counter). Augmentation and
    the caption drawn depend on `seed` alone: identical across workers, ranks and resumes."""
    try:
        if problem:
            raise ValueError(problem)
        return {
            "key": key,
            "image": images(data(), seed=seed, name=name),
            "text": text(np.random.default_rng(seed)),
        }
    except (ValueError, OSError, KeyError) as e:
        return {"key": key, "error": f"{source}: sample {key!r}: {e}"}


class ImageTextDataset(torch.utils.data.Dataset):
    """Map-style dataset over `samples`; items are addressed as (epoch, index): `make_item`'s, with
    `text` what `text_source` gives (a vector [D] or [V, D], or caption(s))."""

    def __init__(
        self, samples: list[Sample], images: ImageDecoder, *, text_source: TextSource, seed: int = 0
    ) -> None:
        self.samples, self.images, self.text_source, self.seed = samples, images, text_source, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, index = item
        s = self.samples[index]
        ext = s.images[0] if s.images else ""
        return make_item(
            key=s.key, source=s.source, data=lambda: read_member(s, ext), name=f"{s.key}.{ext}",
            seed=sample_seed(self.seed, epoch, index), images=self.images,
            text=lambda rng: self.text_source(s, rng), problem=s.problem,
        )  # fmt: skip


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good items; bad ones travel as `errors` for the main process's policy. `images` is uint8
    [B, 3, H, W] from the fast decoder (or a list when some are left for the device to decode; float
    from ReferenceImages); `texts` a Tensor [B, D] / [B, V, D] of stored vectors, or a list of captions
    (str, or list[str] per sample)."""
    from lift.data.decode import stack_images

    good = [it for it in items if "error" not in it]
    batch: dict[str, Any] = {
        "keys": [it["key"] for it in good],
        "errors": [it["error"] for it in items if "error" in it],
    }
    if good:
        batch["images"] = stack_images([it["image"] for it in good])
        if "text" in good[0]:  # (image-only items, e.g. a decoding benchmark's, have none)
            texts = [it["text"] for it in good]
            batch["texts"] = torch.from_numpy(np.stack(texts)) if isinstance(texts[0], np.ndarray) else texts
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
