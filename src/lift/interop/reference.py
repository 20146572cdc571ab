"""Checkpoints in the reference implementation's layout: a `.pt` file holding `{"state_dict": ...}`
(keys possibly prefixed `module.` by DDP), read with `torch.load(weights_only=True)`.

LIFT: open_clip's ViT (`visual.*`, average-pooled, no projection), the head
`mlp_projector.projector.{0,2}.*` (Linear, GELU, Linear; 768 -> 4096 -> 4096 into NV-Embed-V2's
space for the paper's models) and `logit_scale`. CLIP: open_clip's `CLIP` layout with its text tower.

The architecture is read off the tensor shapes. Head counts are not in any shape: they are taken as
`width // 64` (open_clip's head width for every ViT-B/L/H and text tower). Pooling is not in the
shapes either: LIFT checkpoints are average-pooled (the paper's choice), CLIP checkpoints use the
class token (open_clip's stock ViT-B-16); `vision_pool=` overrides both.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import Tensor

from lift.errors import LiftError, first_line
from lift.models.config import POOL_TYPES, ModelConfig, TextTowerConfig, VisionTowerConfig

HEAD_WIDTH = 64  # open_clip's convention: heads = width // 64
DEFAULT_POOL = {"lift": "avg", "clip": "tok"}
REFERENCE_HEAD = "mlp_projector.projector."
OUR_HEAD = "head."
_DERIVED = ("attn_mask",)  # buffers older open_clip versions saved; rebuilt from the config


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a `.pt` file: its `state_dict` entry (or the file itself), `module.` stripped."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling fails in many types; a pickle of objects is refused here
        raise LiftError(f"{path}: not a weights-only torch checkpoint: {first_line(e)}") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise LiftError(f"{path}: expected a dict of tensors, or a dict with a 'state_dict' of tensors")
    return {
        k.removeprefix("module."): v for k, v in state.items() if k.removeprefix("module.") not in _DERIVED
    }


def _indices(state: dict[str, Tensor], prefix: str) -> list[int]:
    """The sorted N of the keys `prefix` N `.` ..."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def _block_count(state: dict[str, Tensor], prefix: str, path: Path) -> int:
    found = _indices(state, prefix)
    if not found or found != list(range(len(found))):
        raise LiftError(f"{path}: {prefix}N: block indices {found} are not 0..N-1")
    return len(found)


def _heads(width: int, what: str) -> int:
    if width % HEAD_WIDTH:
        raise LiftError(
            f"{what}: width {width} is not a multiple of {HEAD_WIDTH}; cannot infer the head count"
        )
    return width // HEAD_WIDTH


def _need(state: dict[str, Tensor], key: str, path: Path) -> Tensor:
    if key not in state:
        raise LiftError(f"{path}: missing {key!r}; not an open_clip ViT this reader understands")
    return state[key]


def infer_vision_tower(state: dict[str, Tensor], path: Path, *, pool_type: str) -> VisionTowerConfig:
    """The `visual.*` ViT's dimensions from its shapes (class token, ln_pre, no attentional pooler)."""
    unsupported = sorted(
        {k.split(".")[1] for k in state if k.startswith(("visual.attn_pool", "visual.trunk."))}
    )
    if unsupported:
        raise LiftError(f"{path}: visual.{unsupported[0]}.* is not supported (only open_clip's plain ViT)")
    conv = _need(state, "visual.conv1.weight", path)  # [W, 3, P, P]
    _need(state, "visual.class_embedding", path)
    _need(state, "visual.ln_pre.weight", path)
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    grid = math.isqrt(int(_need(state, "visual.positional_embedding", path).shape[0]) - 1)
    if grid * grid + 1 != state["visual.positional_embedding"].shape[0]:
        raise LiftError(f"{path}: visual.positional_embedding is not 1 + a square number of patches")
    fc = _need(state, "visual.transformer.resblocks.0.mlp.c_fc.weight", path)  # [W * ratio, W]
    return VisionTowerConfig(
        layers=_block_count(state, "visual.transformer.resblocks.", path),
        width=width,
        heads=_heads(width, f"{path}: visual"),
        patch_size=patch,
        image_size=grid * patch,
        mlp_ratio=fc.shape[0] / width,
        pool_type=pool_type,
    )


