"""Checkpoints: RUN/checkpoints/step-000123/{model.safetensors, config.json, state.pt} + a `latest` pointer.

A checkpoint folder is written under a temp name and renamed into place, and `latest` is replaced
atomically after it, so a job killed at any instant leaves the previous checkpoint intact.
`state.pt` holds only tensors and primitives and is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lift.atomic import atomic_dir, atomic_write, write_json
from lift.config import read_json
from lift.errors import LiftError, first_line

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "state.pt"
LATEST = "latest"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def save_weights(
    weights: dict[str, torch.Tensor], path: Path, *, metadata: dict[str, str] | None = None
) -> None:
    """Write `weights` as safetensors (with `metadata` in its header); write it inside `atomic_dir`,
    which fsyncs it."""
    # safetensors refuses shared storage; clone makes every tensor its own contiguous copy.
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}, path, metadata=metadata)


def save_checkpoint(
    run_dir: str | Path, step: int, weights: dict[str, torch.Tensor], config: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """Write checkpoint `step` under `run_dir/checkpoints` and point `latest` at it."""
    root = Path(run_dir) / "checkpoints"
    final = root / checkpoint_name(step)
    with atomic_dir(final) as tmp:  # a rerun of the same step replaces it (same data, same result)
        save_weights(weights, tmp / WEIGHTS)
        write_json(tmp / CONFIG, {**config, "step": step})
        if state is not None:
            with atomic_write(tmp / STATE) as f:
                torch.save(state, f)
    with atomic_write(root / LATEST, "w") as f:
        f.write(final.name + "\n")
    return final


def clean_stale_temps(run_dir: str | Path) -> None:
    """Remove what a killed job left half-written: checkpoint folders and the temp files of atomic
    writes (`latest`, config.json, metrics.jsonl). Only lift's own temp names are touched."""
    run = Path(run_dir)
    root = run / "checkpoints"
    if root.is_dir():
        for p in root.glob(".step-*.tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
    for folder, name in ((root, LATEST), (run, CONFIG), (run, "metrics.jsonl")):
        for p in folder.glob(f".{name}.*.tmp"):
            p.unlink(missing_ok=True)


def _step_of(folder: Path) -> int | None:
    m = re.fullmatch(r"step-(\d+)", folder.name)
    return int(m.group(1)) if m else None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's newest checkpoint (weights and config written), or None when it has none.

    The `latest` pointer is a convenience for readers; it can lag (a kill between a checkpoint's
    rename and the pointer's) or be missing, so the folders themselves decide (they appear only
    whole: atomic rename).
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    found = [(step, p) for p in root.iterdir()
             if (step := _step_of(p)) is not None and (p / WEIGHTS).is_file() and (p / CONFIG).is_file()]  # fmt: skip
    return max(found)[1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its latest checkpoint)."""
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return path
    if not path.exists():
        raise LiftError(f"{path}: no such run or checkpoint folder")
    found = latest_checkpoint(path)
    if found is None:
        raise LiftError(f"{path}: neither a checkpoint ({WEIGHTS}) nor a run folder with checkpoints/latest")
    return found


def load_weights(ckpt: str | Path) -> dict[str, torch.Tensor]:
    path = Path(ckpt) / WEIGHTS
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types
        raise LiftError(f"{path}: cannot read weights: {e}") from None


def load_config(ckpt: str | Path) -> dict[str, Any]:
    return read_json(Path(ckpt) / CONFIG)


def load_tensors(path: Path) -> Any:
    """`torch.load(path, weights_only=True)`: tensors and primitives only, never a pickle of objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling fails in many types; a pickle of objects is refused here
        raise LiftError(_unreadable(path, e)) from None


def _unreadable(path: Path, e: Exception) -> str:
    """Why torch.load(weights_only=True) failed, in lift's words: torch's own advice is to unpickle."""
    text = str(e)
    if "Weights only load failed" in text or "weights_only" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" (e.g. {found.group(1)})" if found else ""
        return (
            f"{path}: holds pickled Python objects{what}, not only tensors; lift loads weights-only "
            "checkpoints only and never unpickles objects. Save the model's state_dict (tensors only)"
        )
    return f"{path}: not a readable torch checkpoint (damaged, or another format): {first_line(e)}"


def load_state(ckpt: str | Path) -> dict[str, Any]:
    path = Path(ckpt) / STATE
    if not path.is_file():
        raise LiftError(f"{path}: missing; this checkpoint cannot be resumed (weights only)")
    return load_tensors(path)
