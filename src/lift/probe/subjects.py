"""What the probe compares, one column each: a raw text encoder, or a store (its encoder rebuilt from
the identity the store records, then its transform)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lift.errors import LiftError
from lift.probe.figures import Embed, memoized


@dataclass
class Subject:
    """One column of the probe: a label, the frozen encoder, and the store (and its transform) when the
    column is a store. `embed` is the encoder's output mapped through the transform; subjects sharing
    an encoder share `raw`, so each text is embedded once for all of them."""

    label: str
    encoder: Any  # the TextEncoder (anything with `.encode(texts)`, `.identity`, `.path`)
    raw: Embed  # the encoder's memoised output, before any transform
    store: Any = None  # the EmbeddingStore, for store subjects
    transform_map: Any = None  # the store's StoreTransform, if any

    @property
    def kind(self) -> str:
        return "store" if self.store is not None else "encoder"

    @property
    def text_encoder(self) -> dict[str, Any]:
        return self.encoder.identity

    @property
    def transform(self) -> dict[str, Any] | None:
        return transform_identity(self.transform_map)

    @property
    def embed(self) -> Embed:
        t = self.transform_map
        return self.raw if t is None else (lambda texts: np.asarray(t.apply(self.raw(texts))))


def transform_identity(transform: Any) -> dict[str, Any] | None:
    """What a store transform records about itself (its identity dict), None for no transform."""
    if transform is None:
        return None
    for name in ("identity", "to_dict", "describe"):
        value = getattr(transform, name, None)
        value = value() if callable(value) else value
        if isinstance(value, dict):
            return value
    return {"repr": repr(transform)}


def encoder_embed(encoder: Any) -> Embed:
    """texts -> float32 [N, D]: the encoder's vectors."""
    return lambda texts: encoder.encode(list(texts)).float().numpy()


def encoder_subject(
    text_encoder: str = "default",
    *,
    pooling: str = "auto",
    max_tokens: int = 77,
    instruction: str = "",
    trust_remote_code: bool = False,
    device: str = "auto",
    batch_size: int = 128,
    label: str | None = None,
) -> Subject:
    """A raw encoder (a local Hugging Face folder or "default") as a probe column."""
    from lift.text import TextEncoder

    enc = TextEncoder.from_pretrained(
        text_encoder, pooling=pooling, max_tokens=max_tokens, instruction=instruction,
        trust_remote_code=trust_remote_code, device=device, batch_size=batch_size,
    )  # fmt: skip
    return Subject(label=label or str(text_encoder), encoder=enc, raw=memoized(encoder_embed(enc)))


def store_encoder_identity(store: Any) -> dict[str, Any]:
    """The identity of the encoder a store's vectors came from (before its transform)."""
    own = getattr(store, "encoder_identity", None)
    if isinstance(own, dict):
        return own
    return {k: v for k, v in store.identity.items() if k != "transform"}


def store_subject(
    store: str | os.PathLike,
    *,
    loaded: Sequence[Subject] = (),
    text_encoder: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
    device: str = "auto",
    batch_size: int = 128,
    label: str | None = None,
) -> Subject:
    """A store as a probe column: its encoder rebuilt from the identity it records, then its transform.

    A subject in `loaded` with exactly the store's encoder identity lends its encoder and its embedded
    texts. Otherwise the encoder folder is `text_encoder` when given (it must be the store's encoder),
    else the folder of a subject in `loaded` with the store's weights, else the folder the store
    records (`extra.text_encoder_path`).
    """
    from lift.identity import identity_diff
    from lift.store import open_store
    from lift.text import TextEncoder

    st = open_store(store)
    identity = store_encoder_identity(st)
    transform = getattr(st, "transform", None)
    same = next((s for s in loaded if not identity_diff(s.text_encoder, identity)), None)
    if same is not None and text_encoder is None:
        return Subject(
            label=label or str(store), encoder=same.encoder, raw=same.raw, store=st, transform_map=transform
        )
    weights = next(
        (s for s in loaded if s.text_encoder.get("weights_sha256") == identity.get("weights_sha256")), None
    )
    recorded = (st.manifest.get("extra") or {}).get("text_encoder_path")
    folder = text_encoder or (str(weights.encoder.path) if weights is not None else recorded)
    if not folder or not Path(folder).is_dir():
        raise LiftError(
            f"store {store}: its text encoder folder {folder or '(not recorded)'} is missing, and no "
            f"--text-encoder given holds its weights ({identity.get('name')}, sha256 "
            f"{str(identity.get('weights_sha256'))[:12]}...); name the folder now holding it with --text-encoder"
        )
    enc = TextEncoder.from_identity(
        identity, folder, trust_remote_code=trust_remote_code, device=device, batch_size=batch_size
    )
    return Subject(
        label=label or str(store),
        encoder=enc,
        raw=memoized(encoder_embed(enc)),
        store=st,
        transform_map=transform,
    )
