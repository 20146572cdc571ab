"""Tiny models for the interoperability tests: reference-layout `.pt` files built with open_clip itself,
and our own checkpoint folders, all with seeded random weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from open_clip.transformer import VisionTransformer
from torch import nn

from lift.checkpoint import save_checkpoint
from lift.config import config_to_dict
from lift.models import ModelConfig, create_model

# reference checkpoints record no head count: tests name it (a model config beside, or a flag)
TINY_VISION = CLIPVisionCfg(layers=2, width=128, head_width=64, patch_size=16, image_size=32)
TINY_TEXT = CLIPTextCfg(context_length=20, width=128, heads=2, layers=2)
TINY_HEADS = {"vision_heads": 2, "text_heads": 2}  # lift.load's arguments for the towers above


def open_clip_cfg(
    vision: CLIPVisionCfg = TINY_VISION, text: CLIPTextCfg | None = TINY_TEXT, embed_dim: int = 48
) -> dict:
    """open_clip's model config JSON for these towers (what open_clip's trainer and local-dir: read)."""
    v = {k: getattr(vision, k) for k in ("layers", "width", "head_width", "patch_size", "image_size")}
    cfg: dict = {"embed_dim": embed_dim, "vision_cfg": v}
    if text is not None:
        cfg["text_cfg"] = {k: getattr(text, k) for k in ("context_length", "width", "heads", "layers")}
    return cfg


def save_reference(module: nn.Module, path: Path, model_cfg: dict | None = None) -> Path:
    """The reference implementation's layout: {"state_dict": ...} with DDP's `module.` prefix; with
    `model_cfg`, its open_clip model config beside it as NAME.json."""
    torch.save({"state_dict": {f"module.{k}": v for k, v in module.state_dict().items()}, "epoch": 32}, path)
    if model_cfg is not None:
        path.with_suffix(".json").write_text(json.dumps(model_cfg))
    return path


class ReferenceLift(nn.Module):
    """The reference LIFT model's layout: open_clip's ViT (avg-pooled, no proj) + mlp_projector.projector."""

    def __init__(self, vision: CLIPVisionCfg, hidden: int, embed_dim: int) -> None:
        super().__init__()
        self.visual = VisionTransformer(
            image_size=vision.image_size, patch_size=vision.patch_size, width=vision.width,
            layers=vision.layers, heads=vision.width // vision.head_width, mlp_ratio=vision.mlp_ratio,
            pool_type="avg", output_dim=vision.width, act_layer=nn.GELU,
        )  # fmt: skip
        self.visual.proj = None
        self.mlp_projector = nn.Module()
        self.mlp_projector.projector = nn.Sequential(
            nn.Linear(vision.width, hidden), nn.GELU(), nn.Linear(hidden, embed_dim)
        )
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp_projector.projector(self.visual(images)), dim=-1)


def reference_clip(
    seed: int = 0,
    context_length: int = 20,
    vision: CLIPVisionCfg = TINY_VISION,
    text: CLIPTextCfg = TINY_TEXT,
) -> open_clip.CLIP:
    torch.manual_seed(seed)
    text = dataclasses.replace(text, context_length=context_length)
    return open_clip.CLIP(embed_dim=48, vision_cfg=vision, text_cfg=text).eval()


def reference_lift(
    seed: int = 0, hidden: int = 96, embed_dim: int = 64, vision: CLIPVisionCfg = TINY_VISION
) -> ReferenceLift:
    torch.manual_seed(seed)
    return ReferenceLift(vision, hidden, embed_dim).eval()


def our_checkpoint(run: Path, config: ModelConfig, *, seed: int = 0, **meta: object) -> Path:
    """A run folder with one checkpoint of a freshly initialised `config` model."""
    torch.manual_seed(seed)
    save_checkpoint(run, 1, create_model(config).state_dict(), {"model": config_to_dict(config), **meta})
    return run


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """[n, 3, size, size] standard-normal 'preprocessed' pixels."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
