"""What every evaluator needs besides the model and its own config."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lift.errors import ErrorPolicy
from lift.evaluate.images import embed_images
from lift.evaluate.results import EvalResult
from lift.evaluate.text_cache import TextEmbeddingCache, TextStats, embed_texts


@dataclass
class EvalContext:
    device: str = "cpu"
    batch_size: int = 64
    workers: int = 0
    cache: TextEmbeddingCache | None = None  # None: no on-disk cache (texts still embedded once per run)
    policy: ErrorPolicy = field(default_factory=ErrorPolicy)
    progress: bool = True
    text_stats: TextStats = field(default_factory=TextStats)

    def texts(self, model: Any, texts: Sequence[str]) -> torch.Tensor:
        """Tensor[len(texts), D]: each distinct text embedded once, through the cache."""
        return embed_texts(
            model,
            texts,
            batch_size=self.batch_size,
            cache=self.cache,
            stats=self.text_stats,
            progress=self.progress,
        )

    def images(self, model: Any, paths: Sequence[str | Path], desc: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(Tensor[N, D], ok BoolTensor[N]): bad images go through the error policy."""
        return embed_images(
            model, paths, batch_size=self.batch_size, device=self.device, workers=self.workers,
            policy=self.policy, progress=self.progress, desc=desc,
        )  # fmt: skip


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj) if isinstance(obj, dict) else {"repr": repr(obj)}


def make_result(
    task: str,
    model: Any,
    config: Any,
    ctx: EvalContext,
    *,
    metrics: dict[str, float],
    counts: dict[str, dict[str, int]],
    started: float,
    notes: dict[str, Any] | None = None,
    items: dict[str, dict[str, int]] | None = None,
) -> EvalResult:
    """Wrap metrics with what makes them reproducible: configs, encoder identity, costs, skips; `items`:
    the per-item outcomes ({group: {item id: 0 or 1}}) behind them."""
    notes = dict(notes or {})
    notes["text_embedding"] = dataclasses.asdict(ctx.text_stats)
    if ctx.policy.skipped:
        notes["skipped"] = ctx.policy.skipped  # bad entries and images, each once (counts: per metric)
        notes["skipped_examples"] = list(ctx.policy.examples)
    return EvalResult(
        task=task,
        metrics=metrics,
        counts=counts,
        seconds=round(time.perf_counter() - started, 3),
        text_encoder=getattr(model, "text_identity", None),
        config=_as_dict(config),
        model=_as_dict(getattr(model, "config", None)),
        notes=notes,
        items=items or {},
    )
