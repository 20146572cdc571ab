"""results.json of `lift demo`: every metric of every row (CLIP, LIFT as in the paper, LIFT+) per caption
regime, its mean and spread over the world seeds, and the paired differences with their intervals
(`lift.demo.stats`), beside the frozen encoder's own separation (`lift.demo.probes`).

    metrics[regime][row][metric] = {"mean", "std", "per_seed"}          in %
    paired[regime][f"{a}-{b}"][metric] = {"items": interval, "seeds": interval, "verdict": words}
    probe[regime][store] = the probe's figures, averaged over seeds
    shift[f"{a}-{b}"] = how the composition gap a - b moves from short to long captions (`regime_shift`)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lift.config import config_to_dict
from lift.demo.stats import mean_std, paired_bootstrap, seed_interval, verdict
from lift.evaluate.results import SUGARCREPE_SUBSETS

# metric -> (task, how to read it from that task's metrics); all in %
METRICS: dict[str, tuple[str, Callable[[dict], float | None]]] = {
    **{f"sugarcrepe/{t}": ("sugarcrepe", lambda m, t=t: m.get(t)) for t in SUGARCREPE_SUBSETS},
    "sugarcrepe/mean": ("sugarcrepe", lambda m: m.get("mean")),
    "zeroshot/top1": ("zeroshot", lambda m: m.get("top1")),
    "retrieval/i2t_R@1": ("retrieval", lambda m: m.get("i2t_R@1")),
    "retrieval/t2i_R@1": ("retrieval", lambda m: m.get("t2i_R@1")),
    "retrieval/R@1": ("retrieval", lambda m: _avg(m.get("i2t_R@1"), m.get("t2i_R@1"))),
    "heldout/sugarcrepe/mean": ("sugarcrepe", lambda m: m.get("heldout/mean")),
    "heldout/zeroshot/top1": ("zeroshot", lambda m: m.get("heldout/top1")),
    "heldout/retrieval/R@1": ("retrieval", lambda m: _avg(m.get("heldout/i2t_R@1"), m.get("heldout/t2i_R@1"))),
    "winoground/text": ("winoground", lambda m: m.get("text")),
    "winoground/image": ("winoground", lambda m: m.get("image")),
    "winoground/group": ("winoground", lambda m: m.get("group")),
    "mmvp/accuracy": ("mmvp", lambda m: m.get("accuracy")),
    "long-retrieval/R@1": ("long-retrieval", lambda m: _avg(m.get("i2t_R@1"), m.get("t2i_R@1"))),
}  # fmt: skip
# the metrics with per-item outcomes, paired item by item: metric -> (task, groups, held-out only?)
PAIRED: dict[str, tuple[str, tuple[str, ...], bool]] = {
    **{f"sugarcrepe/{t}": ("sugarcrepe", (t,), False) for t in SUGARCREPE_SUBSETS},
    "sugarcrepe/mean": ("sugarcrepe", SUGARCREPE_SUBSETS, False),
    "zeroshot/top1": ("zeroshot", ("top1",), False),
    "retrieval/R@1": ("retrieval", ("i2t_R@1", "t2i_R@1"), False),
    "heldout/sugarcrepe/mean": ("sugarcrepe", SUGARCREPE_SUBSETS, True),
    "heldout/zeroshot/top1": ("zeroshot", ("top1",), True),
    "heldout/retrieval/R@1": ("retrieval", ("i2t_R@1", "t2i_R@1"), True),
}
COMPARISONS = (("lift", "clip"), ("plus", "clip"), ("plus", "lift"))


def _avg(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (a + b) / 2


def heldout_items(world: Path) -> dict[str, dict[str, set[str]]]:
    """task -> group -> the ids of items that involve a held-out colour-shape pair (the world's
    heldout.json files), in the item ids the evaluators record."""
    from lift.errors import ErrorPolicy
    from lift.evaluate.formats import read_coco_captions

    sc = json.loads((world / "sugarcrepe" / "heldout.json").read_text())
    folders = set(json.loads((world / "zeroshot" / "heldout.json").read_text())["folders"])
    zs = {str(p.relative_to(world / "zeroshot")) for f in folders for p in (world / "zeroshot" / f).iterdir()}
    held_images = set(json.loads((world / "retrieval" / "heldout.json").read_text())["image_ids"])
    data = read_coco_captions(
        world / "retrieval" / "captions.json", world / "retrieval" / "images", ErrorPolicy()
    )
    return {
        "sugarcrepe": {t: {str(i) for i in ids} for t, ids in sc.items()},
        "zeroshot": {"top1": zs},
        "retrieval": {"i2t_R@1": {str(i) for i in held_images},
                      "t2i_R@1": {str(j) for j, i in enumerate(data.ids) if i in held_images}},
    }  # fmt: skip


def _items(evals: dict[str, dict], run: str, task: str, groups: tuple[str, ...], keep: dict | None) -> dict:
    items = (evals.get(run, {}).get(task) or {}).get("items") or {}
    out = {g: items[g] for g in groups if g in items}
    if keep is not None:
        out = {g: {i: v for i, v in out[g].items() if i in keep.get(g, set())} for g in out}
    return out


def collect_results(
    per_seed: dict[int, tuple[dict, dict, dict]], *, profile: Any, cfg: Any, seeds: list[int],
    timings: dict[str, float], plus: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """results.json's dict (see the module docstring) from each seed's (summaries, evals, probes)."""
    from lift.demo.pipeline import REGIMES

    out = Path(cfg.out)
    rows = {r: ["clip", "lift"] + (["plus"] if plus.get(r) else []) for r in REGIMES}
    metrics: dict[str, dict[str, dict]] = {}
    paired: dict[str, dict[str, dict]] = {}
    probe: dict[str, dict[str, dict]] = {}
    held = {s: heldout_items(out / f"seed-{s}" / "world") for s in seeds}
    for regime in REGIMES:
        for row in rows[regime]:
            run = f"{row}-{regime}"
            found: dict[str, list[float]] = {}
            for s in seeds:
                evals = per_seed[s][1]
                for name, (task, read) in METRICS.items():
                    value = read((evals.get(run, {}).get(task) or {}).get("metrics") or {})
                    if value is not None:
                        found.setdefault(name, []).append(value)
            metrics.setdefault(regime, {})[row] = {
                name: dict(zip(("mean", "std"), mean_std(v)), per_seed=v)
                for name, v in found.items() if len(v) == len(seeds)
            }  # fmt: skip
        for a, b in COMPARISONS:
            if a not in rows[regime] or b not in rows[regime]:
                continue
            comparison = {}
            for name, (task, groups, heldout) in PAIRED.items():
                items_a, items_b = (
                    [_items(per_seed[s][1], f"{x}-{regime}", task, groups, held[s][task] if heldout else None)
                     for s in seeds]
                    for x in (a, b)
                )  # fmt: skip
                if not all(items_a) or not all(items_b):
                    continue
                by_items = paired_bootstrap(items_a, items_b)
                diffs = [
                    x - y
                    for x, y in zip(
                        metrics[regime][a][name]["per_seed"], metrics[regime][b][name]["per_seed"]
                    )
                ]
                by_seeds = seed_interval(diffs)
                comparison[name] = {"items": by_items.to_dict(), "seeds": by_seeds.to_dict(),
                                    "verdict": verdict(by_items, by_seeds)}  # fmt: skip
            paired.setdefault(regime, {})[f"{a}-{b}"] = comparison
        stores = [regime] + ([plus[regime].store] if plus.get(regime) else [])
        probe[regime] = {store: _mean_probe([per_seed[s][2][store] for s in seeds]) for store in stores}
    return {
        "seeds": seeds,
        "rows": rows,
        "recipes": {
            r: (
                {"name": p.name, "recipe": p.recipe, "store": p.store, "text_adapter": p.text_adapter}
                if p
                else None
            )
            for r, p in plus.items()
        },  # fmt: skip
        "metrics": metrics,
        "paired": paired,
        "probe": probe,
        "shift": regime_shift(per_seed, seeds=seeds, rows=rows, metrics=metrics),
        "training": {str(s): per_seed[s][0] for s in seeds},
        "timings_s": timings,
        "config": {"demo": config_to_dict(cfg), "profile": dataclasses.asdict(profile)},
    }


SHIFT_METRIC = "sugarcrepe/mean"


def regime_shift(
    per_seed: dict[int, tuple[dict, dict, dict]], *, seeds: list[int], rows: dict[str, list[str]],
    metrics: dict[str, dict[str, dict]],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per comparison a - b present in both caption regimes: its SugarCrepe-style gap with short and
    with long captions, and the change long - short with a paired interval over items (both regimes
    are scored on the same test items: each item's (a - b) outcome with long captions against the
    same with short ones) and over seeds."""
    task, groups, _ = PAIRED[SHIFT_METRIC]
    shift: dict[str, dict[str, Any]] = {}
    for a, b in COMPARISONS:
        if not all(a in rows.get(r, []) and b in rows.get(r, []) for r in ("short", "long")):
            continue
        diff: dict[str, list[dict]] = {}
        for regime in ("short", "long"):
            diff[regime] = []
            for s in seeds:
                xa = _items(per_seed[s][1], f"{a}-{regime}", task, groups, None)
                xb = _items(per_seed[s][1], f"{b}-{regime}", task, groups, None)
                diff[regime].append(
                    {g: {i: xa[g][i] - xb[g][i] for i in xa[g] if i in xb.get(g, {})} for g in xa}
                )
        if not all(diff["short"]) or not all(diff["long"]):
            continue
        gaps = {
            r: [x - y for x, y in zip(metrics[r][a][SHIFT_METRIC]["per_seed"], metrics[r][b][SHIFT_METRIC]["per_seed"])]
            for r in ("short", "long")
        }  # fmt: skip
        by_items = paired_bootstrap(diff["long"], diff["short"])
        by_seeds = seed_interval([lg - sh for lg, sh in zip(gaps["long"], gaps["short"])])
        shift[f"{a}-{b}"] = {
            "metric": SHIFT_METRIC, "short": mean_std(gaps["short"])[0], "long": mean_std(gaps["long"])[0],
            "change": {"items": by_items.to_dict(), "seeds": by_seeds.to_dict(), "verdict": verdict(by_items, by_seeds)},
        }  # fmt: skip
    return shift


def _mean_probe(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """The probe's numbers averaged over seeds (each seed's world has its own test captions)."""
    n = len(figures)
    first = figures[0]
    return {
        "transform": first.get("transform"),
        "sugarcrepe": {
            t: {k: sum(f["sugarcrepe"][t][k] for f in figures) / n for k in ("close_pct", "mean_cos")}
            for t in first["sugarcrepe"]
        },  # fmt: skip
        "retrieval": {k: sum(f["retrieval"][k] for f in figures) / n for k in first["retrieval"]},
    }
