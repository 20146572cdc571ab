"""Export a trained model to another library's format: a registry of formats, one module each.

Each format is a function `fn(model: LoadedModel, folder: Path, *, out: Path) -> ExportReport`
registered under a name; it writes its files into `folder`, a fresh temp folder that becomes `out`
only once everything is written, so an interrupted export never leaves a half-written model behind
(`out` is for the names and instructions the files and the report mention). The folder also gets
lift's output marker, so a later `--overwrite` knows lift wrote it.

    from lift.interop.export import export_model
    report = export_model("runs/lift-b16", fmt="hf-clip-vision", out="exports/lift-b16-hf")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lift.atomic import atomic_dir
from lift.errors import LiftError
from lift.outputs import prepare_output_dir, write_marker
from lift.registry import Registry

KIND = "export"  # the marker's kind: what `--overwrite` may replace


@dataclass
class ExportReport:
    """What an export wrote and what it left out (printed by `lift export`)."""

    format: str
    out: Path
    files: list[str]
    exported: str  # one line: which part of the model the folder holds
    usage: str  # how to load it
    notes: list[str] = field(default_factory=list)  # what a user must know beyond `usage`


# Built-in formats register themselves when their module is imported (imports are heavy: load on use);
# their help is here, so `lift export --help` imports none of them.
BUILTIN = {
    "hf-clip-vision": (
        "lift.interop.hf_clip_vision",
        "the ViT as a Hugging Face CLIPVisionModel folder "
        "(LLaVA-style vision tower); LIFT's head is not included",
    ),
    "open_clip": (
        "lift.interop.open_clip_format",
        "a CLIP model as an open_clip local-dir: folder (config + safetensors); LIFT models are refused",
    ),
}
# name -> fn(model, folder, *, out) -> ExportReport; `--format` chooses one.
FORMATS: Registry[Callable[..., ExportReport]] = Registry("export format", flag="--format", lazy=BUILTIN)


def register_format(
    name: str, help: str = ""
) -> Callable[[Callable[..., ExportReport]], Callable[..., ExportReport]]:
    """Decorator: `@register_format("onnx", "one line for --help")` on `fn(model, folder, *, out)`."""
    return FORMATS.register(name, help=help)


def format_names() -> list[str]:
    return FORMATS.names()


def get_format(name: str) -> Callable[..., ExportReport]:
    """The export function of format `name`; an unknown name is a one-line LiftError listing the known ones."""
    return FORMATS.get(name)


def export_model(
    source: str | Path, *, fmt: str, out: str | Path, overwrite: bool = False, **load_kwargs: Any
) -> ExportReport:
    """Load `source` (run folder, checkpoint folder or reference `.pt`) and write it to `out` as `fmt`.

    `out` is checked before the model is loaded: it may replace only an earlier lift export (its
    marker), never the source, a folder holding it, or the working directory. load_kwargs go to
    `lift.load` (a reference `.pt`'s vision_pool=, model_config=, vision_heads=, text_heads=).
    """
    from lift.api import load

    write = get_format(fmt)
    out = Path(out)
    # refused with or without --overwrite (and even when empty: renaming onto the cwd would drop it)
    if _holds(out.resolve(), Path(source).resolve()):
        raise LiftError(
            f"--out {out}: is the source {source} or holds it; choose a new folder for the export"
        )
    if _holds(out.resolve(), Path.cwd().resolve()):
        raise LiftError(f"--out {out}: is the working directory or holds it; choose a new folder")
    prepare_output_dir(out, kind=KIND, overwrite=overwrite, sources=[source])
    model = load(source, **load_kwargs)
    with atomic_dir(os.path.abspath(out)) as folder:
        report = write(model, folder, out=out)
        write_marker(folder, KIND)
    return report


def _holds(folder: Path, other: Path) -> bool:
    return folder == other or folder in other.parents
