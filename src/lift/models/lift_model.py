"""LIFT: an open_clip ViT (average-pooled, no projection) + an MLP head onto the frozen text space.

The text side is a stored embedding from the frozen encoder, so this module has no text tower; an
optional trainable adapter (`lift.models.adapters`) maps the frozen vectors before the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lift.errors import LiftError
from lift.losses import get_loss_spec
from lift.models.adapters import build_adapter
from lift.models.base import ContrastiveModelMixin, initial_logit_scale
from lift.models.config import ModelConfig
from lift.models.towers import build_vision_trunk, vision_cfg


def build_head(in_dim: int, out_dim: int, *, depth: int, hidden: int | None = None) -> nn.Sequential:
    """depth 1: Linear; depth k: (Linear, GELU) x (k-1), then Linear. Hidden width defaults to out_dim."""
    if depth < 1:
        raise LiftError(f"head_depth must be >= 1, got {depth}")
    hidden = hidden or out_dim
    dims = [in_dim] + [hidden] * (depth - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i in range(depth):
        if i:
            layers.append(nn.GELU())
        layers.append(nn.Linear(dims[i], dims[i + 1]))
    return nn.Sequential(*layers)


class LiftModel(ContrastiveModelMixin, nn.Module):
    """`visual` (open_clip ViT, [B, width]) -> `head` (MLP, [B, embed_dim]) vs stored text vectors."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        vision = vision_cfg(config)
        loss = get_loss_spec(config.loss)
        self.visual = build_vision_trunk(vision)
        self.head = build_head(
            vision.width, config.embed_dim, depth=config.head_depth, hidden=config.head_hidden
        )
        self.logit_scale = nn.Parameter(
            torch.tensor(initial_logit_scale(loss.init_logit_scale, config.init_temperature))
        )
        self.logit_bias = (
            None if loss.init_logit_bias is None else nn.Parameter(torch.tensor(loss.init_logit_bias))
        )
        # the frozen vectors' adapter (an Identity without weights for the paper's recipe, so
        # checkpoints without an adapter keep their keys)
        self.text_adapter = build_adapter(config.text_adapter, config.embed_dim)
        t = config.text_transform
        if t is not None:  # float64, as it was fitted: the encoder's raw output -> the store's space
            if t["out_dim"] != config.embed_dim:
                raise LiftError(
                    f"text transform maps to {t['out_dim']}-d, but embed_dim is {config.embed_dim}"
                )
            self.register_buffer(
                "text_transform_matrix", torch.zeros(t["in_dim"], t["out_dim"], dtype=torch.float64)
            )
            self.register_buffer("text_transform_bias", torch.zeros(t["out_dim"], dtype=torch.float64))
        self.set_grad_checkpointing(config.grad_checkpointing)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)

    def encode_image(self, images: Tensor, normalize: bool = True) -> Tensor:
        x = self.head(self.visual(images))  # [B, 3, H, W] -> [B, width] -> [B, embed_dim]
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, vectors: Tensor, normalize: bool = True) -> Tensor:
        """The frozen encoder's vectors [..., D] (stored, or from `lift.load(...).encode_text`) through the
        text adapter. A LIFT model has no text tower: texts are embedded by the frozen encoder."""
        if not vectors.is_floating_point() or vectors.shape[-1] != self.config.embed_dim:
            raise LiftError(
                f"a LIFT model has no text tower: encode_text takes the frozen encoder's vectors [..., "
                f"{self.config.embed_dim}], got {vectors.dtype} {list(vectors.shape)} (lift.load(...).encode_text "
                "embeds texts)"
            )
        x = self.text_adapter(vectors.float())
        return F.normalize(x, dim=-1) if normalize else x

    @property
    def text_input_dim(self) -> int:
        """The dim of the frozen encoder's vectors this model reads (before its store transform)."""
        t = self.config.text_transform
        return t["in_dim"] if t is not None else self.config.embed_dim

    def transform_text(self, raw: Tensor) -> Tensor:
        """The frozen encoder's raw vectors [..., D_in] mapped as the store's were ([..., D]); the
        stored vectors used in training are already mapped."""
        if self.config.text_transform is None:
            return raw
        return (raw.double() @ self.text_transform_matrix + self.text_transform_bias).float()

    def forward(self, images: Tensor) -> Tensor:
        """L2-normalised image embeddings [B, embed_dim] (what the loss compares with stored texts)."""
        return self.encode_image(images, normalize=True)
