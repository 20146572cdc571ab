"""SugarCrepe++: does the model keep two differently worded true captions above a minimally changed
false one?

Reads the published release (github.com/Sri-Harsha/scpp `data/`, also huggingface.co/datasets/
Aman-J/SugarCrepe_pp): `DIR/{replace_att,replace_obj,replace_rel,swap_att,swap_obj}.json`, each a
JSON list of {"id", "filename" (a COCO val2017 image), "caption", "caption2", "negative_caption"}.
Scored as the official script (`VLMs/test_Variants_CLIP.py`) does, strictly (a tie is wrong):

- ITT, image-text task: right iff s(image, caption) > s(image, negative) and
  s(image, caption2) > s(image, negative); also reported alone as `itt_p1` and `itt_p2`.
- TOT, text-only task: right iff s(caption, caption2) > s(caption, negative) and
  s(caption, caption2) > s(caption2, negative) (also the rule of its `evaluate_ulms.py`).

TOT compares the text side alone: `model.encode_text`, which for a LIFT model is its frozen encoder
(through the run's text adapter or the store's transform, as everywhere) and for CLIP its text tower.
It needs no images: `tasks=["tot"]` (`--tasks tot`) runs without `images`. It is the same question
`lift probe` asks of a frozen encoder before any training (do the vectors keep the distinction?), here
with SugarCrepe++'s two positives.

Metrics: `<task>/<subset>` accuracy and `<task>/mean` (of the subset accuracies), task in itt,
itt_p1, itt_p2, tot; counts per `<task>/<subset>`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lift.config import read_json
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import register
from lift.evaluate.context import EvalContext, make_result
from lift.evaluate.formats import require_images, str_fields
from lift.evaluate.options import option
from lift.evaluate.results import EvalResult

SUBSETS = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")
HEADERS = ("RepO", "RepA", "RepR", "SwpO", "SwpA")
TASKS = ("itt", "tot")
TEXT_KEYS = ("caption", "caption2", "negative_caption")
COLUMNS = [*[(s, h, s) for s, h in zip(SUBSETS, HEADERS)], ("mean", "Mean", None)]


@dataclass
class SugarCrepePPConfig:
    annotations: str = option(
        "", required=True, path="dir", help="folder with replace_att.json ... swap_obj.json (SugarCrepe++)"
    )
    images: str = option(
        "", path="dir", help="the image folder the items' filenames refer to (COCO val2017); not needed "
        "with --tasks tot",
    )  # fmt: skip
    subsets: list[str] = option(
        default_factory=lambda: list(SUBSETS), choices=SUBSETS, help="evaluate only these subsets"
    )
    tasks: list[str] = option(
        default_factory=lambda: list(TASKS), choices=TASKS,
        help="itt: image-text (needs --images); tot: text-only, the text side alone",
    )  # fmt: skip


@dataclass(frozen=True)
class Triplet:
    id: str
    filename: str | None  # None when only the text-only task is run
    caption: str
    caption2: str
    negative_caption: str


def read_sugarcrepe_pp_file(path: Path, policy: ErrorPolicy, *, images: bool = True) -> list[Triplet]:
    """The items of one subset file; an item missing a key (or with an empty one) goes through `policy`."""
    data = read_json(path)
    if isinstance(data, dict):  # tolerated: SugarCrepe's {"0": {...}} layout
        entries = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        entries = [(str(e.get("id", i)) if isinstance(e, dict) else str(i), e) for i, e in enumerate(data)]
    else:
        raise LiftError(
            f"{path}: expected a JSON list of items (SugarCrepe++ layout), got {type(data).__name__}"
        )
    keys = (*TEXT_KEYS, "filename") if images else TEXT_KEYS
    items = []
    for item_id, entry in entries:
        fields = str_fields(entry, keys, f"{path}: item {item_id!r}", policy)
        if fields is not None:
            items.append(
                Triplet(id=item_id, filename=fields.get("filename"), **{k: fields[k] for k in TEXT_KEYS})
            )
    return items


def image_scores(
    img: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, neg: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Tensors [N, D] (normalised) -> BoolTensor[N] per ITT score; ties are wrong."""
    s1, s2, sn = (img * p1).sum(-1), (img * p2).sum(-1), (img * neg).sum(-1)
    return {"itt": (s1 > sn) & (s2 > sn), "itt_p1": s1 > sn, "itt_p2": s2 > sn}


