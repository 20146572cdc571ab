"""LIFT: the image tower and an MLP head trained against the frozen text encoder's stored vectors (the
paper's recipe), with the variants that followed it: several captions (views) per image, drawn at
random or all at once (multi-positive), and a trainable adapter on the frozen vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lift.config import bounded
from lift.data.views import ViewChoice, pick
from lift.errors import LiftError
from lift.identity import check_same_encoder, check_same_transform
from lift.methods import METHODS, Method, identity_key, weights_key


@dataclass
class LiftOptions:
    store: str | None = None  # the embedding store (`lift embed`), required
    text_encoder: str | None = None  # the frozen encoder's folder ('default'): checked against the store
    head_depth: int = bounded(2, ge=1)  # the image head: (Linear, GELU) x (depth - 1), Linear
    text_adapter: str = "none"  # a trainable map on the frozen vectors (lift.models.adapters)


class StoreText:
    """A sample's stored vector(s) for the chosen views: [D], or [V, D] for `all` (a DataLoader worker
    reads it; picklable)."""

    def __init__(self, store: Any, mode: str, rows: list[int]) -> None:
        self.store, self.choice, self.rows = store, ViewChoice(mode), rows

    def __call__(self, sample: Any, rng: np.random.Generator) -> np.ndarray:
        vectors = np.asarray(self.store[sample.key], dtype=np.float32)
        vectors = vectors.reshape(-1, vectors.shape[-1])  # [V, D], one-view stores included
        j = pick(self.choice, len(self.rows), rng)
        out = vectors[self.rows] if j is None else vectors[self.rows[j]]
        if not np.isfinite(out).all():
            raise ValueError("embedding has NaN or inf values")
        return np.ascontiguousarray(out)


@METHODS.register("lift", help="image tower + head against the frozen encoder's stored vectors (the paper)")
class Lift(Method):
    name = "lift"
    Options = LiftOptions
    uses_text_encoder = True

    def open(self) -> None:
        from lift.models.adapters import ADAPTERS
        from lift.store import open_store

        o, cfg = self.options, self.cfg
        if not o.store:
            raise LiftError("--method lift needs --store STORE (made by `lift embed`)")
        ADAPTERS.get(o.text_adapter)  # a one-line error for an unknown adapter, before any work
        self.store = store = open_store(o.store)
        extra = (store.manifest or {}).get("extra", {}) or {}
        encoder_path = extra.get("text_encoder_path")
        if o.text_encoder:
            from lift.text import encoder_identity
            from lift.text.default import resolve_encoder_path

            encoder_path = str(resolve_encoder_path(o.text_encoder))
            check_same_encoder(
                encoder_identity(encoder_path, like=store.identity), store.identity,
                expected_from=f"--text-encoder {o.text_encoder}", found_from=f"store {o.store}",
            )  # fmt: skip
        if cfg.embed_dim is not None and cfg.embed_dim != store.dim:
            raise LiftError(
                f"store {o.store} has dim {store.dim} but --embed-dim (the head's dim) is {cfg.embed_dim}"
            )
        views = list(store.views)
        if self.choice is None:
            if len(views) > 1:
                raise LiftError(
                    f"store {o.store} holds {len(views)} views ({', '.join(views)}); choose with --captions "
                    "VIEW, random or all"
                )
            self.choice = ViewChoice("fixed", (views[0],))
        used = self.choice.resolve(views, where=f"store {o.store}")
        self.rows = [views.index(v) for v in used]
        self.transform = store.transform  # None for a store of the encoder's own vectors
        self.provenance = {"text_identity": store.identity, "text_encoder_path": encoder_path,
                           "store_dim": store.dim, "store_views": used,
                           "text_transform": self.transform.identity if self.transform else None}  # fmt: skip

    def select(self, index: Any, policy: Any) -> list[Any]:
        from lift.data.index import select_samples

        return select_samples(index, store=self.store, policy=policy)

    def model_config(self) -> Any:
        from lift.models import ModelConfig

        c = self.cfg
        return ModelConfig(
            method="lift", model=c.model, embed_dim=self.store.dim, head_depth=self.options.head_depth,
            loss=c.loss, init_temperature=c.init_temperature, grad_checkpointing=c.grad_checkpointing,
            text_adapter=self.options.text_adapter,
            text_transform=self.transform.identity if self.transform else None,
        )  # fmt: skip

    def prepare_model(self, model: nn.Module) -> None:
        if self.transform is not None:  # the store's map travels with the weights
            model.text_transform_matrix.copy_(torch.tensor(self.transform.matrix))
            model.text_transform_bias.copy_(torch.tensor(self.transform.bias))

    def text_source(self) -> StoreText:
        return StoreText(self.store, self.choice.mode, self.rows)

    def text_features(self, model: nn.Module, texts: torch.Tensor) -> torch.Tensor:
        return model.encode_text(texts)  # stored [B, (V,) D] -> adapter -> normalised

    def check_resume(self, saved: dict[str, Any], where: str) -> None:
        # the same store path may hold other vectors now
        check_same_encoder(saved.get("text_identity") or {}, self.store.identity,
                           expected_from=f"checkpoint {where}", found_from=f"store {self.options.store}")  # fmt: skip
        check_same_transform(saved.get("text_transform"), self.provenance["text_transform"],
                             expected_from=f"checkpoint {where}", found_from=f"store {self.options.store}")  # fmt: skip

    # ---- inference ------------------------------------------------------------------------------

    @classmethod
    def encode_text(cls, loaded: Any, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """The frozen encoder's vectors, through the run's adapter."""
        raw = loaded.open_text_encoder().encode(list(texts)).float().to(loaded.device)
        return loaded.model.encode_text(loaded.model.transform_text(raw), normalize=normalize)

    @classmethod
    def text_cache_key(cls, loaded: Any) -> str | None:
        if not isinstance(loaded.text_identity, dict) or not loaded.text_identity.get("weights_sha256"):
            return None
        key = identity_key(loaded.text_identity)
        transform = loaded.model.config.text_transform
        if transform is not None:
            key += "-t" + transform["sha256"][:16]
        adapter = loaded.model.text_adapter.state_dict()
        return key + ("-" + weights_key(adapter, "adapter") if adapter else "")

    @classmethod
    def embed_dim_of(cls, weights: dict[str, torch.Tensor]) -> tuple[str, int] | None:
        layers = sorted(
            int(k.split(".")[1]) for k in weights if k.startswith("head.") and k.endswith(".weight")
        )
        key = f"head.{layers[-1]}.weight" if layers else None
        return (key, int(weights[key].shape[0])) if key else None
