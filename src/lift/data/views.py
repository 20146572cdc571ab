"""Which caption (view) of a sample training uses: `--captions VIEW | random | all [:VIEW,VIEW...]`.

A view is a named caption of a sample, named like the field it comes from, in every command: the
parquet/JSON column (`org_caption`, `re_caption`, ...) or `txt` (a shard's `.txt` member). `lift embed
--caption-field a,b` stores one vector per view; `lift train --captions` picks among them, for LIFT
(stored vectors) and CLIP (raw text) alike:

- `VIEW`: always that view;
- `random`: one view drawn per sample and epoch, seeded by (seed, epoch, index) only, so the draw is
  the same for any number of processes and after a resume;
- `all`: every view at once (a multi-positive loss: each view of an image is a positive).

`random` and `all` take every available view, or the listed ones (`random:org_caption,re_caption`).
Two aliases name the conventional columns: `short` (org_caption, caption, text or txt: the first
that exists) and `long` (re_caption or long_caption).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lift.errors import LiftError

ALIASES = {"short": ("org_caption", "caption", "text", "txt"), "long": ("re_caption", "long_caption")}
MODES = ("random", "all")
FLAG = "--captions"


@dataclass(frozen=True)
class ViewChoice:
    """A parsed `--captions`: mode "fixed" (one view), "random" or "all"; `views` as the user named them
    (None: every available view)."""

    mode: str
    views: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, spec: str) -> ViewChoice:
        mode, _, listed = spec.partition(":")
        if mode in MODES:
            views = tuple(v.strip() for v in listed.split(",") if v.strip()) if listed else None
            if listed and not views:
                raise LiftError(
                    f"{FLAG} {spec!r}: list the views after the colon, e.g. {mode}:org_caption,re_caption"
                )
            return cls(mode, views)
        if listed or "," in spec or not spec.strip():
            raise LiftError(f"{FLAG} {spec!r}: give one view, or random / all (optionally random:VIEW,VIEW)")
        return cls("fixed", (spec.strip(),))

    def __str__(self) -> str:
        if self.mode == "fixed":
            return self.views[0]  # type: ignore[index]
        return self.mode + (":" + ",".join(self.views) if self.views else "")

    def resolve(self, available: list[str], *, where: str) -> list[str]:
        """The concrete view names among `available` this choice uses (aliases resolved), in order."""
        wanted = self.views if self.views is not None else tuple(available)
        if not wanted:
            raise LiftError(f"{where} has no caption views")
        return [resolve_view(v, available, where=where) for v in wanted]


def resolve_view(name: str, available: list[str], *, where: str) -> str:
    """`name` itself, or the first of its alias's columns in `available`; a one-line error otherwise."""
    if name in available:
        return name
    for candidate in ALIASES.get(name, ()):
        if candidate in available:
            return candidate
    alias = f" ({name} means the first of {', '.join(ALIASES[name])})" if name in ALIASES else ""
    raise LiftError(
        f"{FLAG} {name}: {where} has no such view{alias}; its views: {', '.join(available) or 'none'}"
    )


def caption_of(captions: dict[str, Any], view: str) -> Any:
    """A sample's caption for `view` (a field name or an alias), or None when it has none."""
    if view in captions:
        return captions[view]
    return next((captions[c] for c in ALIASES.get(view, ()) if c in captions), None)


def pick(choice: ViewChoice, n_views: int, rng: np.random.Generator) -> int | None:
    """The index of the view a sample uses this epoch (None: all of them)."""
    if choice.mode == "all":
        return None
    if choice.mode == "random":
        return int(rng.integers(n_views))
    return 0
