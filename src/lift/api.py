"""`lift.load`: a trained LIFT or CLIP model from a run folder, a checkpoint, or a reference `.pt`, ready
for inference.

Our checkpoints are read from safetensors + JSON only; a reference-layout `.pt` file (the paper's
released checkpoints, open_clip's trainer's checkpoints) with `torch.load(weights_only=True)` (see
`lift.interop.reference`, which also says how head counts are decided: `model_config=`,
`vision_heads=` / `text_heads=`). Never a pickle of objects. For LIFT, `encode_text` runs the frozen
text encoder: the one recorded in the checkpoint (its identity is checked on load; a moved or renamed
folder with the same weights is accepted with a warning), or, for a reference `.pt`, which records
none, the Hugging Face folder passed as `text_encoder=` ("default": the packaged one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lift import checkpoint as ckpt
from lift.config import config_from_dict, config_to_dict
from lift.data.imagetext import eval_transform
from lift.errors import LiftError
from lift.methods import get_method

# where a user names the frozen text encoder: the CLI flag and the Python argument
ENCODER_HINT = "--text-encoder FOLDER (lift eval) or text_encoder= (lift.load)"
# lift.load's arguments that only a reference `.pt` needs (a checkpoint folder records all of them)
REFERENCE_ONLY = {"vision_pool": "--vision-pool", "model_config": "--model-config",
                  "vision_heads": "--vision-heads", "text_heads": "--text-heads"}  # fmt: skip


@dataclass(frozen=True)
class TextOptions:
    """How to run a frozen text encoder a checkpoint does not describe (a reference `.pt`).

    For our checkpoints the recorded identity decides pooling, instruction and max tokens; values
    given here must agree with it. trust_remote_code: needed for encoders whose own code pools
    (NV-Embed-V2: pooling="model").
    """

    path: str | None = None
    pooling: str | None = None
    instruction: str | None = None
    max_tokens: int | None = None
    trust_remote_code: bool = False

    def check_against(self, identity: dict[str, Any], where: Path) -> None:
        asked = {"pooling": self.pooling, "instruction": self.instruction, "max_length": self.max_tokens}
        wrong = [f"{k}={v!r} (recorded {identity.get(k)!r})" for k, v in asked.items()
                 if v is not None and v != identity.get(k)]  # fmt: skip
        if wrong:
            raise LiftError(f"{where}: records its text encoder's settings; asked for {', '.join(wrong)}")


class LoadedModel(nn.Module):
    """A trained model in eval mode: `encode_image`, `encode_text`, `preprocess`, `zero_shot_classifier`,
    `config` (the checkpoint's JSON: enough to rebuild the model) and `text_identity`."""

    def __init__(
        self, model: nn.Module, meta: dict[str, Any], checkpoint: Path, text: TextOptions | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.config = meta
        self.checkpoint = checkpoint
        self.method = meta["model"]["method"]
        self.method_cls = get_method(self.method)
        self.text_identity = meta.get("text_identity")
        self.text_encoder_path = meta.get("text_encoder_path")
        self.text_options = text or TextOptions()
        self.preprocess = eval_transform(model.image_size, model.image_mean, model.image_std)
        self._text_encoder: Any = None  # loaded on first encode_text (LIFT); kept out of state_dict
        self._tokenizer: Any = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """[B, 3, H, W] preprocessed images -> [B, D]."""
        return self.model.encode_image(images.to(self.device), normalize=normalize)

    @torch.no_grad()
    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Captions -> [N, D], as the model's method does it: LIFT runs the frozen encoder (and the run's
        text adapter), CLIP its trained text tower."""
        return self.method_cls.encode_text(self, list(texts), normalize=normalize)

    @property
    def text_cache_key(self) -> str | None:
        """What decides `encode_text`'s vectors (the evaluation text cache keys on it)."""
        return self.method_cls.text_cache_key(self)

    @torch.no_grad()
    def zero_shot_classifier(self, classnames: list[str], templates: list[str]) -> torch.Tensor:
        """Tensor[D, C]: per class, the renormalised mean of its prompts' normalised embeddings.

        [D, C] is open_clip's and clip_benchmark's convention: `logits = image_features @ classifier`.
        Templates hold the class name as `{label}`, `{c}` or `{}`.
        """
        from lift.evaluate.context import EvalContext
        from lift.evaluate.zeroshot import class_embeddings

        if not templates or not classnames:
            raise LiftError("zero_shot_classifier needs at least one class name and one template")
        ctx = EvalContext(device=str(self.device), progress=False)
        return class_embeddings(self, list(classnames), list(templates), ctx).T.contiguous().to(self.device)

    def open_text_encoder(self) -> Any:
        """The frozen text encoder (LIFT), loaded once; its identity is recorded in `text_identity`."""
        from lift.text import TextEncoder

        if self._text_encoder is not None:
            return self._text_encoder
        path = self.text_options.path or self.text_encoder_path
        if self.text_identity:
            if not path or not Path(path).is_dir():
                raise LiftError(
                    f"{self.checkpoint}: its text encoder folder {path} is missing; restore it, or name the "
                    f"folder now holding it: {ENCODER_HINT}"
                )
            enc = TextEncoder.from_identity(
                self.text_identity, path, trust_remote_code=self.text_options.trust_remote_code
            )
        elif path:
            o = self.text_options
            enc = TextEncoder.from_pretrained(
                path, pooling=o.pooling or "auto", max_tokens=o.max_tokens or 77, instruction=o.instruction or "",
                trust_remote_code=o.trust_remote_code,
            )  # fmt: skip
        else:
            raise LiftError(
                f"{self.checkpoint}: no text encoder recorded (a reference checkpoint records none); name the "
                f"Hugging Face folder of the encoder it was trained against: {ENCODER_HINT}"
            )
        wanted = getattr(self.model, "text_input_dim", self.config["model"]["embed_dim"])
        if enc.dim != wanted:
            raise LiftError(
                f"{enc.path}: gives {enc.dim}-d embeddings but {self.checkpoint} reads {wanted}-d text vectors; "
                "this is not the text encoder the model was trained against"
            )
        self._text_encoder, self.text_identity, self.text_encoder_path = enc, enc.identity, str(enc.path)
        return enc

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The trained model's weights (the same keys as the checkpoint's model.safetensors)."""
        return self.model.state_dict(*args, **kwargs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)


def read_checkpoint(
    path: Path, reference: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """(checkpoint JSON, weights in our layout, the checkpoint's path) of a run or checkpoint folder, or
    a reference `.pt` (`reference`: its options, see `load`). Checkpoints of earlier lift versions are
    given in today's config layout."""
    reference = reference or {}
    if path.is_file() and path.name == ckpt.WEIGHTS:  # a checkpoint named by its weights file
        path = path.parent
    if path.is_file():
        from lift.interop.reference import read_reference_checkpoint

        config, weights = read_reference_checkpoint(path, **reference)
        meta = {"model": config_to_dict(config), "source": {"layout": "reference", "path": str(path)}}
        return meta, weights, path
    given = [f"{k}= ({REFERENCE_ONLY[k]})" for k, v in reference.items() if v is not None]
    if given:
        raise LiftError(
            f"{path}: {', '.join(given)} applies to reference .pt files only; a checkpoint folder records it"
        )
    folder = ckpt.resolve_checkpoint(path)
    meta = ckpt.load_config(folder)
    if isinstance(meta.get("train"), dict):
        from lift.train_config import train_config_from_dict

        meta["train"] = dataclasses.asdict(
            train_config_from_dict(meta["train"], where=f"{folder} train config")
        )
    return meta, ckpt.load_weights(folder), folder


def _check_fit(model: nn.Module, weights: dict[str, torch.Tensor], config: Any, where: Path) -> None:
    """One line naming the file, the key and both values when the weights do not fit the config's model."""
    config_file = where / ckpt.CONFIG if where.is_dir() else where
    found = get_method(config.method).embed_dim_of(weights)
    if found is not None and found[1] != config.embed_dim:
        key, dim = found
        raise LiftError(
            f"{config_file}: model.embed_dim is {config.embed_dim} but the weights' {key} "
            f"{list(weights[key].shape)} gives {dim}; the config does not belong to these weights "
            "(set embed_dim to the weights' value, or use the checkpoint's own config.json)"
        )
    expected = model.state_dict()
    wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise LiftError(
            f"{where}: weights do not fit the model in its config: {k} is {list(weights[k].shape)} in the "
            f"weights but {list(expected[k].shape)} in the config's model ({len(wrong)} such key(s))"
        )
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise LiftError(
            f"{where}: weights do not fit the model in its config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def load(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    text_encoder: str | Path | None = None,
    pooling: str | None = None,
    instruction: str | None = None,
    max_tokens: int | None = None,
    trust_remote_code: bool = False,
    vision_pool: str | None = None,
    model_config: str | Path | dict | None = None,
    vision_heads: int | None = None,
    text_heads: int | None = None,
) -> LoadedModel:
    """Load a run folder (its latest checkpoint), a checkpoint folder, or a reference-layout `.pt`.

    text_encoder: the frozen encoder's Hugging Face folder ("default": the packaged
        all-MiniLM-L6-v2) (LIFT): replaces a moved folder of our checkpoints, or names the encoder a
        reference `.pt` was trained against; the encoder is then opened here, run with `pooling` /
        `instruction` / `max_tokens` (default auto / "" / 77).
    Reference `.pt` only (see `lift.interop.reference`):
    vision_pool: the ViT's pooling, "avg" or "tok" (default: the model config's, else avg for LIFT,
        tok for CLIP).
    model_config: an open_clip model config (JSON file or dict) giving head counts and pooling;
        default: one found beside the `.pt`.
    vision_heads / text_heads: the towers' head counts, needed without a model config except for the
        paper's ViT-B/16 (768-wide vision: 12 heads, 512-wide text: 8).
    """
    from lift.models import ModelConfig, create_model

    reference = {"vision_pool": vision_pool, "model_config": model_config, "vision_heads": vision_heads,
                 "text_heads": text_heads}  # fmt: skip
    meta, weights, where = read_checkpoint(Path(path), reference)
    config = config_from_dict(ModelConfig, meta["model"], where=f"{where} model config")
    text = TextOptions(
        path=None if text_encoder is None else str(text_encoder), pooling=pooling,
        instruction=instruction, max_tokens=max_tokens, trust_remote_code=trust_remote_code,
    )  # fmt: skip
    method = get_method(config.method)
    if not method.uses_text_encoder and text != TextOptions():
        raise LiftError(
            f"{where}: a {config.method} model encodes text with its own tower; text encoder options are for "
            "methods that use a frozen text encoder (lift)"
        )
    if text.path is not None:
        from lift.text.default import resolve_encoder_path

        text = dataclasses.replace(text, path=str(resolve_encoder_path(text.path)))
    model = create_model(config)
    _check_fit(model, weights, config, where)
    loaded = LoadedModel(model.to(device).eval(), meta, where, text).eval()
    if loaded.text_identity:
        text.check_against(loaded.text_identity, where)
    elif method.uses_text_encoder and text.path:
        loaded.open_text_encoder()  # a reference .pt: open it now, so text_identity names it from the start
    return loaded
