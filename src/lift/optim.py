"""AdamW with the paper's weight-decay split, and the warm-up + cosine learning-rate schedule.

The schedule is a pure function of the step, so resuming needs only the step number.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def create_optimizer(
    model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float], eps: float
) -> torch.optim.AdamW:
    """AdamW; no decay on biases, norms, the logit scale/bias (model.no_weight_decay_names())."""
    skip = set(model.no_weight_decay_names()) if hasattr(model, "no_weight_decay_names") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # 1-d tensors are biases, norm gains and scalars: never decayed (open_clip's rule too)
        (no_decay if name in skip or p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def default_warmup(total_steps: int) -> int:
    """The paper's 500 steps, or a tenth of a short run."""
    return min(500, max(1, total_steps // 10))


def lr_at(step: int, *, base_lr: float, warmup: int, total_steps: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total_steps`."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
