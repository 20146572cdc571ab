"""`--format open_clip`: a CLIP model as an open_clip `local-dir:` folder, loaded offline with

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:FOLDER")
    tokenizer = open_clip.get_tokenizer("local-dir:FOLDER")

or, with open_clip versions before `local-dir:`, by registering the bare model config it also holds:

    open_clip.add_model_config("FOLDER")      # registers FOLDER/NAME.json as model NAME (the folder's name)
    model, _, preprocess = open_clip.create_model_and_transforms("NAME", pretrained="FOLDER/open_clip_model.safetensors")

The folder holds `open_clip_config.json` ({"model_cfg", "preprocess_cfg"}), `NAME.json` (the
model_cfg alone) and `open_clip_model.safetensors`; our CLIP models already are open_clip `CLIP`s,
so the weights keep their keys.

LIFT models are refused, because open_clip cannot express them: its ViT ends in a bias-free linear
projection (`proj_type` exists only for text towers; its timm-tower MLP is fixed at 2 x embed_dim
hidden units and needs a timm trunk), and every open_clip model owns a trained text tower, while
LIFT's text side is a frozen external encoder. Use `--format hf-clip-vision` for LIFT's trunk, or
`lift.load` / `lift.interop.clip_benchmark` for the whole LIFT model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lift.atomic import write_json
from lift.checkpoint import save_weights
from lift.errors import LiftError
from lift.interop.export import ExportReport, register_format
from lift.models.config import ModelConfig
from lift.models.towers import text_tower, vision_tower

CONFIG = "open_clip_config.json"
WEIGHTS = "open_clip_model.safetensors"  # the first name open_clip looks for in a local-dir folder


def open_clip_model_cfg(config: ModelConfig) -> dict[str, Any]:
    """open_clip's `model_cfg` for a CLIP `config` (the keyword arguments of `open_clip.CLIP`)."""
    v, t = vision_tower(config), text_tower(config)
    cfg: dict[str, Any] = {
        "embed_dim": config.embed_dim,
        "quick_gelu": False,  # our towers use exact GELU, as open_clip's ViT-B-16 config
        "vision_cfg": {
            "layers": v.layers, "width": v.width, "head_width": v.width // v.heads, "mlp_ratio": v.mlp_ratio,
            "patch_size": v.patch_size, "image_size": v.image_size, "pool_type": v.pool_type,
        },
        "text_cfg": {
            "context_length": config.text_context_length, "vocab_size": t.vocab_size, "width": t.width,
            "heads": t.heads, "layers": t.layers, "mlp_ratio": t.mlp_ratio,
        },
    }  # fmt: skip
    return cfg


@register_format("open_clip")
def export_open_clip(model: Any, folder: Path, *, out: Path) -> ExportReport:
    """Write open_clip_config.json, NAME.json and open_clip_model.safetensors into `folder`."""
    config = model.model.config
    if config.method != "clip":
        raise LiftError(
            f"{model.checkpoint}: a LIFT model cannot be an open_clip model: open_clip's ViT has no MLP-head slot "
            "(only a bias-free linear projection) and its CLIP needs a trained text tower, while LIFT's text "
            "side is a frozen external encoder; export the trunk with --format hf-clip-vision instead"
        )
    model_cfg = open_clip_model_cfg(config)
    state = model.model.state_dict()
    if "logit_bias" in state:  # SigLIP-trained: open_clip then builds the bias parameter too
        model_cfg["init_logit_bias"] = float(state["logit_bias"])
    preprocess_cfg = {
        "size": vision_tower(config).image_size, "mean": list(model.model.image_mean),
        "std": list(model.model.image_std), "interpolation": "bicubic", "resize_mode": "shortest",
    }  # fmt: skip
    save_weights(state, folder / WEIGHTS)
    write_json(folder / CONFIG, {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
    name = out.name
    write_json(folder / f"{name}.json", model_cfg)  # what open_clip.add_model_config(folder) registers
    return ExportReport(
        format="open_clip",
        out=out,
        files=sorted(p.name for p in folder.iterdir()),
        exported="the whole CLIP model (both towers, projections and logit scale)",
        usage=f'open_clip.create_model_and_transforms("local-dir:{out}"); open_clip.get_tokenizer("local-dir:{out}")',
        notes=[
            f'or open_clip.add_model_config("{out}") and model "{name}" with pretrained="{out / WEIGHTS}"'
        ],
    )
