"""Export a trained model to another library's format: a registry of formats, one module each.

Each format is a function `fn(model: LoadedModel, folder: Path, *, out: Path) -> ExportReport`
registered under a name; it writes its files into `folder`, a fresh temp folder that becomes `out`
only once everything is written, so an interrupted export never leaves a half-written model behind
(`out` is for the names and instructions the files and the report mention).

    from lift.interop.export import export_model
    report = export_model("runs/lift-b16", fmt="hf-clip-vision", out="exports/lift-b16-hf")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lift.atomic import atomic_dir
from lift.errors import LiftError


@dataclass
class ExportReport:
    """What an export wrote and what it left out (printed by `lift export`)."""

    format: str
    out: Path
    files: list[str]
    exported: str  # one line: which part of the model the folder holds
    usage: str  # how to load it
    notes: list[str] = field(default_factory=list)  # what a user must know beyond `usage`


@dataclass(frozen=True)
class ExportFormat:
    name: str
    help: str
    fn: Callable[..., ExportReport]


FORMATS: dict[str, ExportFormat] = {}
# Built-in formats register themselves when their module is imported (imports are heavy: load on use).
BUILTIN = {"hf-clip-vision": "lift.interop.hf_clip_vision", "open_clip": "lift.interop.open_clip_format"}


def register_format(
    name: str, help: str
) -> Callable[[Callable[..., ExportReport]], Callable[..., ExportReport]]:
    """Decorator: `@register_format("onnx", "one line for --help")` on `fn(model, folder, *, out)`."""

    def wrap(fn: Callable[..., ExportReport]) -> Callable[..., ExportReport]:
        FORMATS[name] = ExportFormat(name, help, fn)
        return fn

    return wrap


def format_names() -> list[str]:
    return sorted(set(FORMATS) | set(BUILTIN))


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in FORMATS:
        raise LiftError(f"unknown export format {name!r}; known: {', '.join(format_names())}")
    return FORMATS[name]


def export_model(
    source: str | Path, *, fmt: str, out: str | Path, overwrite: bool = False, vision_pool: str | None = None
) -> ExportReport:
    """Load `source` (run folder, checkpoint folder or reference `.pt`) and write it to `out` as `fmt`."""
    from lift.api import load

    fmt_ = get_format(fmt)
    out = Path(out)
    if out.exists() and not overwrite:
        raise LiftError(f"{out}: already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise LiftError(f"{out}: exists and is not a folder")
    model = load(source, vision_pool=vision_pool)
    with atomic_dir(out) as folder:
        report = fmt_.fn(model, folder, out=out)
    return report
