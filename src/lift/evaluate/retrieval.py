"""Image-text retrieval (COCO captions, Flickr30K): Recall@1/5/10 in both directions.

Protocols:
- `first-caption` (the paper's): each image with its first caption only, a 1-to-1 gallery.
- `all-captions` (the standard one): image->text is a hit if any of the image's captions is in
  the top k; text->image ranks every caption's image.
A tie with the ground truth counts as a miss.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import register
from lift.evaluate.context import EvalContext, make_result
from lift.evaluate.formats import (
    RetrievalData,
    read_coco_captions,
    read_flickr_csv,
    read_heldout_image_ids,
    require_images,
)
from lift.evaluate.options import option
from lift.evaluate.ranking import chunked_ranks, recall_at
from lift.evaluate.results import EvalResult

KS = (1, 5, 10)
FORMATS = {
    "coco": lambda cfg, policy: read_coco_captions(cfg.annotations, cfg.images, policy),
    "flickr": lambda cfg, policy: read_flickr_csv(cfg.annotations, cfg.images, cfg.split, policy),
}
PROTOCOLS = ("first-caption", "all-captions")
COLUMNS = [
    *[(f"i2t_R@{k}", f"I2T R@{k}", "images") for k in KS],
    *[(f"t2i_R@{k}", f"T2I R@{k}", "texts") for k in KS],
]


@dataclass
class RetrievalConfig:
    images: str = option("", required=True, path="dir", help="image folder")
    annotations: str = option(
        "", required=True, path="file", help="COCO captions JSON or flickr_annotations_30k.csv"
    )
    # None: read from the annotations file's name, the same rule for the library and the command line
    format: str | None = option(
        None, choices=sorted(FORMATS), help="the annotations' layout (default: flickr for a .csv, else coco)"
    )
    protocol: str = option(
        PROTOCOLS[0], choices=PROTOCOLS,
        help="first-caption: the paper's (each image's first caption); all-captions: the standard one",
    )  # fmt: skip
    split: str | None = option("test", help="Flickr30K's split column value (COCO's split is its file)")


def resolve_format(cfg: RetrievalConfig) -> RetrievalConfig:
    """`cfg` with its format decided: as given, else flickr for a `.csv` annotations file, else coco."""
    if cfg.format is not None:
        return cfg
    return dataclasses.replace(cfg, format="flickr" if str(cfg.annotations).endswith(".csv") else "coco")


def gallery(data: RetrievalData, protocol: str) -> tuple[list[str], torch.Tensor, list[torch.Tensor]]:
    """-> texts, text_to_image LongTensor[T], image_to_texts (LongTensor per image)."""
    texts: list[str] = []
    owner: list[int] = []
    per_image: list[torch.Tensor] = []
    for i, caps in enumerate(data.captions):
        caps = caps[:1] if protocol == "first-caption" else caps
        per_image.append(torch.arange(len(texts), len(texts) + len(caps)))
        texts += caps
        owner += [i] * len(caps)
    return texts, torch.tensor(owner, dtype=torch.long), per_image


def _recalls(i2t_ranks: torch.Tensor, t2i_ranks: torch.Tensor) -> dict[str, float]:
    i2t, t2i = recall_at(i2t_ranks, KS), recall_at(t2i_ranks, KS)
    return {**{f"i2t_R@{k}": v for k, v in i2t.items()}, **{f"t2i_R@{k}": v for k, v in t2i.items()}}


def retrieval_metrics(
    img: torch.Tensor,
    txt: torch.Tensor,
    text_to_image: torch.Tensor,
    image_to_texts: list[torch.Tensor],
    heldout: torch.Tensor | None = None,
    ranks: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """img: Tensor[N, D], txt: Tensor[T, D] (normalised) -> i2t_R@k and t2i_R@k in percent.

    heldout: BoolTensor[N] marking images with held-out concepts; their queries (the images and
    their captions, still ranked against the whole gallery) are also reported as `heldout/...`.
    ranks: filled with each query's rank ("i2t": [N], "t2i": [T]) when given.
    """
    i2t = chunked_ranks(img, txt, image_to_texts)
    t2i = chunked_ranks(txt, img, text_to_image)
    if ranks is not None:
        ranks.update(i2t=i2t, t2i=t2i)
    metrics = _recalls(i2t, t2i)
    if heldout is not None and heldout.any():
        sub = _recalls(i2t[heldout], t2i[heldout[text_to_image]])
        metrics.update({f"heldout/{k}": v for k, v in sub.items()})
    return metrics


def rank_gallery(
    model: Any,
    data: RetrievalData,
    ctx: EvalContext,
    *,
    protocol: str = "first-caption",
    parse_skipped: int = 0,
    heldout_ids: set | None = None,
    desc: str = "retrieval images",
    outcomes: dict[str, dict[str, int]] | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, int]], list[str]]:
    """Embed `data`'s captions and images and rank them both ways -> (metrics, counts, the captions used).

    parse_skipped: entries the reader skipped (the error policy counted them); those that were captions
    (`data.skipped_captions`) are counted with the texts, the rest with the images.
    """
    all_texts, all_owner, _ = gallery(data, protocol)
    # Texts first: a broken text side fails before minutes of image work.
    all_txt = ctx.texts(model, all_texts)
    img, ok = ctx.images(model, data.images, desc)
    # An image that could not be read leaves the gallery together with its captions.
    kept = RetrievalData(
        images=[p for p, k in zip(data.images, ok) if k],
        captions=[c for c, k in zip(data.captions, ok) if k],
        ids=[i for i, k in zip(data.ids, ok) if k],
    )
    texts, text_to_image, image_to_texts = gallery(kept, protocol)
    counts = {
        "images": {
            "n": len(kept.images),
            "skipped": int((~ok).sum()) + parse_skipped - data.skipped_captions,
        },
        "texts": {"n": len(texts), "skipped": len(all_texts) - len(texts) + data.skipped_captions},
    }
    metrics: dict[str, float] = {}
    ranks: dict[str, torch.Tensor] = {}
    if texts:
        heldout = None
        if heldout_ids is not None:
            heldout = torch.tensor([i in heldout_ids for i in kept.ids], dtype=torch.bool)
            counts["heldout/images"] = {"n": int(heldout.sum()), "skipped": 0}
            counts["heldout/texts"] = {"n": int(heldout[text_to_image].sum()), "skipped": 0}
        metrics = retrieval_metrics(img[ok], all_txt[ok[all_owner]], text_to_image, image_to_texts, heldout,
                                    ranks=ranks)  # fmt: skip
    if outcomes is not None and ranks:  # R@1 per query: each image, each caption (by its gallery row)
        outcomes["i2t_R@1"] = {str(i): int(r < 1) for i, r in zip(kept.ids, ranks["i2t"].tolist())}
        outcomes["t2i_R@1"] = {str(j): int(r < 1) for j, r in enumerate(ranks["t2i"].tolist())}
    return metrics, counts, texts


def _read(cfg: RetrievalConfig, policy: ErrorPolicy) -> RetrievalData:
    if cfg.format not in FORMATS:
        raise LiftError(f"unknown retrieval format {cfg.format!r}; known: {sorted(FORMATS)}")
    if cfg.protocol not in PROTOCOLS:
        raise LiftError(f"unknown retrieval protocol {cfg.protocol!r}; known: {list(PROTOCOLS)}")
    return FORMATS[cfg.format](cfg, policy)


def check_retrieval(cfg: RetrievalConfig, policy: ErrorPolicy) -> None:
    """The annotations readable and every image they name present, before any model runs."""
    require_images(_read(resolve_format(cfg), policy).images, policy)


@register("retrieval", RetrievalConfig, columns=COLUMNS, check=check_retrieval)
def evaluate_retrieval(model: Any, cfg: RetrievalConfig, ctx: EvalContext) -> EvalResult:
    started = time.perf_counter()
    cfg = resolve_format(cfg)
    before = ctx.policy.skipped
    data = _read(cfg, ctx.policy)
    outcomes: dict[str, dict[str, int]] = {}
    metrics, counts, _ = rank_gallery(
        model, data, ctx, protocol=cfg.protocol, parse_skipped=ctx.policy.skipped - before,
        heldout_ids=read_heldout_image_ids(cfg.annotations), outcomes=outcomes,
    )  # fmt: skip
    return make_result(
        "retrieval", model, cfg, ctx, metrics=metrics, counts=counts, started=started, items=outcomes
    )
