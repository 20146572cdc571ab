"""Batch planning for fast inference: embed each distinct text once, and batch texts of similar
token length together so padding (wasted compute, quadratic in attention) stays small."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dedup(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(unique texts in first-seen order, inverse) with `unique[inverse[i]] == texts[i]`."""
    first: dict[str, int] = {}
    inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
    return list(first), inverse


def plan_batches(
    lengths: Sequence[int], batch_size: int, window: int, slack: float = 0.1
) -> list[np.ndarray]:
    """Index batches: within each window of `window` consecutive items, longest first.

    A batch ends at `batch_size` items, or early (once it has batch_size // 8) when the next item is
    more than `slack` shorter than the batch's longest: in the sparse long tail of caption lengths a
    full batch would be mostly padding. Sorting only within a window bounds memory on huge inputs;
    longest first makes an out-of-memory batch fail at once rather than at the end.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.asarray(lengths, dtype=np.int64)
    window, min_rows = max(window, batch_size), max(1, batch_size // 8)
    batches = []
    for start in range(0, len(lengths), window):
        order = start + np.argsort(-lengths[start : start + window], kind="stable")
        first = 0
        for j in range(1, len(order) + 1):
            size = j - first
            if (
                j == len(order)
                or size == batch_size
                or (size >= min_rows and lengths[order[j]] < (1 - slack) * lengths[order[first]])
            ):
                batches.append(order[first:j])
                first = j
    return batches
