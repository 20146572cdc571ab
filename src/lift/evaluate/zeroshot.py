"""Zero-shot classification over an ImageFolder tree: each class is a text prompt (or the
normalised mean of a template ensemble), each image is assigned the class it scores highest.

Metrics: top-1, top-5 and mean per-class recall (top-1), in percent; a tie with the true class counts
as a miss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import register
from lift.evaluate.context import EvalContext, make_result
from lift.evaluate.formats import read_heldout_folders, read_imagefolder, read_templates
from lift.evaluate.options import option
from lift.evaluate.ranking import chunked_ranks, percent
from lift.evaluate.results import EvalResult

DEFAULT_TEMPLATE = "It is a photo of a {label}"  # the paper's single prompt
COLUMNS = [("top1", "top-1", "images"), ("top5", "top-5", "images"), ("mean_recall", "mean recall", "images")]


@dataclass
class ZeroShotConfig:
    images: str = option("", required=True, path="dir", help="ImageFolder root: one folder per class")
    classnames: str | None = option(
        None, path="file", help="txt (one name per line, folder order) or imagenet_class_index.json"
    )
    # a string (a flag's value, a suite file's) names a file of templates, read into the list
    templates: list[str] = option(
        default_factory=lambda: [DEFAULT_TEMPLATE], convert=read_templates, path="file", metavar="FILE",
        help="prompt templates file ({label} placeholder), one per line, or a JSON list",
    )  # fmt: skip


def fill(template: str, label: str) -> str:
    """The prompt for `label`: `{label}` (ours), `{c}` (clip_benchmark's) or `{}` (open_clip's) replaced."""
    return template.replace("{label}", label).replace("{c}", label).replace("{}", label)


def class_embeddings(
    model: Any, classnames: list[str], templates: list[str], ctx: EvalContext
) -> torch.Tensor:
    """Tensor[C, D]: per class, the mean of its normalised prompt embeddings, renormalised."""
    prompts = [fill(t, c) for c in classnames for t in templates]
    emb = ctx.texts(model, prompts)
    emb = emb.view(len(classnames), len(templates), -1)  # [C, T, D]
    return F.normalize(emb.mean(dim=1), dim=-1)


def classification_metrics(ranks: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict[str, float]:
    """ranks: LongTensor[N] (0 = correct at top-1), labels: LongTensor[N] -> percent metrics."""
    hit1 = (ranks < 1).double()
    per_class = torch.zeros(n_classes, dtype=torch.float64).index_add_(0, labels, hit1)
    support = torch.bincount(labels, minlength=n_classes).double()
    present = support > 0
    return {
        "top1": percent(ranks < 1),
        "top5": percent(ranks < min(5, n_classes)),
        "mean_recall": 100.0 * (per_class[present] / support[present]).mean().item(),
    }


def check_zeroshot(cfg: ZeroShotConfig, policy: ErrorPolicy) -> None:
    """Templates, class folders and class names readable, before any model runs."""
    if not cfg.templates:
        raise LiftError("zero-shot needs at least one prompt template")
    read_imagefolder(cfg.images, cfg.classnames, policy)


@register("zeroshot", ZeroShotConfig, columns=COLUMNS, check=check_zeroshot)
def evaluate_zeroshot(model: Any, cfg: ZeroShotConfig, ctx: EvalContext) -> EvalResult:
    started = time.perf_counter()
    if not cfg.templates:
        raise LiftError("zero-shot needs at least one prompt template")
    data = read_imagefolder(cfg.images, cfg.classnames, ctx.policy)
    weights = class_embeddings(model, data.classnames, cfg.templates, ctx)
    paths = [p for p, _ in data.samples]
    labels = torch.tensor([y for _, y in data.samples], dtype=torch.long)
    img, ok = ctx.images(model, paths, "zero-shot images")
    img, labels = img[ok], labels[ok]
    n_classes = len(data.folders)
    counts = {
        "images": {"n": len(labels), "skipped": int((~ok).sum())},
        "classes": {"n": int(torch.unique(labels).numel()), "skipped": len(data.empty)},
    }
    metrics: dict[str, float] = {}
    outcomes: dict[str, dict[str, int]] = {}
    if len(labels):
        ranks = chunked_ranks(img, weights, labels)
        metrics.update(classification_metrics(ranks, labels, n_classes))
        kept_paths = [p for p, k in zip(paths, ok.tolist()) if k]
        outcomes["top1"] = {
            str(p.relative_to(data.root)): int(r < 1) for p, r in zip(kept_paths, ranks.tolist())
        }
        held = read_heldout_folders(cfg.images, data.folders)
        if held is not None:
            # Images of classes whose (colour, shape) pair never appeared in training (synth world),
            # still classified among all classes.
            mask = torch.isin(labels, torch.tensor(held, dtype=torch.long))
            counts["heldout/images"] = {"n": int(mask.sum()), "skipped": 0}
            if mask.any():
                sub = classification_metrics(ranks[mask], labels[mask], n_classes)
                metrics.update({f"heldout/{k}": v for k, v in sub.items()})
    notes = {"classes": n_classes, "templates": len(cfg.templates)}
    return make_result(
        "zeroshot", model, cfg, ctx, metrics=metrics, counts=counts, started=started, notes=notes,
        items=outcomes,
    )  # fmt: skip
