"""`--format hf-clip-vision`: the ViT as a Hugging Face `CLIPVisionModel` folder, the form LLaVA-style
multimodal models load as their vision tower (`CLIPVisionModel.from_pretrained(folder)` +
`CLIPImageProcessor.from_pretrained(folder)`, then `hidden_states[-2]`).

open_clip -> Hugging Face names: conv1 -> embeddings.patch_embedding (no bias in either),
class_embedding, positional_embedding -> embeddings.position_embedding, ln_pre -> pre_layrnorm,
resblocks.N.{ln_1, attn.in_proj (split into q/k/v), attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj} ->
encoder.layers.N.{layer_norm1, self_attn.{q,k,v}_proj, self_attn.out_proj, layer_norm2, mlp.fc1, mlp.fc2},
ln_post -> post_layernorm. Both use exact GELU (our towers and open_clip's ViT-B-16 without
QuickGELU: `hidden_act="gelu"`) and LayerNorm eps 1e-5.

`hidden_states[0]` is the ln_pre output, `hidden_states[i]` the output of resblock i-1, and
`last_hidden_state` the last block's tokens before ln_post. What the folder cannot hold: LIFT's MLP
head and CLIP's `visual.proj`; and HF's `pooler_output` is post_layernorm(class token), which is this
model's pooled feature only for class-token (`tok`) models. The folder's README.md says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lift.checkpoint import save_weights
from lift.errors import LiftError
from lift.interop.export import ExportReport, register_format
from lift.models.config import ModelConfig, VisionTowerConfig
from lift.models.towers import vision_tower

WEIGHTS = "model.safetensors"
README = "README.md"
PREFIX = "vision_model."  # the on-disk layout of every CLIPVisionModel checkpoint (transformers 4 and 5)
LAYER_NORM_EPS = 1e-5  # open_clip's LayerNorm (torch default) and CLIPVisionConfig's default
_TOP = {
    "conv1.weight": "embeddings.patch_embedding.weight",
    "class_embedding": "embeddings.class_embedding",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_pre.weight": "pre_layrnorm.weight",
    "ln_pre.bias": "pre_layrnorm.bias",
    "ln_post.weight": "post_layernorm.weight",
    "ln_post.bias": "post_layernorm.bias",
}
_BLOCK = {
    "ln_1": "layer_norm1",
    "attn.out_proj": "self_attn.out_proj",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_NOT_EXPORTED = ("proj",)  # CLIP's visual projection: CLIPVisionModel has no slot for it


def hf_vision_config(tower: VisionTowerConfig, *, note: dict[str, Any]) -> Any:
    """The `CLIPVisionConfig` of an open_clip ViT; `note` is saved in config.json as `lift_export`."""
    from transformers import CLIPVisionConfig

    config = CLIPVisionConfig(
        hidden_size=tower.width,
        intermediate_size=int(tower.width * tower.mlp_ratio),
        num_hidden_layers=tower.layers,
        num_attention_heads=tower.heads,
        num_channels=3,
        image_size=tower.image_size,
        patch_size=tower.patch_size,
        hidden_act="gelu",
        layer_norm_eps=LAYER_NORM_EPS,
        lift_export=note,
    )
    config.architectures = ["CLIPVisionModel"]
    return config


def hf_state_dict(visual: dict[str, Tensor]) -> dict[str, Tensor]:
    """open_clip `VisionTransformer.state_dict()` -> `CLIPVisionModel` checkpoint keys (`vision_model.*`)."""
    out: dict[str, Tensor] = {}
    for key, value in visual.items():
        if key in _NOT_EXPORTED:
            continue
        if key in _TOP:
            out[_TOP[key]] = value
            continue
        parts = key.split(".")  # transformer.resblocks.N.<module...>.<param>
        if parts[:2] != ["transformer", "resblocks"]:
            raise LiftError(f"visual.{key}: no Hugging Face CLIPVisionModel counterpart")
        block, module, param = parts[2], ".".join(parts[3:-1]), parts[-1]
        layer = f"encoder.layers.{block}."
        if module == "attn" and param in ("in_proj_weight", "in_proj_bias"):
            kind = param.removeprefix("in_proj_")
            for name, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0)):  # [3W, ...] -> 3 x [W, ...]
                out[f"{layer}self_attn.{name}_proj.{kind}"] = chunk
        elif module in _BLOCK:
            out[f"{layer}{_BLOCK[module]}.{param}"] = value
        else:
            raise LiftError(f"visual.{key}: no Hugging Face CLIPVisionModel counterpart")
    return {PREFIX + k: v for k, v in out.items()}


def _check_fits(config: Any, weights: dict[str, Tensor]) -> None:
    """Every tensor `CLIPVisionModel(config)` has, with its shape, and nothing else (built on meta: free)."""
    from transformers import CLIPVisionModel

    with torch.device("meta"):
        expected = {PREFIX + k: tuple(v.shape) for k, v in CLIPVisionModel(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))[:3]
        raise LiftError(f"the exported weights do not fit CLIPVisionModel (first differences: {diff})")


# What the folder holds, per method, and where a model's pooled image feature is, per pooling.
EXPORTED = {
    "lift": "the ViT trunk without LIFT's MLP head (which maps into the frozen text encoder's space; "
    "use `lift.load` for LIFT embeddings)",
    "clip": "the ViT trunk without CLIP's image projection and text tower (use `lift export --format "
    "open_clip` for the whole CLIP model)",
}
POOLED = {
    "avg": "post_layernorm(last_hidden_state[:, 1:]).mean(1) (average pooling; `pooler_output`, the "
    "layer-normed class token, is not what this model was trained with)",
    "tok": "pooler_output (the layer-normed class token)",
}


def _readme(config: ModelConfig, tower: VisionTowerConfig, source: str) -> str:
    return "\n".join([
        "# Vision tower exported by `lift export --format hf-clip-vision`",
        "",
        f"Source: `{source}` ({config.method.upper()}, {tower.layers} layers x {tower.width}, "
        f"patch {tower.patch_size}, {tower.image_size} px).",
        "",
        f"Exported: {EXPORTED[config.method]}.",
        "",
        f"This model's pooled image feature is `{POOLED[tower.pool_type]}`.",
        "",
        "```python",
        "from transformers import CLIPImageProcessor, CLIPVisionModel",
        'model = CLIPVisionModel.from_pretrained("THIS_FOLDER").eval()',
        'processor = CLIPImageProcessor.from_pretrained("THIS_FOLDER")',
        "out = model(**processor(images=image, return_tensors='pt'), output_hidden_states=True)",
        "features = out.hidden_states[-2]  # LLaVA's choice: the penultimate block's tokens",
        "```",
        "",
    ])  # fmt: skip


@register_format("hf-clip-vision")
def export_hf_clip_vision(model: Any, folder: Path, *, out: Path) -> ExportReport:
    """Write config.json, model.safetensors, preprocessor_config.json and README.md into `folder`."""
    from transformers import CLIPImageProcessor

    config = model.model.config
    tower = vision_tower(config)
    source = str(model.checkpoint)
    note = {"source": source, "method": config.method, "pool_type": tower.pool_type,
            "head_included": False, "embed_dim": config.embed_dim}  # fmt: skip
    hf_config = hf_vision_config(tower, note=note)
    weights = hf_state_dict(model.model.visual.state_dict())
    _check_fits(hf_config, weights)
    save_weights(weights, folder / WEIGHTS, metadata={"format": "pt"})
    hf_config.save_pretrained(folder)
    size = tower.image_size
    CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, resample=3,  # PIL bicubic, as our eval transform
        do_center_crop=True, crop_size={"height": size, "width": size},
        image_mean=list(model.model.image_mean), image_std=list(model.model.image_std),
    ).save_pretrained(folder)  # fmt: skip
    (folder / README).write_text(_readme(config, tower, source))
    return ExportReport(
        format="hf-clip-vision",
        out=out,
        files=sorted(p.name for p in folder.iterdir()),
        exported=EXPORTED[config.method],
        usage=f'transformers.CLIPVisionModel.from_pretrained("{out}"); CLIPImageProcessor.from_pretrained("{out}")',
        notes=[f"this model's pooled image feature is {POOLED[tower.pool_type]}"],
    )
