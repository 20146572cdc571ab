"""Evaluation during training (`lift train --eval-suite SUITE.yaml --eval-every N`): the suite runs on
rank 0 (the others wait) every N steps and at the end, on the model being trained, through the same
code as `lift eval suite` on a saved checkpoint, and its metrics go into RUN/metrics.jsonl beside the
loss as `{"step": N, "eval": {"task/metric": value}}` rows.

Resume-safe: a step's evaluation is logged before that step's checkpoint is written, so a checkpoint
at step N always has its evaluation row, and rows after the checkpoint a run resumes from are
dropped with the other metrics (and evaluated again): no row repeated, none lost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lift.distributed import DistInfo, barrier


class TrainEval:
    """Runs a checked suite on the training model at the steps it is due."""

    def __init__(self, entries: list[Any], every: int | None, *, run: Path, meta: dict[str, Any], info: DistInfo,
                 device: torch.device) -> None:  # fmt: skip
        self.entries = entries  # `lift.evaluate.suite.load_suite`'s: checked before any training
        self.every, self.run, self.meta, self.info, self.device = every, run, meta, info, device
        self._loaded: Any = None

    def due(self, step: int, total_steps: int) -> bool:
        return step == total_steps or (self.every is not None and step % self.every == 0)

    def _model(self, model: nn.Module, step: int) -> Any:
        """The training model behind `lift.load`'s interface (built once: the frozen encoder opens once)."""
        if self._loaded is None:
            from lift.api import LoadedModel

            self._loaded = LoadedModel(model, self.meta, self.run)
        self._loaded.checkpoint = self.run / f"step {step} (in training)"
        return self._loaded

    def __call__(self, model: nn.Module, step: int, log: Any) -> None:
        if self.info.is_main:
            from lift.evaluate import EvalContext
            from lift.evaluate.suite import run_suite
            from lift.evaluate.text_cache import TextEmbeddingCache

            started = time.perf_counter()
            was_training = model.training
            model.eval()
            cache = TextEmbeddingCache(self.run / "eval-text-cache.sqlite")
            try:
                ctx = EvalContext(device=str(self.device), cache=cache, progress=False)
                with torch.no_grad():
                    result = run_suite(self._model(model, step), self.entries, ctx)
            finally:
                cache.close()
                model.train(was_training)
            log.eval_row(step, result.flat_metrics(), time.perf_counter() - started)
        barrier()
