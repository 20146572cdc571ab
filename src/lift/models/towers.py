"""Named architectures (the `--model` registry): the vision tower (shared by LIFT and CLIP) and CLIP's
text tower.

Towers are open_clip's own `VisionTransformer` / text transformer built from `CLIPVisionCfg` /
`CLIPTextCfg`, so weights keep open_clip's layout (`visual.*`) and export to open_clip directly.
Every vision tower is average-pooled over patch tokens (the paper's choice, not the class token).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from open_clip.transformer import VisionTransformer
from torch import nn

from lift.models.config import ModelConfig, TextTowerConfig, VisionTowerConfig
from lift.registry import Registry


@dataclass(frozen=True)
class TowerSpec:
    """A named architecture: the vision tower, and the text tower its CLIP baseline trains."""

    vision: CLIPVisionCfg
    text: CLIPTextCfg
    description: str = ""  # `get_spec` fills it from the registered help


# name -> a function building its TowerSpec; `--model` chooses one.
TOWERS: Registry[Callable[[], TowerSpec]] = Registry("model", flag="--model")
MODEL_REGISTRY = TOWERS  # the name lift.models exported before the shared Registry


def register_model(
    name: str, *, help: str = ""
) -> Callable[[Callable[[], TowerSpec]], Callable[[], TowerSpec]]:
    """Decorator, timm style: `@register_model("vit-l14", help="one line for --help")` on
    `fn() -> TowerSpec`."""
    return TOWERS.register(name, help=help)


def list_models() -> list[str]:
    return TOWERS.names()


def get_spec(name: str) -> TowerSpec:
    """The architecture `name`; an unknown name is a one-line LiftError listing the known ones."""
    entry = TOWERS.entry(name)
    spec = entry.obj()
    return spec if spec.description else replace(spec, description=entry.help)


def _spec(
    layers: int,
    width: int,
    heads: int,
    patch: int,
    image_size: int,
    text: tuple[int, int, int],
) -> TowerSpec:
    """A ViT (`heads` of width // heads, average-pooled) and a text tower (layers, width, heads)."""
    vision = CLIPVisionCfg(
        layers=layers,
        width=width,
        head_width=width // heads,
        patch_size=patch,
        image_size=image_size,
        pool_type="avg",
    )
    text_layers, text_width, text_heads = text
    return TowerSpec(vision, CLIPTextCfg(layers=text_layers, width=text_width, heads=text_heads))


@register_model("vit-tiny", help="CPU default: 4-layer 128-wide ViT, patch 8 at 64 px; text 4 x 128")
def _vit_tiny() -> TowerSpec:
    return _spec(4, 128, 4, 8, 64, (4, 128, 4))


@register_model("vit-small", help="6-layer 256-wide ViT, patch 8 at 64 px; text 6 x 256")
def _vit_small() -> TowerSpec:
    return _spec(6, 256, 4, 8, 64, (6, 256, 4))


@register_model("vit-b16", help="the paper's ViT-B/16 at 224 px; CLIP text 12 x 512")
def _vit_b16() -> TowerSpec:
    # The paper's ViT-B/16 (12 x 768, 12 heads) at 224 px; its CLIP text tower is 12 x 512, 8 heads.
    return _spec(12, 768, 12, 16, 224, (12, 512, 8))


def vision_tower(config: ModelConfig) -> VisionTowerConfig:
    """`config`'s vision tower as explicit dimensions: its own `vision`, else `model`'s registered one."""
    if config.vision is not None:
        return config.vision
    v = get_spec(config.model).vision
    return VisionTowerConfig(
        layers=v.layers, width=v.width, heads=v.width // v.head_width, patch_size=v.patch_size,
        image_size=v.image_size, mlp_ratio=v.mlp_ratio, pool_type=v.pool_type,
    )  # fmt: skip


def text_tower(config: ModelConfig) -> TextTowerConfig:
    """`config`'s CLIP text tower as explicit dimensions (context length: `config.text_context_length`)."""
    if config.text is not None:
        return config.text
    t = get_spec(config.model).text
    return TextTowerConfig(
        layers=t.layers, width=t.width, heads=t.heads, vocab_size=t.vocab_size, mlp_ratio=t.mlp_ratio
    )


def vision_cfg(config: ModelConfig) -> CLIPVisionCfg:
    """open_clip's config for `config`'s vision tower."""
    v = vision_tower(config)
    return CLIPVisionCfg(
        layers=v.layers, width=v.width, head_width=v.width // v.heads, mlp_ratio=v.mlp_ratio,
        patch_size=v.patch_size, image_size=v.image_size, pool_type=v.pool_type,
    )  # fmt: skip


def text_cfg(config: ModelConfig) -> CLIPTextCfg:
    """open_clip's config for `config`'s text tower, at `config.text_context_length`."""
    t = text_tower(config)
    return CLIPTextCfg(
        context_length=config.text_context_length, vocab_size=t.vocab_size, width=t.width, heads=t.heads,
        layers=t.layers, mlp_ratio=t.mlp_ratio,
    )  # fmt: skip


def build_vision_trunk(vision: CLIPVisionCfg) -> VisionTransformer:
    """open_clip's ViT with average pooling and NO projection: outputs [B, width] (LIFT's head projects)."""
    visual = VisionTransformer(
        image_size=vision.image_size,
        patch_size=vision.patch_size,
        width=vision.width,
        layers=vision.layers,
        heads=vision.width // vision.head_width,
        mlp_ratio=vision.mlp_ratio,
        pool_type=vision.pool_type,
        output_dim=vision.width,
        act_layer=nn.GELU,
    )
    # forward() skips a None projection; the MLP head replaces it.
    visual.proj = None
    return visual
