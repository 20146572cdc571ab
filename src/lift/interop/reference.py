"""Checkpoints in the reference implementation's layout: a `.pt` file holding `{"state_dict": ...}`
(keys possibly prefixed `module.` by DDP), read with `torch.load(weights_only=True)`. open_clip's
trainer saves its checkpoints (`RUN/checkpoints/epoch_N.pt`) in the same layout.

LIFT: open_clip's ViT (`visual.*`, average-pooled, no projection), the head
`mlp_projector.projector.{0,2}.*` (Linear, GELU, Linear; 768 -> 4096 -> 4096 into NV-Embed-V2's
space for the paper's models) and `logit_scale`. CLIP: open_clip's `CLIP` layout with its text tower.

Layers, widths, patch and image size are read off the tensor shapes. Head counts and pooling are in
no shape, so lift never guesses them. Per tower, the first of these decides:

  1. a model config in open_clip's JSON format (`{"embed_dim", "vision_cfg": {"width", "head_width",
     "pool_type", ...}, "text_cfg": {"width", "heads", ...}}`, bare or under "model_cfg"): the file
     given as `model_config=` / `--model-config FILE`, else the first found of
       - `open_clip_config.json` beside the `.pt` (open_clip's local-dir / Hub layout),
       - `NAME.json` beside `NAME.pt`,
       - for open_clip's trainer's `RUN/checkpoints/epoch_N.pt`: `RUN/params.txt`, whose `model` line
         names the config: `RUN/MODEL.json`, else open_clip's own config of that name (offline).
     Its shapes must match the weights, and it may not ask for what lift's towers do not build
     (quick GELU, layer scale, attentional pooling ...): both are refused, naming the key.
  2. `vision_heads=` / `text_heads=` (`--vision-heads N` / `--text-heads N`), `vision_pool=`
     (`--vision-pool`). A flag that contradicts the model config is refused.
  3. only for the paper's released ViT-B/16 checkpoints: open_clip's documented ViT-B-16 config, i.e. a
     768-wide vision tower has 12 heads (head width 64) and a 512-wide text tower 8 heads (every open_clip
     model config with these widths agrees). Pooling: average for LIFT (the paper's choice), the class
     token for CLIP (open_clip's ViT-B-16).

Any other width without a config or flag is refused in one line naming `--vision-heads` /
`--text-heads` and `--model-config`: a 128-wide tower loads as 4 heads of 32 or 2 heads of 64 alike,
and the wrong one computes something else without a word.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from lift.checkpoint import load_tensors
from lift.errors import LiftError, first_line
from lift.models.config import POOL_TYPES, ModelConfig, TextTowerConfig, VisionTowerConfig

DEFAULT_POOL = {"lift": "avg", "clip": "tok"}
# open_clip's documented ViT-B-16 config (the paper's towers): width -> heads, assumed without a config
KNOWN_HEADS = {"vision": {768: 12}, "text": {512: 8}}
HEADS_FLAG = {"vision": "--vision-heads", "text": "--text-heads"}
REFERENCE_HEAD = "mlp_projector.projector."
OUR_HEAD = "head."
_DERIVED = ("attn_mask",)  # buffers older open_clip versions saved; rebuilt from the config
OPEN_CLIP_CONFIG = "open_clip_config.json"
TRAINER_PARAMS = "params.txt"

# open_clip config fields read or checked against the shapes; the rest must keep open_clip's default
_VISION_READ = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "pool_type"}
_TEXT_READ = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
# fields that change nothing at inference here (training-only, or used only by an option refused above)
_HARMLESS = {"patch_dropout", "output_tokens", "pad_id", "eos_id", "attn_pooler_queries", "attn_pooler_heads",
             "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop",
             "timm_drop_path", "hf_model_pretrained", "hf_proj_type", "hf_pooler_type"}  # fmt: skip


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a `.pt` file: its `state_dict` entry (or the file itself), `module.` stripped."""
    obj = load_tensors(path)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise LiftError(f"{path}: expected a dict of tensors, or a dict with a 'state_dict' of tensors")
    return {
        k.removeprefix("module."): v for k, v in state.items() if k.removeprefix("module.") not in _DERIVED
    }


# ---------------------------------------------------------------- the model config beside a checkpoint


@dataclass(frozen=True)
class ModelConfigFile:
    """An open_clip model config (`model_cfg`) and where it came from (for messages)."""

    cfg: dict[str, Any]
    where: str


