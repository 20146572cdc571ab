"""SugarCrepe: does the model score the true caption above a minimally changed false one?

Correct iff score(image, positive) > score(image, negative), strictly: a tie is wrong, as in the
official script. Unlike the reference (one image and one caption per forward pass, exceptions
silently counted as wrong), every distinct image and caption is embedded once, in batches, and a
bad item is an error or a counted skip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import register
from lift.evaluate.context import EvalContext, make_result
from lift.evaluate.formats import SugarCrepeItem, read_heldout, read_sugarcrepe_file, require_images
from lift.evaluate.options import option
from lift.evaluate.results import SUGARCREPE_SUBSETS, EvalResult

HEADERS = ("AddO", "AddA", "RepO", "RepA", "RepR", "SwpO", "SwpA")  # the paper's table
COLUMNS = [*[(s, h, s) for s, h in zip(SUGARCREPE_SUBSETS, HEADERS)], ("mean", "Mean", None)]


@dataclass
class SugarCrepeConfig:
    annotations: str = option(
        "", required=True, path="dir", help="folder with add_obj.json ... swap_att.json"
    )
    images: str = option("", required=True, path="dir", help="image folder the items' filenames refer to")
    subsets: list[str] = option(
        default_factory=lambda: list(SUGARCREPE_SUBSETS), choices=SUGARCREPE_SUBSETS,
        help="evaluate only these subsets",
    )  # fmt: skip


def pair_correct(img: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """img, pos, neg: Tensor[N, D] (normalised) -> BoolTensor[N]; ties are wrong."""
    return (img * pos).sum(-1) > (img * neg).sum(-1)


def _accuracy(correct: torch.Tensor) -> float:
    # Exact count / total in double precision: the same number any other correct script prints.
    return 100.0 * int(correct.sum()) / correct.numel()


def _load_items(
    cfg: SugarCrepeConfig, policy: ErrorPolicy
) -> tuple[dict[str, list[SugarCrepeItem]], dict[str, int]]:
    unknown = [s for s in cfg.subsets if s not in SUGARCREPE_SUBSETS]
    if unknown:
        raise LiftError(f"unknown SugarCrepe subset(s) {unknown}; known: {list(SUGARCREPE_SUBSETS)}")
    items, skipped = {}, {}
    for subset in cfg.subsets:
        path = Path(cfg.annotations) / f"{subset}.json"
        if not path.is_file():
            raise LiftError(
                f"{path}: SugarCrepe file not found (expected {subset}.json in {cfg.annotations})"
            )
        before = policy.skipped
        items[subset] = read_sugarcrepe_file(path, policy)
        skipped[subset] = policy.skipped - before
    return items, skipped


def check_sugarcrepe(cfg: SugarCrepeConfig, policy: ErrorPolicy) -> None:
    """Every subset file readable and every image it names present, before any model runs."""
    items, _ = _load_items(cfg, policy)
    require_images([Path(cfg.images) / it.filename for group in items.values() for it in group], policy)


@register("sugarcrepe", SugarCrepeConfig, columns=COLUMNS, check=check_sugarcrepe)
def evaluate_sugarcrepe(model: Any, cfg: SugarCrepeConfig, ctx: EvalContext) -> EvalResult:
    started = time.perf_counter()
    items, skipped = _load_items(cfg, ctx.policy)
    all_items = [it for subset in cfg.subsets for it in items[subset]]
    filenames = list(dict.fromkeys(it.filename for it in all_items))
    image_row = {f: i for i, f in enumerate(filenames)}
    # Texts first: a broken text side fails before minutes of image work.
    texts = list(dict.fromkeys(t for it in all_items for t in (it.caption, it.negative_caption)))
    text_emb = ctx.texts(model, texts)
    text_row = {t: i for i, t in enumerate(texts)}
    img_emb, ok = ctx.images(model, [Path(cfg.images) / f for f in filenames], "sugarcrepe images")

    heldout = read_heldout(cfg.annotations)
    metrics: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    groups = [("", None)] + ([("heldout/", heldout)] if heldout is not None else [])
    outcomes: dict[str, dict[str, int]] = {}
    for prefix, keep in groups:
        accs = []
        for subset in cfg.subsets:
            chosen = [it for it in items[subset] if keep is None or it.id in keep.get(subset, ())]
            usable = [it for it in chosen if ok[image_row[it.filename]]]
            n_skipped = len(chosen) - len(usable) + (skipped[subset] if keep is None else 0)
            counts[prefix + subset] = {"n": len(usable), "skipped": n_skipped}
            if not usable:
                continue
            correct = pair_correct(
                img_emb[[image_row[it.filename] for it in usable]],
                text_emb[[text_row[it.caption] for it in usable]],
                text_emb[[text_row[it.negative_caption] for it in usable]],
            )
            metrics[prefix + subset] = _accuracy(correct)
            if not prefix:
                outcomes[subset] = {it.id: int(c) for it, c in zip(usable, correct.tolist())}
            accs.append(metrics[prefix + subset])
        if accs:
            # The paper's mean: of the subset accuracies, not of the pooled pairs.
            metrics[prefix + "mean"] = sum(accs) / len(accs)
    notes = {"unique_images": len(filenames), "unique_texts": len(texts)}
    return make_result(
        "sugarcrepe", model, cfg, ctx, metrics=metrics, counts=counts, started=started, notes=notes,
        items=outcomes,
    )  # fmt: skip
