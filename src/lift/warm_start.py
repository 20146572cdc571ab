"""`lift train --init-from RUN_OR_CHECKPOINT`: start a new run from another run's vision tower.

The encoder-upgrade path: when a better text encoder appears, re-embed the captions offline and keep
training the image tower instead of starting over. The new run copies the old run's vision tower
(any method: LIFT's trunk, or CLIP's `visual` with its projection when the shapes allow), and the
old head when it fits the new store's dimension; everything else (adapter, logit scale, optimizer,
schedule) starts fresh. The provenance of both encoders is recorded in every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lift.errors import LiftError
from lift.models import ModelConfig, vision_tower

VISION = "visual."
HEAD = "head."


def _read(source: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    from lift.api import read_checkpoint

    return read_checkpoint(Path(source))


def warm_start(model: nn.Module, config: ModelConfig, source: str) -> dict[str, Any]:
    """Copy `source`'s vision tower (and head, when it fits) into `model`; returns the provenance."""
    from lift.config import config_from_dict

    meta, weights, where = _read(source)
    old = config_from_dict(ModelConfig, meta["model"], where=f"{where} model config")
    if vision_tower(old) != vision_tower(config):
        raise LiftError(
            f"--init-from {source}: its vision tower ({vision_tower(old)}) is not this run's "
            f"({vision_tower(config)}); choose a run of the same --model"
        )
    mine = model.state_dict()
    copied: dict[str, torch.Tensor] = {}
    for prefix in (VISION, HEAD):
        part = {k: v for k, v in weights.items() if k.startswith(prefix) and k in mine}
        fits = bool(part) and all(mine[k].shape == v.shape for k, v in part.items())
        if prefix == VISION:
            # a CLIP tower's projection fits only a CLIP model of the same embed_dim; the trunk must fit
            trunk = {k: v for k, v in part.items() if not k.startswith(VISION + "proj")}
            bad = [k for k, v in trunk.items() if mine[k].shape != v.shape]
            if bad or not trunk:
                raise LiftError(
                    f"--init-from {source}: its vision tower does not fit this model (e.g. {bad[:1]})"
                )
            copied.update(part if fits else trunk)
        elif fits and set(part) == {k for k in mine if k.startswith(HEAD)}:
            copied.update(part)
    model.load_state_dict({**mine, **copied})
    return {
        "checkpoint": str(where),
        "method": old.method,
        "text_identity": meta.get("text_identity"),
        "copied": sorted(
            {k.split(".")[0] + (".proj" if k.startswith(VISION + "proj") else "") for k in copied}
        ),
    }
