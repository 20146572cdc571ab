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
from lift.registry import Registry


@dataclass(frozen=True)
class LossSpec:
    cls: Callable[..., nn.Module]
    init_logit_scale: float  # log scale
    init_logit_bias: float | None  # None: the model has no bias


LOSSES: Registry[LossSpec] = Registry("loss", flag="--loss")


def register_loss(
    name: str,
    *,
    help: str,
    init_logit_scale: float = math.log(1 / 0.07),
    init_logit_bias: float | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a loss class with the logit scale / bias a model built for it starts from."""

    def wrap(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        LOSSES.add(name, LossSpec(cls, init_logit_scale, init_logit_bias), help=help)
        return cls

    return wrap


def get_loss_spec(name: str) -> LossSpec:
    return LOSSES.get(name)


def create_loss(name: str, *, world_size: int = 1, rank: int = 0) -> nn.Module:
    """loss(image_features [B, D], text_features [B, D] or [B, V, D], logit_scale, logit_bias=None) -> scalar."""
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
        text_features: Tensor,  # [B, D], or [B, V, D]: V views (captions) per image
        logit_scale: Tensor,  # log scale, as stored in the model
        logit_bias: Tensor | None = None,
    ) -> Tensor:
        return self.loss(image_features, text_features, logit_scale, logit_bias)

    def loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor | None
    ):
        raise NotImplementedError


@register_loss("infonce", help="symmetric CLIP loss; with several views per image, multi-positive")
class InfoNCELoss(_DistributedLoss):
    """Symmetric CLIP loss: mean of image->text and text->image cross-entropy.

    With V views per image (text features [B, V, D]) every view of an image is a positive: an image's
    loss is the mean over its views of -log softmax over all W*B*V texts, and each text's loss is the
    cross-entropy over the W*B images with its own image as the target. With V = 1 this is InfoNCE.
    """

    def loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor | None
    ):
        scale = logit_scale.exp()
        n, v = image_features.shape[0], _views(text_features)
        texts = text_features.reshape(n * v, -1)  # [B*V, D], image i's views at rows i*V .. i*V+V-1
        all_text = gather_with_grad(texts, self.world_size)  # [W*B*V, D]
        all_image = gather_with_grad(image_features, self.world_size)  # [W*B, D]
        logits_per_image = scale * image_features @ all_text.T  # [B, W*B*V]: this rank's rows
        logits_per_text = scale * texts @ all_image.T  # [B*V, W*B]
        if logit_bias is not None:
            logits_per_image = logits_per_image + logit_bias
            logits_per_text = logits_per_text + logit_bias
        images = torch.arange(n, device=image_features.device) + n * self.rank  # global image indices
        positives = images[:, None] * v + torch.arange(v, device=images.device)  # [B, V] columns
        i2t = -logits_per_image.log_softmax(dim=-1).gather(1, positives).mean()
        t2i = F.cross_entropy(logits_per_text, images.repeat_interleave(v))
        return (i2t + t2i) / 2


def _views(text_features: Tensor) -> int:
    """V of [B, V, D] text features; 1 for [B, D]."""
    return text_features.shape[1] if text_features.ndim == 3 else 1


@register_loss("siglip", help="sigmoid loss over every (image, text) pair (SigLIP)",
               init_logit_scale=math.log(10.0), init_logit_bias=-10.0)  # fmt: skip
class SigLipLoss(_DistributedLoss):
    """Sigmoid loss over every (image, text) pair, summed and divided by the local batch (SigLIP); with
    V views per image each of its views is a positive pair."""

    def loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor | None
    ):
        if logit_bias is None:
            raise LiftError(
                "the siglip loss needs the model's logit_bias (build the model with loss='siglip')"
            )
        n, v = image_features.shape[0], _views(text_features)
        all_text = gather_with_grad(text_features.reshape(n * v, -1), self.world_size)  # texts only
        logits = logit_scale.exp() * image_features @ all_text.T + logit_bias  # [B, W*B*V]
        labels = -torch.ones_like(logits)
        own = torch.eye(n, device=logits.device, dtype=logits.dtype).repeat_interleave(v, dim=1)  # [B, B*V]
        labels[:, n * v * self.rank : n * v * (self.rank + 1)] += 2 * own
        return -F.logsigmoid(labels * logits).sum() / n


@register_loss("cosine", help="1 - cos(image, its text): no negatives (the paper's simpler option)")
class CosineLoss(_DistributedLoss):
    """1 - cos(image_i, text_i), averaged (over views too): no negatives, so no gather and no logit scale."""

    def loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor | None
    ):
        images = image_features[:, None] if text_features.ndim == 3 else image_features
        loss = (1 - F.cosine_similarity(images, text_features, dim=-1)).mean()
        # A zero term keeps the logit scale in the graph: DDP refuses parameters that get no gradient.
        return loss + 0.0 * logit_scale
