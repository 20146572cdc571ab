"""The model's typed config: enough to rebuild the same architecture from a checkpoint's JSON."""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("lift", "clip")


@dataclass
class ModelConfig:
    """Architecture of a LIFT or CLIP model (build it with `lift.models.create_model`).

    embed_dim: LIFT: the head's output dim D, which must equal the embedding store's dim;
        CLIP: the shared image/text embedding dim.
    head_depth / head_hidden: LIFT's MLP head (1 = Linear; 2 = Linear, GELU, Linear); hidden
        width defaults to embed_dim, as in the paper. CLIP keeps open_clip's linear projection.
    loss: decides the logit scale/bias init (SigLIP: scale ln(10), bias -10; else ln(1/0.07)).
    init_temperature: overrides the loss's initial temperature T (logit scale starts at 1/T, then
        learns); must be in [0.01, 1] because the scale is clamped to [1, 100].
    """

    method: str = "lift"
    model: str = "vit-tiny"
    embed_dim: int = 384
    head_depth: int = 2
    head_hidden: int | None = None
    loss: str = "infonce"
    init_temperature: float | None = None
    text_context_length: int = 77
    grad_checkpointing: bool = False
