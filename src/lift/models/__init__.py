"""Models: LIFT (vision tower + MLP head) and the CLIP baseline, from named architectures.

cfg = ModelConfig(method="lift", model="vit-tiny", embed_dim=384)
model = create_model(cfg)
emb = model.encode_image(images)        # [B, 384], L2-normalised
"""

from __future__ import annotations

from collections.abc import Callable

from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from lift.models.clip_model import ClipModel
from lift.models.config import ModelConfig, TextTowerConfig, VisionTowerConfig
from lift.models.lift_model import LiftModel, build_head
from lift.models.towers import (
    MODEL_REGISTRY,
    TowerSpec,
    get_spec,
    list_models,
    register_model,
    text_tower,
    vision_tower,
)
from lift.registry import Registry

# the model class of each method (ModelConfig.method); a method with its own class registers it here
MODEL_CLASSES: Registry[Callable[[ModelConfig], nn.Module]] = Registry("model class")
MODEL_CLASSES.add("lift", LiftModel, help="vision tower + MLP head (+ text adapter) vs frozen text vectors")
MODEL_CLASSES.add("clip", ClipModel, help="open_clip CLIP: vision tower + text transformer")

__all__ = [
    "MODEL_CLASSES",
    "MODEL_REGISTRY",
    "ClipModel",
    "LiftModel",
    "ModelConfig",
    "TextTowerConfig",
    "TowerSpec",
    "VisionTowerConfig",
    "build_head",
    "create_model",
    "get_spec",
    "get_tokenizer",
    "list_models",
    "register_model",
    "text_tower",
    "vision_tower",
]


def create_model(config: ModelConfig) -> LiftModel | ClipModel:
    """Build a freshly initialised model (use torch.manual_seed first for reproducible weights)."""
    return MODEL_CLASSES.get(config.method)(config)


def get_tokenizer(config: ModelConfig) -> SimpleTokenizer:
    """open_clip's BPE tokenizer (bundled vocabulary, no download): tokenizer(list[str]) -> [B, L] int64."""
    return SimpleTokenizer(context_length=config.text_context_length)