def text_only_correct(p1: torch.Tensor, p2: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Tensors [N, D] (normalised) -> BoolTensor[N]: the positives closer to each other than either is
    to the negative; ties are wrong."""
    pp = (p1 * p2).sum(-1)
    return (pp > (p1 * neg).sum(-1)) & (pp > (p2 * neg).sum(-1))


def _load(cfg: SugarCrepePPConfig, policy: ErrorPolicy) -> tuple[dict[str, list[Triplet]], dict[str, int]]:
    with_images = "itt" in cfg.tasks
    if with_images and not cfg.images:
        raise LiftError("sugarcrepe-pp: the image-text task needs images= (--images DIR); or run --tasks tot")
    items, skipped = {}, {}
    for subset in cfg.subsets:
        path = Path(cfg.annotations) / f"{subset}.json"
        if not path.is_file():
            raise LiftError(
                f"{path}: SugarCrepe++ file not found (expected {subset}.json in {cfg.annotations})"
            )
        before = policy.skipped
        items[subset] = read_sugarcrepe_pp_file(path, policy, images=with_images)
        skipped[subset] = policy.skipped - before
    return items, skipped


def check_sugarcrepe_pp(cfg: SugarCrepePPConfig, policy: ErrorPolicy) -> None:
    """Every subset file readable and, for the image-text task, every image present."""
    items, _ = _load(cfg, policy)
    if "itt" in cfg.tasks:
        require_images([Path(cfg.images) / it.filename for group in items.values() for it in group], policy)


def _percent(correct: torch.Tensor) -> float:
    return 100.0 * int(correct.sum()) / correct.numel()


@register("sugarcrepe-pp", SugarCrepePPConfig, columns=COLUMNS, check=check_sugarcrepe_pp)
def evaluate_sugarcrepe_pp(model: Any, cfg: SugarCrepePPConfig, ctx: EvalContext) -> EvalResult:
    started = time.perf_counter()
    items, skipped = _load(cfg, ctx.policy)
    every = [it for subset in cfg.subsets for it in items[subset]]
    # Texts first: a broken text side fails before minutes of image work.
    texts = list(dict.fromkeys(t for it in every for t in (it.caption, it.caption2, it.negative_caption)))
    text_emb = ctx.texts(model, texts)
    row = {t: i for i, t in enumerate(texts)}

    def side(group: list[Triplet], key: str) -> torch.Tensor:
        return text_emb[[row[getattr(it, key)] for it in group]]

    scores: dict[str, dict[str, torch.Tensor]] = {}  # task -> subset -> BoolTensor over its usable items
    counts: dict[str, dict[str, int]] = {}
    if "itt" in cfg.tasks:
        filenames = list(dict.fromkeys(it.filename for it in every))
        image_row = {f: i for i, f in enumerate(filenames)}
        img_emb, ok = ctx.images(model, [Path(cfg.images) / f for f in filenames], "sugarcrepe++ images")
        for subset in cfg.subsets:
            usable = [it for it in items[subset] if ok[image_row[it.filename]]]
            n_skipped = len(items[subset]) - len(usable) + skipped[subset]
            img = img_emb[[image_row[it.filename] for it in usable]]
            for task, correct in image_scores(
                img, side(usable, "caption"), side(usable, "caption2"), side(usable, "negative_caption")
            ).items():
                scores.setdefault(task, {})[subset] = correct
                counts[f"{task}/{subset}"] = {"n": len(usable), "skipped": n_skipped}
    if "tot" in cfg.tasks:
        for subset in cfg.subsets:
            group = items[subset]
            scores.setdefault("tot", {})[subset] = text_only_correct(
                side(group, "caption"), side(group, "caption2"), side(group, "negative_caption")
            )
            counts[f"tot/{subset}"] = {"n": len(group), "skipped": skipped[subset]}
    metrics: dict[str, float] = {}
    for task, by_subset in scores.items():
        accs = [_percent(c) for c in by_subset.values() if c.numel()]
        metrics.update({f"{task}/{s}": _percent(c) for s, c in by_subset.items() if c.numel()})
        if accs:
            metrics[f"{task}/mean"] = sum(accs) / len(accs)  # of the subset accuracies, as for SugarCrepe
    notes = {"unique_texts": len(texts), "tasks": list(cfg.tasks)}
    return make_result(
        "sugarcrepe-pp", model, cfg, ctx, metrics=metrics, counts=counts, started=started, notes=notes
    )