def infer_text_tower(state: dict[str, Tensor], path: Path) -> tuple[TextTowerConfig, int]:
    """(the CLIP text tower's dimensions, its context length: the positional embedding's rows)."""
    vocab, width = _need(state, "token_embedding.weight", path).shape
    fc = _need(state, "transformer.resblocks.0.mlp.c_fc.weight", path)
    tower = TextTowerConfig(
        layers=_block_count(state, "transformer.resblocks.", path),
        width=int(width),
        heads=_heads(int(width), f"{path}: text"),
        vocab_size=int(vocab),
        mlp_ratio=fc.shape[0] / width,
    )
    return tower, int(_need(state, "positional_embedding", path).shape[0])


def infer_head(state: dict[str, Tensor], path: Path) -> tuple[int, int | None, int]:
    """(depth, hidden width or None, output dim) of `mlp_projector.projector` (Linear at 0, 2, 4, ...)."""
    # GELUs hold no weights, so the Linear layers' indices step by 2
    indices = _indices(state, REFERENCE_HEAD)
    if indices != list(range(0, 2 * len(indices), 2)):
        raise LiftError(f"{path}: {REFERENCE_HEAD}N: expected Linear layers at 0, 2, 4 ..., found {indices}")
    outs = [int(_need(state, f"{REFERENCE_HEAD}{i}.weight", path).shape[0]) for i in indices]
    if len(set(outs[:-1])) > 1:
        raise LiftError(f"{path}: the head's hidden layers differ in width ({outs[:-1]}); not supported")
    return len(indices), (outs[0] if len(outs) > 1 else None), outs[-1]


def _model_label(v: VisionTowerConfig) -> str:
    return f"vit-{v.layers}x{v.width}-p{v.patch_size}-{v.image_size}px"


def convert_reference_state(
    state: dict[str, Tensor], *, where: str | Path, vision_pool: str | None = None
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """(the model's config, its weights in our layout) for a reference-layout state dict (`module.` stripped)."""
    path = Path(where)
    if any(k.startswith(REFERENCE_HEAD) for k in state):
        method = "lift"
    elif "token_embedding.weight" in state and "text_projection" in state:
        method = "clip"
    else:
        raise LiftError(
            f"{path}: not a LIFT or CLIP checkpoint in the reference layout (no {REFERENCE_HEAD}* "
            f"and no token_embedding.weight/text_projection; keys start {sorted(state)[:3]})"
        )
    pool = vision_pool or DEFAULT_POOL[method]
    if pool not in POOL_TYPES:
        raise LiftError(f"vision_pool must be one of {POOL_TYPES}, got {pool!r}")
    vision = infer_vision_tower(state, path, pool_type=pool)
    loss = "siglip" if "logit_bias" in state else "infonce"  # decides only the init; the file's value wins
    if method == "lift":
        depth, hidden, embed_dim = infer_head(state, path)
        config = ModelConfig(
            method="lift", model=_model_label(vision), embed_dim=embed_dim, head_depth=depth,
            head_hidden=hidden, loss=loss, vision=vision,
        )  # fmt: skip
        weights = {(OUR_HEAD + k[len(REFERENCE_HEAD) :] if k.startswith(REFERENCE_HEAD) else k): v
                   for k, v in state.items()}  # fmt: skip
        return config, weights
    text, context_length = infer_text_tower(state, path)
    config = ModelConfig(
        method="clip", model=_model_label(vision), embed_dim=int(state["text_projection"].shape[1]), loss=loss,
        text_context_length=context_length, vision=vision, text=text,
    )  # fmt: skip
    return config, state


def read_reference_checkpoint(
    path: str | Path, *, vision_pool: str | None = None
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """(the model's config, its weights in our layout) for a reference-layout `.pt` file."""
    return convert_reference_state(read_state_dict(Path(path)), where=path, vision_pool=vision_pool)
