"""The model's typed config: enough to rebuild the same architecture from a checkpoint's JSON."""

from __future__ import annotations

from dataclasses import dataclass

from lift.errors import LiftError

POOL_TYPES = ("avg", "tok")  # open_clip ViT pooling: mean of patch tokens | the class token


@dataclass
class VisionTowerConfig:
    """An open_clip ViT given by its dimensions rather than a registered name.

    What a checkpoint's tensor shapes say (e.g. a reference-layout `.pt`). The head count is not in any
    shape: `lift.interop.reference` takes it from a model config or a flag (see its rules).
    pool_type: "avg" (mean of the patch tokens after ln_post; LIFT's choice) or "tok" (the class
    token; open_clip's stock ViT-B-16).
    """

    layers: int
    width: int
    heads: int
    patch_size: int
    image_size: int
    mlp_ratio: float = 4.0
    pool_type: str = "avg"

    def __post_init__(self) -> None:
        if self.heads < 1 or self.width % self.heads:
            raise LiftError(f"vision tower: width {self.width} is not divisible by {self.heads} heads")
        if self.pool_type not in POOL_TYPES:
            raise LiftError(f"vision tower: pool_type must be one of {POOL_TYPES}, got {self.pool_type!r}")


@dataclass
class TextTowerConfig:
    """A CLIP text transformer given by its dimensions (heads come from a config or flag, not shapes)."""

    layers: int
    width: int
    heads: int
    vocab_size: int = 49408
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.heads < 1 or self.width % self.heads:
            raise LiftError(f"text tower: width {self.width} is not divisible by {self.heads} heads")


@dataclass
class ModelConfig:
    """Architecture of a LIFT or CLIP model (build it with `lift.models.create_model`).

    model: a registered architecture (`lift.models.list_models()`); when `vision` (and, for CLIP,
        `text`) give the towers explicitly, only a label.
    embed_dim: LIFT: the head's output dim D, which must equal the embedding store's dim;
        CLIP: the shared image/text embedding dim.
    head_depth / head_hidden: LIFT's MLP head (1 = Linear; 2 = Linear, GELU, Linear); hidden
        width defaults to embed_dim, as in the paper. CLIP keeps open_clip's linear projection.
    loss: decides the logit scale/bias init (SigLIP: scale ln(10), bias -10; else ln(1/0.07)).
    init_temperature: overrides the loss's initial temperature T (logit scale starts at 1/T, then
        learns); must be in [0.01, 1] because the scale is clamped to [1, 100].
    vision / text: explicit towers (None: `model`'s registered ones), so a model whose architecture
        was inferred from a checkpoint rebuilds from its config alone. Configs written before these
        fields existed load unchanged.
    text_adapter: LIFT's trainable map on the frozen vectors (`lift.models.adapters`); "none" is the
        paper's recipe.
    text_transform: the identity of the fitted linear map of a transformed store (`lift store
        transform`: its sha256, chain, in_dim and out_dim); the map itself travels in the weights, so
        `encode_text` maps the frozen encoder's output exactly as the store's vectors were mapped.
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
    vision: VisionTowerConfig | None = None
    text: TextTowerConfig | None = None
    text_adapter: str = "none"
    text_transform: dict | None = None
