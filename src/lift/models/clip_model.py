"""The CLIP baseline: open_clip's `CLIP` with LIFT's vision tower and a text transformer from scratch.

Fairness: the vision trunk is the same open_clip ViT, average-pooled, built from the same config.
The image side then uses open_clip's own linear projection (`visual.proj`, width -> embed_dim, no
bias), i.e. the standard CLIP baseline of the paper, so checkpoints load into open_clip as they are;
LIFT instead has its MLP head (the head is <1% of the tower's FLOPs, see docs/flops.md).
"""

from __future__ import annotations

import open_clip
import torch.nn.functional as F
from torch import Tensor

from lift.losses import get_loss_spec
from lift.models.base import ContrastiveModelMixin, initial_logit_scale
from lift.models.config import ModelConfig
from lift.models.towers import text_cfg, vision_cfg


class ClipModel(ContrastiveModelMixin, open_clip.CLIP):
    """open_clip.CLIP (same state-dict layout), with normalised outputs by default and our config."""

    def __init__(self, config: ModelConfig) -> None:
        loss = get_loss_spec(config.loss)
        super().__init__(
            embed_dim=config.embed_dim,
            vision_cfg=vision_cfg(config),
            text_cfg=text_cfg(config),
            init_logit_scale=initial_logit_scale(loss.init_logit_scale, config.init_temperature),
            init_logit_bias=loss.init_logit_bias,
        )
        self.config = config
        self.set_grad_checkpointing(config.grad_checkpointing)

    def encode_image(self, images: Tensor, normalize: bool = True) -> Tensor:
        x = self.visual(images)  # [B, 3, H, W] -> [B, embed_dim]
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: Tensor, normalize: bool = True) -> Tensor:
        """tokens: [B, text_context_length] from `get_tokenizer(config)`."""
        return super().encode_text(tokens, normalize=normalize)
