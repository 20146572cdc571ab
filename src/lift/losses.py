"""Contrastive losses (InfoNCE, SigLIP, cosine) and the cross-rank feature gather.

Every loss takes `logit_scale` as the LOG scale, i.e. the model's parameter as stored
(`model.logit_scale`), and applies exp() itself; `logit_bias` is used as is (SigLIP only).
With world_size > 1 features are gathered WITH gradient and each rank computes the loss of its
own rows against all columns (open_clip's local_loss=True, gather_with_grad=True): the mean of
the per-rank losses (what DDP's gradient averaging optimises) equals the single-process loss on
the global batch, and memory grows with the local batch only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lift.errors import LiftError


@dataclass(frozen=True)
class LossSpec:
    cls: Callable[..., nn.Module]
    init_logit_scale: float  # log scale
    init_logit_bias: float | None  # None: the model has no bias


LOSS_REGISTRY: dict[str, LossSpec] = {}


def register_loss(
    name: str, *, init_logit_scale: float = math.log(1 / 0.07), init_logit_bias: float | None = None
):
    def wrap(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        LOSS_REGISTRY[name] = LossSpec(cls, init_logit_scale, init_logit_bias)
        return cls

    return wrap


def get_loss_spec(name: str) -> LossSpec:
    if name not in LOSS_REGISTRY:
        raise LiftError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSS_REGISTRY))}")
    return LOSS_REGISTRY[name]


def create_loss(name: str, *, world_size: int = 1, rank: int = 0) -> nn.Module:
    """loss(image_features, text_features, logit_scale, logit_bias=None) -> scalar."""
    return get_loss_spec(name).cls(world_size=world_size, rank=rank)


def gather_with_grad(x: Tensor, world_size: int) -> Tensor:
    """[B, D] on each rank -> [world_size * B, D] in rank order; gradients flow back to every rank."""
    if world_size == 1:
        return x
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(x), dim=0)


class _DistributedLoss(nn.Module):
    def __init__(self, *, world_size: int = 1, rank: int = 0) -> None:
        super().__init__()
        self.world_size, self.rank = world_size, rank

    def forward(
        self,
        image_features: Tensor,  # [B, D] this rank's rows, L2-normalised
        text_features: Tensor,  # [B, D]
        logit_scale: Tensor,  # log scale, as stored in the model
        logit_bias: Tensor | None = None,
    ) -> Tensor:
        return self.loss(image_features, text_features, logit_scale, logit_bias)

    def loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor | None
    ):
        raise NotImplementedError


@register_loss("infonce")
class InfoNCELoss(_DistributedLoss):
    """Symmetric CLIP loss: mean of image->text and text->image cross-entropy."""

    def loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor | None
    ):
        scale = logit_scale.exp()
        all_text = gather_with_grad(text_features, self.world_size)  # [W*B, D]
        all_image = gather_with_grad(image_features, self.world_size)
        logits_per_image = scale * image_features @ all_text.T  # [B, W*B]: this rank's rows
        logits_per_text = scale * text_features @ all_image.T
        if logit_bias is not None:
            logits_per_image = logits_per_image + logit_bias
            logits_per_text = logits_per_text + logit_bias
        n = image_features.shape[0]
        labels = torch.arange(n, device=image_features.device) + n * self.rank
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


@register_loss("siglip", init_logit_scale=math.log(10.0), init_logit_bias=-10.0)
class SigLipLoss(_DistributedLoss):
    """Sigmoid loss over every (image, text) pair, summed and divided by the local batch (SigLIP)."""

    def loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor | None
    ):
        if logit_bias is None:
            raise LiftError(
                "the siglip loss needs the model's logit_bias (build the model with loss='siglip')"
            )
        all_text = gather_with_grad(text_features, self.world_size)  # only texts: rows stay local
        logits = logit_scale.exp() * image_features @ all_text.T + logit_bias  # [B, W*B]
        n = image_features.shape[0]
        labels = -torch.ones_like(logits)
        labels[:, n * self.rank : n * (self.rank + 1)] += 2 * torch.eye(
            n, device=logits.device, dtype=logits.dtype
        )
        return -F.logsigmoid(labels * logits).sum() / n


@register_loss("cosine")
class CosineLoss(_DistributedLoss):
    """1 - cos(image_i, text_i), averaged: no negatives, so no gather and no logit scale."""

    def loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor | None
    ):
        loss = (1 - F.cosine_similarity(image_features, text_features, dim=-1)).mean()
        # A zero term keeps the logit scale in the graph: DDP refuses parameters that get no gradient.
        return loss + 0.0 * logit_scale
