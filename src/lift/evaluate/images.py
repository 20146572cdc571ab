"""Batched image embedding: a DataLoader decodes and preprocesses while the model runs.

A missing or unreadable image is reported through the error policy (stop: LiftError naming the
file; skip: counted), never silently scored as a wrong answer. Images are decoded by
`lift.data.images.load_rgb`, as in training, so 16-bit, float and transparent images look the same there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lift.data.images import load_rgb
from lift.errors import ErrorPolicy


class ImageFiles(Dataset):
    """(index, Tensor[3,H,W] or None, error or None) for each path."""

    def __init__(self, paths: Sequence[str | Path], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = [Path(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.paths[i]
        try:
            return i, self.transform(load_rgb(path)), None
        except FileNotFoundError:
            return i, None, f"{path}: image not found"
        except Exception as e:  # PIL raises many types for corrupt files; all mean "unreadable"
            return i, None, f"{path}: unreadable image ({type(e).__name__}: {e})"


def _collate(items: list[tuple[int, Any, str | None]]) -> tuple[list[int], torch.Tensor | None, list[str]]:
    ok = [(i, x) for i, x, err in items if err is None]
    errors = [err for _, _, err in items if err is not None]
    pixels = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], pixels, errors


@torch.no_grad()
def embed_images(
    model: Any,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    policy: ErrorPolicy | None = None,
    progress: bool = True,
    desc: str = "images",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed each image once -> (Tensor[N, D] float32 CPU, ok BoolTensor[N]); failed rows are zero."""
    policy = policy or ErrorPolicy()
    loader = DataLoader(
        ImageFiles(paths, model.preprocess),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=str(device).startswith("cuda"),
    )
    rows: dict[int, torch.Tensor] = {}
    for idx, pixels, errors in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        for err in errors:
            policy.fail(err)
        if pixels is None:
            continue
        out = model.encode_image(pixels.to(device, non_blocking=True), normalize=True).float().cpu()
        rows.update(zip(idx, out))
    ok = torch.tensor([i in rows for i in range(len(paths))], dtype=torch.bool)
    if not rows:
        return torch.zeros(len(paths), 0), ok
    dim = next(iter(rows.values())).shape[-1]
    emb = torch.zeros(len(paths), dim)
    for i, v in rows.items():
        emb[i] = v
    return emb, ok
