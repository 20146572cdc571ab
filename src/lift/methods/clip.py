"""The CLIP baseline: the same image tower and a text transformer trained from scratch on raw captions,
drawn from the same views of a sample as LIFT's stored vectors (`--captions`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lift.config import bounded
from lift.data.views import ViewChoice, caption_of, pick
from lift.methods import METHODS, Method

DEFAULT_VIEWS = ("short", "long")  # what `--captions random` / `all` draw from without a list


@dataclass
class ClipOptions:
    text_context_length: int = bounded(77, ge=2)  # tokens per caption (start and end tokens included)


class CaptionText:
    """A sample's caption for the chosen views: one string, or a list of strings for `all`."""

    def __init__(self, mode: str, views: tuple[str, ...]) -> None:
        self.choice, self.views = ViewChoice(mode), views

    def __call__(self, sample: Any, rng: np.random.Generator) -> str | list[str]:
        from lift.data.index import caption_field_problem, resolve_captions

        j = pick(self.choice, len(self.views), rng)
        views = self.views if j is None else (self.views[j],)
        found = resolve_captions(sample, views)  # nothing is read when select_samples resolved them
        for v in views:
            if problem := caption_field_problem(found, v):
                raise ValueError(problem)
        captions = [caption_of(found, v) for v in views]
        return captions if j is None else captions[0]


@METHODS.register("clip", help="image + text towers from scratch on raw captions (the baseline)")
class Clip(Method):
    name = "clip"
    Options = ClipOptions

    def open(self) -> None:
        from lift.models import get_tokenizer

        if self.choice is None:
            self.choice = ViewChoice("fixed", ("short",))
        self.views = self.choice.views or DEFAULT_VIEWS
        self.tokenizer = get_tokenizer(self.model_config())
        self.provenance = {"text_identity": None, "text_encoder_path": None, "store_dim": None,
                           "views": list(self.views)}  # fmt: skip

    def select(self, index: Any, policy: Any) -> list[Any]:
        from lift.data.index import select_samples

        return select_samples(index, views=list(self.views), policy=policy)

    def model_config(self) -> Any:
        from lift.models import ModelConfig

        c = self.cfg
        return ModelConfig(
            method="clip", model=c.model, embed_dim=c.embed_dim or 512, loss=c.loss,
            init_temperature=c.init_temperature, text_context_length=self.options.text_context_length,
            grad_checkpointing=c.grad_checkpointing,
        )  # fmt: skip

    def text_source(self) -> CaptionText:
        return CaptionText(self.choice.mode, tuple(self.views))

    def text_batch(self, texts: Any, device: torch.device) -> torch.Tensor:
        if texts and isinstance(texts[0], list):  # all views: [B, V, L]
            flat = self.tokenizer([c for views in texts for c in views])
            return flat.view(len(texts), len(texts[0]), -1).to(device, non_blocking=True)
        return self.tokenizer(list(texts)).to(device, non_blocking=True)  # [B, L]

    def text_features(self, model: nn.Module, texts: torch.Tensor) -> torch.Tensor:
        if texts.ndim == 3:
            b, v = texts.shape[:2]
            return model.encode_text(texts.flatten(0, 1), normalize=True).view(b, v, -1)
        return model.encode_text(texts, normalize=True)

    # ---- inference ------------------------------------------------------------------------------

    @classmethod
    def encode_text(cls, loaded: Any, texts: list[str], normalize: bool = True) -> torch.Tensor:
        if getattr(loaded, "_tokenizer", None) is None:
            from lift.models import get_tokenizer

            loaded._tokenizer = get_tokenizer(loaded.model.config)
        tokens = loaded._tokenizer(list(texts)).to(loaded.device)
        return loaded.model.encode_text(tokens, normalize=normalize)

    @classmethod
    def embed_dim_of(cls, weights: dict[str, torch.Tensor]) -> tuple[str, int] | None:
        key = "text_projection"
        return (key, int(weights[key].shape[1])) if key in weights and weights[key].ndim == 2 else None
