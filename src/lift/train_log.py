"""What a training run reports as it goes: a progress bar, RUN/metrics.jsonl (one JSON row per
logged step, flushed as written) and TensorBoard when it is installed; quiet on non-main ranks."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lift.run_dir import METRICS


def _tensorboard(run: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: TensorBoard is not a dependency
        return None
    return SummaryWriter(str(run / "tensorboard"))


class TrainLog:
    """Progress bar, RUN/metrics.jsonl and TensorBoard (when installed); quiet on non-main ranks."""

    def __init__(self, run: Path, *, total: int, start: int, method: str, is_main: bool) -> None:
        self.is_main = is_main
        self.bar = tqdm(total=total, initial=start, disable=not is_main, desc=f"train {method}", unit="step",
                        file=sys.stderr, dynamic_ncols=True)  # fmt: skip
        self.file = open(run / METRICS, "a") if is_main else None  # noqa: SIM115 (closed in close())
        self.tb = _tensorboard(run) if is_main else None
        self.tick, self.images, self.waited = time.perf_counter(), 0, 0.0

    def step(self, images: int, *, waited: float = 0.0) -> None:
        """One step done: `images` trained on, `waited` seconds spent waiting for its batch."""
        self.images += images
        self.waited += waited
        self.bar.update(1)

    def row(self, step: int, *, loss: float, lr: float, logit_scale: float, samples: int) -> None:
        """A metrics row; `data_wait` is the fraction of the time since the last row spent waiting for
        data: near 1, the loader is the bottleneck (more --workers, or --image-decode nvjpeg)."""
        now = time.perf_counter()
        elapsed = max(now - self.tick, 1e-9)
        row = {"step": step, "loss": loss, "lr": lr, "logit_scale": logit_scale, "img_per_s": self.images / elapsed,
               "data_wait": round(min(self.waited / elapsed, 1.0), 4), "samples": samples}  # fmt: skip
        self.tick, self.images, self.waited = now, 0, 0.0
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", scale=f"{logit_scale:.1f}",
                             img_s=f"{row['img_per_s']:.0f}", wait=f"{100 * row['data_wait']:.0f}%")  # fmt: skip
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        if self.tb:
            for name in ("loss", "lr", "logit_scale", "img_per_s", "data_wait"):
                self.tb.add_scalar(f"train/{name}", row[name], step)

    def eval_row(self, step: int, metrics: dict[str, float], seconds: float) -> None:
        """An evaluation's metrics as their own row: {"step", "eval": {"task/metric": value}, "eval_s"}."""
        if self.file:
            self.file.write(json.dumps({"step": step, "eval": metrics, "eval_s": round(seconds, 2)}) + "\n")
            self.file.flush()
        if self.tb:
            for name, value in metrics.items():
                self.tb.add_scalar(f"eval/{name}", value, step)
        shown = ", ".join(f"{k} {v:.1f}" for k, v in list(metrics.items())[:6])
        self.note(f"step {step} eval ({seconds:.0f} s): {shown}" + (" ..." if len(metrics) > 6 else ""))

    def note(self, message: str) -> None:
        if self.is_main:
            self.bar.write(message)

    def close(self) -> None:
        self.bar.close()
        for f in (self.file, self.tb):
            if f:
                f.close()