def _read_json_config(path: Path, where: str | None = None) -> ModelConfigFile:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LiftError(f"{path}: model config not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise LiftError(f"{path}: not a readable JSON model config: {first_line(e)}") from None
    return _as_model_cfg(data, where or str(path))


def _as_model_cfg(data: Any, where: str) -> ModelConfigFile:
    cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("vision_cfg"), dict):
        raise LiftError(
            f'{where}: not an open_clip model config (expected {{"embed_dim", "vision_cfg": {{...}}, '
            '"text_cfg": {...}}, or that under "model_cfg")'
        )
    if "text_cfg" in cfg and not isinstance(cfg["text_cfg"], dict):
        raise LiftError(f"{where}: text_cfg must be an object")
    return ModelConfigFile(cfg, where)


def _trainer_params(path: Path) -> dict[str, str]:
    """open_clip's trainer's `params.txt`: one `name: value` per line."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise LiftError(f"{path}: cannot read: {first_line(e)}") from None
    return {k.strip(): v.strip() for k, sep, v in (line.partition(":") for line in lines) if sep}


def _from_trainer_run(pt: Path, params_file: Path) -> ModelConfigFile:
    """The model config open_clip's trainer used for `RUN/checkpoints/*.pt`, by `RUN/params.txt`'s `model`."""
    params = _trainer_params(params_file)
    name = params.get("model")
    if not name:
        raise LiftError(f"{params_file}: has no 'model' line; pass --model-config FILE")
    where = f"{params_file} (model {name})"
    if (params_file.parent / f"{name}.json").is_file():
        found = _read_json_config(params_file.parent / f"{name}.json", f"{params_file.parent / name}.json")
    elif name.startswith("local-dir:"):
        found = _read_json_config(Path(name.removeprefix("local-dir:")) / OPEN_CLIP_CONFIG, where)
    elif name.startswith("hf-hub:"):
        raise LiftError(
            f"{where}: a Hugging Face Hub config; lift does not download: pass --model-config FILE "
            f"(the repository's {OPEN_CLIP_CONFIG})"
        )
    else:
        import open_clip

        cfg = open_clip.get_model_config(name)
        if cfg is None:
            raise LiftError(
                f"{where}: no open_clip model config of that name here (nor {params_file.parent / name}.json); "
                "pass --model-config FILE"
            )
        found = _as_model_cfg(cfg, where)
    cfg = json.loads(json.dumps(found.cfg))  # a copy: the trainer's overrides go in
    if params.get("force_quick_gelu") == "True":
        cfg["quick_gelu"] = True
    size = params.get("force_image_size", "None")
    if size not in ("None", ""):
        sizes = re.findall(r"\d+", size)
        if len(set(sizes)) != 1:
            raise LiftError(f"{params_file}: force_image_size {size} is not square; not supported")
        cfg["vision_cfg"]["image_size"] = int(sizes[0])
    return ModelConfigFile(cfg, found.where)


def find_model_config(
    pt: str | Path, model_config: str | Path | dict | None = None
) -> ModelConfigFile | None:
    """The model config deciding `pt`'s head counts and pooling (see the module docstring), or None."""
    pt = Path(pt)
    if isinstance(model_config, dict):
        return _as_model_cfg(model_config, "model_config=")
    if model_config is not None:
        return _read_json_config(Path(model_config))
    for beside in (pt.parent / OPEN_CLIP_CONFIG, pt.with_suffix(".json")):
        if beside.is_file():
            return _read_json_config(beside)
    params = pt.parent.parent / TRAINER_PARAMS
    if pt.parent.name == "checkpoints" and params.is_file():
        return _from_trainer_run(pt, params)
    return None


def _check_supported(
    cfg: dict[str, Any], section: str, cls: type, read: set[str], where: str
) -> dict[str, Any]:
    """`cfg[section]` as stated; refuses unknown keys and options lift does not build (open_clip's
    dataclass `cls` gives the defaults)."""
    values = dict(cfg.get(section) or {})
    if section == "vision_cfg" and "global_average_pool" in values:  # open_clip < 2.23's name
        values.setdefault("pool_type", "avg" if values.pop("global_average_pool") else "tok")
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise LiftError(f"{where}: unknown key {section}.{unknown[0]} (not in open_clip's {cls.__name__})")
    for key, value in values.items():
        if key not in read and key not in _HARMLESS and value != defaults[key]:
            raise LiftError(
                f"{where}: {section}.{key}={value!r} is not supported: lift rebuilds open_clip's plain ViT / "
                "text transformer only"
            )
    return values


# ---------------------------------------------------------------- shapes


