"""What LIFT and CLIP models share: image preprocessing constants, logit-scale clamp, weight-decay split."""

from __future__ import annotations

import math

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from lift.errors import LiftError

MAX_LOGIT_SCALE = math.log(100.0)  # the paper's (and CLIP's) clamp on the log scale
MIN_TEMPERATURE = 1 / math.exp(MAX_LOGIT_SCALE)  # 0.01: a lower one would be clamped at once
# 2-d parameters that are still not decayed (open_clip's timm-style no_weight_decay lists).
NO_DECAY_SUFFIXES = ("positional_embedding", "class_embedding")


def initial_logit_scale(default: float, temperature: float | None) -> float:
    """The log scale a model starts from: ln(1 / temperature), or the loss's default when None."""
    if temperature is None:
        return default
    if not MIN_TEMPERATURE <= temperature <= 1:
        # Outside [0.01, 1] the clamp after the first step would silently move it.
        raise LiftError(f"init_temperature must be in [0.01, 1] (logit scale 1..100), got {temperature}")
    return math.log(1 / temperature)


class ContrastiveModelMixin:
    """Mixed into nn.Modules that have `visual` (an open_clip ViT), `logit_scale` and `logit_bias`."""

    image_mean: tuple[float, ...] = tuple(OPENAI_DATASET_MEAN)
    image_std: tuple[float, ...] = tuple(OPENAI_DATASET_STD)

    @property
    def image_size(self) -> int:
        return int(self.visual.image_size[0])

    def clamp_logit_scale(self) -> None:
        """Clamp the log scale to [0, ln(100)] in place; call after each optimizer step."""
        with torch.no_grad():
            self.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    def no_weight_decay_names(self) -> set[str]:
        """Parameters AdamW must not decay: biases, norm gains, logit scale/bias (all < 2-d) and embeddings."""
        return {name for name, p in self.named_parameters() if p.ndim < 2 or name.endswith(NO_DECAY_SUFFIXES)}
