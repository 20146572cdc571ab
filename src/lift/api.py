"""`lift.load`: a trained LIFT or CLIP model from a run folder or checkpoint, ready for inference.

Only safetensors weights and JSON configs are read (never pickles). For LIFT, `encode_text` runs
the frozen text encoder recorded in the checkpoint (its identity is checked on load), so image and
text embeddings always come from the same pairing the model was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lift import checkpoint as ckpt
from lift.config import config_from_dict
from lift.data.imagetext import eval_transform
from lift.errors import LiftError


class LoadedModel(nn.Module):
    """A trained model in eval mode: `encode_image`, `encode_text`, `preprocess`, `config`, `text_identity`."""

    def __init__(self, model: nn.Module, meta: dict[str, Any], checkpoint: Path) -> None:
        super().__init__()
        self.model = model
        self.config = meta
        self.checkpoint = checkpoint
        self.method = meta["model"]["method"]
        self.text_identity = meta.get("text_identity")
        self.text_encoder_path = meta.get("text_encoder_path")
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
        """Captions -> [N, D]: the frozen encoder for LIFT, the trained text tower for CLIP."""
        if self.method == "clip":
            if self._tokenizer is None:
                from lift.models import ModelConfig, get_tokenizer

                self._tokenizer = get_tokenizer(config_from_dict(ModelConfig, self.config["model"]))
            return self.model.encode_text(self._tokenizer(list(texts)).to(self.device), normalize=normalize)
        if self._text_encoder is None:
            self._text_encoder = self._open_text_encoder()
        out = self._text_encoder.encode(list(texts)).float().to(self.device)
        return F.normalize(out, dim=-1) if normalize else out

    def _open_text_encoder(self) -> Any:
        from lift.text import TextEncoder

        if not self.text_identity or not self.text_encoder_path:
            raise LiftError(
                f"{self.checkpoint}: no text encoder recorded; cannot encode text for this LIFT model"
            )
        path = Path(self.text_encoder_path)
        if not path.is_dir():
            raise LiftError(
                f"{self.checkpoint}: its text encoder folder {path} is missing; "
                "restore it or pass text_encoder_path= to lift.load"
            )
        return TextEncoder.from_identity(self.text_identity, path)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The trained model's weights (the same keys as the checkpoint's model.safetensors)."""
        return self.model.state_dict(*args, **kwargs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)


def load(
    path: str | Path, *, device: str | torch.device = "cpu", text_encoder_path: str | None = None
) -> LoadedModel:
    """Load the latest checkpoint of a run folder, or a checkpoint folder, in eval mode."""
    from lift.models import ModelConfig, create_model

    folder = ckpt.resolve_checkpoint(path)
    meta = ckpt.load_config(folder)
    if text_encoder_path is not None:
        meta["text_encoder_path"] = str(text_encoder_path)
    model = create_model(config_from_dict(ModelConfig, meta["model"], where=str(folder / ckpt.CONFIG)))
    missing, unexpected = model.load_state_dict(ckpt.load_weights(folder), strict=False)
    if missing or unexpected:
        raise LiftError(
            f"{folder}: weights do not fit the model in its config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return LoadedModel(model.to(device).eval(), meta, folder).eval()