def _indices(state: dict[str, Tensor], prefix: str) -> list[int]:
    """The sorted N of the keys `prefix` N `.` ..."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def _block_count(state: dict[str, Tensor], prefix: str, path: Path) -> int:
    found = _indices(state, prefix)
    if not found or found != list(range(len(found))):
        raise LiftError(f"{path}: {prefix}N: block indices {found} are not 0..N-1")
    return len(found)


def _need(state: dict[str, Tensor], key: str, path: Path) -> Tensor:
    if key not in state:
        raise LiftError(f"{path}: missing {key!r}; not an open_clip ViT this reader understands")
    return state[key]


def _vision_shapes(state: dict[str, Tensor], path: Path) -> dict[str, Any]:
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
    return {"layers": _block_count(state, "visual.transformer.resblocks.", path), "width": width,
            "patch_size": patch, "image_size": grid * patch, "mlp_ratio": fc.shape[0] / width}  # fmt: skip


def _text_shapes(state: dict[str, Tensor], path: Path) -> dict[str, Any]:
    """The CLIP text tower's dimensions and context length (the positional embedding's rows)."""
    vocab, width = _need(state, "token_embedding.weight", path).shape
    fc = _need(state, "transformer.resblocks.0.mlp.c_fc.weight", path)
    return {"layers": _block_count(state, "transformer.resblocks.", path), "width": int(width),
            "vocab_size": int(vocab), "mlp_ratio": fc.shape[0] / width,
            "context_length": int(_need(state, "positional_embedding", path).shape[0])}  # fmt: skip


def _scalar(value: Any) -> float | None:
    """A config number; open_clip also takes a square size as [n, n]."""
    if isinstance(value, (list, tuple)) and len(set(value)) == 1:
        value = value[0]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_shapes(
    stated: dict[str, Any], shapes: dict[str, Any], section: str, where: str, path: Path
) -> None:
    for key, found in shapes.items():
        if key not in stated:
            continue
        value = _scalar(stated[key])
        if value is None or not math.isclose(value, float(found)):
            raise LiftError(
                f"{where}: {section}.{key} is {stated[key]} but {path.name}'s weights have {found}; "
                "this config does not describe this checkpoint"
            )


def _plausible_heads(width: int) -> str:
    options = [f"{width // hw} of width {hw}" for hw in (32, 64, 128) if width % hw == 0]
    return f" (e.g. {' or '.join(options)})" if len(options) > 1 else ""


def _decide_heads(
    tower: str, width: int, *, from_config: int | None, flag: int | None, config_where: str | None, path: Path
) -> int:
    """A tower's head count: the model config, else the flag, else the paper's ViT-B/16; never a guess."""
    option = HEADS_FLAG[tower]
    if flag is not None and from_config is not None and flag != from_config:
        raise LiftError(f"{option} {flag} contradicts {config_where} ({from_config} {tower} heads); drop one")
    heads = from_config if from_config is not None else flag
    if heads is None:
        heads = KNOWN_HEADS[tower].get(width)
    if heads is None:
        raise LiftError(
            f"{path}: the {width}-wide {tower} tower's head count is in no shape{_plausible_heads(width)} "
            f"and no model config says it; pass {option} N (or --model-config FILE, an open_clip model "
            "config JSON). lift assumes heads only for the paper's ViT-B/16 (768-wide vision: 12, "
            "512-wide text: 8)"
        )
    if heads < 1 or width % heads:
        raise LiftError(
            f"{option} {heads}: the {tower} tower is {width} wide, not divisible by {heads} heads"
        )
    return heads


# ---------------------------------------------------------------- conversion


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


def _method(state: dict[str, Tensor], path: Path) -> str:
    if any(k.startswith(REFERENCE_HEAD) for k in state):
        return "lift"
    if "token_embedding.weight" in state and "text_projection" in state:
        return "clip"
    raise LiftError(
        f"{path}: not a LIFT or CLIP checkpoint in the reference layout (no {REFERENCE_HEAD}* "
        f"and no token_embedding.weight/text_projection; keys start {sorted(state)[:3]})"
    )


def _vision_tower(
    state: dict[str, Tensor], path: Path, method: str, model_config: ModelConfigFile | None,
    heads: int | None, pool: str | None,
) -> VisionTowerConfig:  # fmt: skip
    """The `visual.*` ViT: sizes from the shapes; heads and pooling from the config, flags or ViT-B/16."""
    from open_clip.model import CLIPVisionCfg

    if pool is not None and pool not in POOL_TYPES:
        raise LiftError(f"vision_pool must be one of {POOL_TYPES}, got {pool!r}")
    shapes = _vision_shapes(state, path)
    stated: dict[str, Any] = {}
    cfg_heads = None
    if model_config is not None:
        where = model_config.where
        if model_config.cfg.get("quick_gelu"):
            raise LiftError(f"{where}: quick_gelu=True is not supported: lift's towers use exact GELU")
        stated = _check_supported(model_config.cfg, "vision_cfg", CLIPVisionCfg, _VISION_READ, where)
        _check_shapes(stated, shapes, "vision_cfg", where, path)
        head_width = _scalar(stated.get("head_width", 64))  # what open_clip builds: 64 when unstated
        if not head_width or shapes["width"] % int(head_width):
            raise LiftError(
                f"{where}: vision_cfg.head_width {stated.get('head_width')} does not divide the width "
                f"{shapes['width']}"
            )
        cfg_heads = shapes["width"] // int(head_width)
    cfg_where = model_config.where if model_config else None
    heads = _decide_heads("vision", shapes["width"], from_config=cfg_heads, flag=heads, config_where=cfg_where,
                          path=path)  # fmt: skip
    cfg_pool = stated.get("pool_type")
    if cfg_pool is not None and pool is not None and cfg_pool != pool:
        raise LiftError(f"--vision-pool {pool} contradicts {cfg_where} (pool_type {cfg_pool!r}); drop one")
    pool = cfg_pool or pool or DEFAULT_POOL[method]
    if pool not in POOL_TYPES:
        raise LiftError(
            f"{cfg_where}: vision_cfg.pool_type {pool!r} is not supported (lift builds {POOL_TYPES})"
        )
    return VisionTowerConfig(heads=heads, pool_type=pool, **shapes)


def _text_tower(
    state: dict[str, Tensor], path: Path, model_config: ModelConfigFile | None, heads: int | None
) -> tuple[TextTowerConfig, int]:
    """(the CLIP text tower, its context length): sizes from the shapes, heads as for the ViT."""
    from open_clip.model import CLIPTextCfg

    shapes = _text_shapes(state, path)
    cfg_heads = None
    if model_config is not None and "text_cfg" in model_config.cfg:
        where = model_config.where
        stated = _check_supported(model_config.cfg, "text_cfg", CLIPTextCfg, _TEXT_READ, where)
        _check_shapes(stated, shapes, "text_cfg", where, path)
        _check_shapes(
            model_config.cfg, {"embed_dim": int(state["text_projection"].shape[1])}, "model", where, path
        )
        cfg_heads = int(_scalar(stated.get("heads", 8)) or 0)  # open_clip's default: 8
    heads = _decide_heads("text", shapes["width"], from_config=cfg_heads, flag=heads,
                          config_where=model_config.where if model_config else None, path=path)  # fmt: skip
    context_length = shapes.pop("context_length")
    return TextTowerConfig(heads=heads, **shapes), context_length


def convert_reference_state(
    state: dict[str, Tensor],
    *,
    where: str | Path,
    vision_pool: str | None = None,
    model_config: ModelConfigFile | None = None,
    vision_heads: int | None = None,
    text_heads: int | None = None,
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """(the model's config, its weights in our layout) for a reference-layout state dict (`module.` stripped).

    Head counts and pooling: `model_config`, else the flags, else the paper's ViT-B/16 (module docstring).
    """
    path = Path(where)
    method = _method(state, path)
    if method == "lift" and text_heads is not None:
        raise LiftError(f"--text-heads {text_heads}: {path} is a LIFT model; it has no text tower")
    vision = _vision_tower(state, path, method, model_config, vision_heads, vision_pool)
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
    text, context_length = _text_tower(state, path, model_config, text_heads)
    config = ModelConfig(
        method="clip", model=_model_label(vision), embed_dim=int(state["text_projection"].shape[1]), loss=loss,
        text_context_length=context_length, vision=vision, text=text,
    )  # fmt: skip
    return config, state


def read_reference_checkpoint(
    path: str | Path,
    *,
    vision_pool: str | None = None,
    model_config: str | Path | dict | None = None,
    vision_heads: int | None = None,
    text_heads: int | None = None,
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """(the model's config, its weights in our layout) for a reference-layout `.pt` file."""
    path = Path(path)
    state = read_state_dict(path)
    return convert_reference_state(
        state, where=path, vision_pool=vision_pool, model_config=find_model_config(path, model_config),
        vision_heads=vision_heads, text_heads=text_heads,
    )  # fmt: skip
