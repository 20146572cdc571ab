"""Winoground: two images, two captions with the same words in a different order; match them.

Reads the published release: `examples.jsonl` (one JSON object a line with `id`, `image_0`,
`image_1`, `caption_0`, `caption_1`, `tag`, `secondary_tag`, `num_main_preds`, `collapsed_tag`)
over its image folder (`images/ex_0_img_0.png`; a name is accepted with or without its extension).
With s(c, i) the cosine similarity of caption c and image i, the official scores are, strictly
(a tie is wrong):

- text:  s(c0, i0) > s(c1, i0) and s(c1, i1) > s(c0, i1)   (each image picks its caption)
- image: s(c0, i0) > s(c0, i1) and s(c1, i1) > s(c1, i0)   (each caption picks its image)
- group: both

as percentages of examples, overall and per `tag` (`tag=Object/text`, ...), per `secondary_tag`
value when an example has one (several are separated by commas), and over the examples listed in
`heldout.json` (`{"ids": [...]}`, written by `lift synth`) when the annotations' folder has one.
Every image is checked to exist before any model runs; each distinct image and caption is embedded
once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lift.data.samples import caption_problem, is_image_ext
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import register
from lift.evaluate.context import EvalContext, make_result
from lift.evaluate.formats import heldout_entries, read_utf8
from lift.evaluate.options import option
from lift.evaluate.results import EvalResult

EXAMPLES_FILE = "examples.jsonl"
IMAGES_DIR = "images"  # the release's image folder beside examples.jsonl
REQUIRED = ("id", "image_0", "image_1", "caption_0", "caption_1", "tag")
SCORES = ("text", "image", "group")
# per-tag, per-secondary-tag and held-out numbers are rows: `tag=Object/text`, `heldout/group`
COLUMNS = [("text", "Text", "examples"), ("image", "Image", "examples"), ("group", "Group", "examples")]


@dataclass
class WinogroundConfig:
    annotations: str = option("", required=True, path="any", help="examples.jsonl, or the folder holding it")
    images: str = option(
        "", path="dir", help="the folder of the examples' images (default: images/ beside examples.jsonl)"
    )


@dataclass(frozen=True)
class WinogroundExample:
    id: Any
    images: tuple[Path, Path] | None  # None: an image is absent (skipped, and counted in its groups)
    captions: tuple[str, str]
    groups: tuple[str, ...]  # "tag=Object", "secondary_tag=Symbolic", ...


class ImageNames:
    """Find `name` in `folder`: the file itself when the name has an image extension, else the one
    image whose name is `name` plus an image extension (the `prefer`red extensions first)."""

    def __init__(self, folder: Path, prefer: tuple[str, ...] = ("png",)) -> None:
        self.folder, self.prefer = folder, prefer
        self._by_stem: dict[str, list[str]] | None = None

    def _index(self) -> dict[str, list[str]]:
        if self._by_stem is None:
            self._by_stem = {}
            for f in sorted(p.name for p in self.folder.iterdir() if p.is_file()):
                stem, dot, ext = f.rpartition(".")
                if dot and stem and is_image_ext(ext):
                    self._by_stem.setdefault(stem, []).append(f)
        return self._by_stem

    def find(self, name: str) -> Path | None:
        ext = name.rpartition(".")[2] if "." in name else ""
        if ext and is_image_ext(ext):
            path = self.folder / name
            return path if path.is_file() else None
        found = self._index().get(name, [])
        found = sorted(found, key=lambda f: (f.rpartition(".")[2].lower() not in self.prefer, f))
        return self.folder / found[0] if found else None


def _group_name(value: str) -> str:
    # "/" separates a metric's row prefix from its key
    return value.strip().replace("/", "-")


def _groups(entry: dict) -> tuple[str, ...]:
    groups = [f"tag={_group_name(entry['tag'])}"]
    secondary = entry.get("secondary_tag")
    if isinstance(secondary, str):
        groups += [f"secondary_tag={_group_name(s)}" for s in secondary.split(",") if s.strip()]
    return tuple(groups)


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"expected a JSON object, got {type(entry).__name__}"
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        return f"missing field(s) {missing} (Winoground's examples.jsonl has {list(REQUIRED)})"
    for key in ("caption_0", "caption_1"):
        problem = caption_problem(entry[key])
        if problem:
            return f"{key}: {problem}"
    bad = [k for k in ("image_0", "image_1", "tag") if not isinstance(entry[k], str) or not entry[k].strip()]
    if bad:
        return f"field(s) {bad} must be non-empty strings"
    secondary = entry.get("secondary_tag")
    if secondary is not None and not isinstance(secondary, str):
        return f"secondary_tag must be a string, got {type(secondary).__name__}"
    return None


def examples_path(annotations: str) -> Path:
    path = Path(annotations)
    if not annotations:
        raise LiftError("winoground: annotations (examples.jsonl, or the folder holding it) is required")
    if path.is_dir():
        path = path / EXAMPLES_FILE
    if not path.is_file():
        raise LiftError(f"{path}: Winoground examples file not found (expected {EXAMPLES_FILE})")
    return path


def image_folder(images: str, annotations: Path, default: str) -> Path:
    folder = Path(images) if images else annotations.parent / default
    if not folder.is_dir():
        raise LiftError(f"{folder}: image folder not found" + ("" if images else "; name it with images"))
    return folder


def read_examples(path: Path, folder: Path, policy: ErrorPolicy) -> tuple[list[WinogroundExample], int]:
    """(the examples of `path`, the number of bad lines skipped); a bad line or an absent image goes
    through the policy (stop: a LiftError naming the line; skip: counted)."""
    names = ImageNames(folder)
    out: list[WinogroundExample] = []
    seen: set[str] = set()
    bad_lines = 0
    for number, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            entry, problem = None, f"not JSON ({e.msg})"
        else:
            problem = _entry_problem(entry)
        if problem is None and str(entry["id"]) in seen:
            problem = f"id {entry['id']!r} appears twice"
        if problem:
            policy.fail(f"{where}: {problem}")
            bad_lines += 1
            continue
        seen.add(str(entry["id"]))
        paths = [names.find(entry[k].strip()) for k in ("image_0", "image_1")]
        absent = [entry[k] for k, p in zip(("image_0", "image_1"), paths) if p is None]
        if absent:
            policy.fail(f"{where}: image(s) {absent} not found in {folder}")
        out.append(
            WinogroundExample(
                id=entry["id"],
                images=None if absent else (paths[0], paths[1]),
                captions=(entry["caption_0"].strip(), entry["caption_1"].strip()),
                groups=_groups(entry),
            )
        )
    if not out and not bad_lines:
        raise LiftError(f"{path}: no examples")
    return out, bad_lines


def read_heldout_ids(folder: Path) -> set[str] | None:
    """Example ids listed in `folder/heldout.json` (`{"ids": [...]}`, the synth world's), as strings."""
    ids = heldout_entries(folder, "ids")
    return None if ids is None else {str(i) for i in ids}


def winoground_scores(s: torch.Tensor) -> dict[str, torch.Tensor]:
    """s: Tensor[N, 2, 2] with s[n, c, i] = similarity of caption c and image i -> BoolTensor[N] per score."""
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def _percent(correct: torch.Tensor) -> float:
    return 100.0 * int(correct.sum()) / correct.numel()


def check_winoground(cfg: WinogroundConfig, policy: ErrorPolicy) -> None:
    """Every line readable and every image it names present, before any model runs."""
    path = examples_path(cfg.annotations)
    read_examples(path, image_folder(cfg.images, path, IMAGES_DIR), policy)
    read_heldout_ids(path.parent)


@register(
    "winoground",
    WinogroundConfig,
    help="Winoground's examples.jsonl: text, image and group scores, overall and per tag (strict)",
    columns=COLUMNS,
    check=check_winoground,
)
def evaluate_winoground(model: Any, cfg: WinogroundConfig, ctx: EvalContext) -> EvalResult:
    started = time.perf_counter()
    path = examples_path(cfg.annotations)
    folder = image_folder(cfg.images, path, IMAGES_DIR)
    examples, bad_lines = read_examples(path, folder, ctx.policy)
    heldout = read_heldout_ids(path.parent)

    present = [ex for ex in examples if ex.images is not None]
    texts = list(dict.fromkeys(c for ex in present for c in ex.captions))
    text_emb = ctx.texts(model, texts)  # texts first: a broken text side fails before the image work
    text_row = {t: i for i, t in enumerate(texts)}
    paths = list(dict.fromkeys(p for ex in present for p in ex.images))
    img_emb, ok = ctx.images(model, paths, "winoground images")
    image_row = {p: i for i, p in enumerate(paths)}

    keep = [ex.images is not None and all(ok[image_row[p]] for p in ex.images) for ex in examples]
    usable = [ex for ex, k in zip(examples, keep) if k]
    correct: dict[str, torch.Tensor] = {}
    if usable:
        img = img_emb[torch.tensor([[image_row[p] for p in ex.images] for ex in usable])]  # [N, 2 (image), D]
        txt = text_emb[
            torch.tensor([[text_row[c] for c in ex.captions] for ex in usable])
        ]  # [N, 2 (caption), D]
        correct = winoground_scores(torch.einsum("ncd,nid->nci", txt, img))

    members: dict[str, list[bool]] = {"": [True] * len(examples)}
    for group in sorted({g for ex in examples for g in ex.groups}):
        members[group] = [group in ex.groups for ex in examples]
    if heldout is not None:
        members["heldout"] = [str(ex.id) in heldout for ex in examples]
    metrics: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    kept = torch.tensor(keep, dtype=torch.bool)
    row_of = torch.cumsum(kept.long(), 0) - 1  # example -> its row among the usable ones
    for prefix, member in members.items():
        chosen = torch.tensor(member, dtype=torch.bool)
        rows = row_of[chosen & kept]
        skipped = int((chosen & ~kept).sum()) + (0 if prefix else bad_lines)
        counts[f"{prefix}/examples" if prefix else "examples"] = {"n": len(rows), "skipped": skipped}
        if len(rows):
            for score in SCORES:
                metrics[f"{prefix}/{score}" if prefix else score] = _percent(correct[score][rows])
    notes = {"unique_images": len(paths), "unique_texts": len(texts), "examples_file": str(path)}
    return make_result(
        "winoground", model, cfg, ctx, metrics=metrics, counts=counts, started=started, notes=notes
    )
