"""The demo report's sentences, built from results.json (`lift.demo.results`): which seeds ran, which
rows are compared, and per caption regime what the paired differences say and how sure they are.

Honesty rules: a difference keeps its sign however small (-0.03 is never printed as 0.0 or +0.0);
"tied" only for an estimate of exactly 0; a difference is "distinguishable from zero" only when its
95% interval over test items excludes zero and, with two seeds or more, its interval over seeds too;
a single seed is always labelled as such.
"""

from __future__ import annotations

from typing import Any

ROW = {"clip": "CLIP", "lift": "LIFT", "plus": "LIFT+"}
ROW_ABOUT = {
    "clip": "image and text towers trained from scratch on the raw captions",
    "lift": "as in the paper, the image tower trained against the frozen encoder's stored caption vectors",
}
HEADLINE = (
    "sugarcrepe/mean",
    "zeroshot/top1",
    "retrieval/R@1",
    "heldout/sugarcrepe/mean",
    "heldout/zeroshot/top1",
    "heldout/retrieval/R@1",
)
LABEL = {
    "sugarcrepe/mean": "SugarCrepe-style mean",
    "zeroshot/top1": "zero-shot top-1",
    "retrieval/i2t_R@1": "image->text R@1",
    "retrieval/t2i_R@1": "text->image R@1",
    "retrieval/R@1": "retrieval R@1",
    "heldout/sugarcrepe/mean": "held-out pairs, SugarCrepe-style mean",
    "heldout/zeroshot/top1": "held-out pairs, zero-shot top-1",
    "heldout/retrieval/R@1": "held-out pairs, retrieval R@1",
    "winoground/text": "Winoground text",
    "winoground/image": "Winoground image",
    "winoground/group": "Winoground group",
    "mmvp/accuracy": "MMVP-style pair accuracy",
    "long-retrieval/R@1": "long-caption retrieval R@1",
}


def label(metric: str) -> str:
    """A metric's name in words (`sugarcrepe/add_obj` -> "SugarCrepe-style add_obj")."""
    if metric in LABEL:
        return LABEL[metric]
    return "SugarCrepe-style " + metric.split("/", 1)[1] if metric.startswith("sugarcrepe/") else metric


def comparison_label(comparison: str) -> str:
    """`lift-clip` -> "LIFT − CLIP"."""
    a, b = comparison.split("-")
    return f"{ROW[a]} − {ROW[b]}"


def signed(x: float) -> str:
    """A difference in points with its sign; a small non-zero one keeps two decimals so it never reads
    as 0 (or as the other sign), and exactly 0 is "0.0"."""
    if x == 0:
        return "0.0"
    return f"{x:+.2f}" if abs(x) < 0.05 else f"{x:+.1f}"


def value(x: float) -> str:
    return f"{x:.1f}"


def bounds(iv: dict[str, Any]) -> str | None:
    """ "[low, high]" of an interval dict, None when it was not measured."""
    if iv.get("low") is None or iv.get("high") is None:
        return None
    return f"[{signed(iv['low'])}, {signed(iv['high'])}]"


def excludes_zero(iv: dict[str, Any]) -> bool:
    return iv.get("low") is not None and iv.get("high") is not None and (iv["low"] > 0 or iv["high"] < 0)


def evidence(entry: dict[str, Any]) -> str:
    """ "distinguishable" (items and, with several seeds, seeds), "items only" (one seed, or not across
    seeds) or "not distinguishable": from the intervals themselves, not from the verdict's wording."""
    if not excludes_zero(entry["items"]):
        return "not distinguishable"
    seeds = entry["seeds"]
    if seeds.get("low") is None or not excludes_zero(seeds):
        return "items only"
    return "distinguishable"


def who(comparison: str, estimate: float) -> str:
    """Who is ahead by the point estimate; "tied" only when it is exactly 0."""
    a, b = (ROW[r] for r in comparison.split("-"))
    if estimate == 0:
        return f"{a} tied {b}"
    return f"{a} ahead" if estimate > 0 else f"{b} ahead"


def seed_names(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"world seed {seeds[0]}"
    return "world seeds " + ", ".join(map(str, seeds[:-1])) + f" and {seeds[-1]}"


def opening(results: dict[str, Any], *, tuning_seeds: tuple[int, ...]) -> list[str]:
    """The first paragraphs: the seeds that ran, what is held equal, and the rows compared."""
    seeds, profile = results["seeds"], results["config"]["profile"]
    tuned = " and ".join(map(str, tuning_seeds))
    these = "this one" if len(seeds) == 1 else "these"
    first = (
        f"**{seed_names(seeds).capitalize()}** of the synthetic compositional world (profile "
        f"`{results['config']['demo']['profile']}`); the settings were tuned on seeds {tuned}, never on {these}."
    )
    if len(seeds) == 1:
        first += (
            " **One seed: training noise is not measured**, so every difference below is judged on its "
            "test items only (`lift demo --seeds 3` adds intervals over seeds)."
        )
    same = (
        f"Every row: the same vision tower ({profile['model']}), data order and budget "
        f"({profile['epochs']:g} epochs of {profile['train_size']} images, batch {profile['batch_size']}); each "
        "its own learning rate and initial temperature, tuned on the tuning seeds. "
        + (
            "Numbers are % (mean ± standard deviation over seeds); differences are in points, with 95% "
            "intervals over test items (paired bootstrap) and over seeds (Student t)."
            if len(seeds) > 1
            else "Numbers are % (one seed: no spread); differences are in points, with 95% intervals over test "
            "items (paired bootstrap)."
        )
    )
    rows = [f"**{ROW['clip']}**: {ROW_ABOUT['clip']}.", f"**{ROW['lift']}**: {ROW_ABOUT['lift']}."]
    for regime, recipe in results["recipes"].items():
        if recipe:
            rows.append(
                f"**{ROW['plus']}** with {regime} captions: {recipe['recipe']} (variant `{recipe['name']}`), "
                "the best variant on the tuning seeds, tuned there, at the same tower, data and budget."
            )
        else:
            rows.append(
                f"No {ROW['plus']} with {regime} captions: no variant beat the paper's recipe on the tuning "
                "seeds, so only the paper's recipe is shown."
            )
    return [first, same, "Rows: " + " ".join(rows)]


def difference(comparison: str, metric: str, entry: dict[str, Any]) -> str:
    """One paired difference in words, with both intervals and the verdict."""
    est = entry["items"]["estimate"]
    items = bounds(entry["items"]) or "not measured"
    seeds = bounds(entry["seeds"])
    over_seeds = f", over seeds {seeds}" if seeds else " (one seed: training noise not measured)"
    return (
        f"{label(metric)}: {comparison_label(comparison)} = {signed(est)} points ({who(comparison, est)}); "
        f"95% interval over test items {items}{over_seeds}: {entry['verdict']}."
    )


def summary(comparison: str, entries: dict[str, dict[str, Any]], metrics: tuple[str, ...]) -> str:
    """Which of `metrics` are distinguishable from zero (and in whose favour) and which are not."""
    groups: dict[str, list[str]] = {"distinguishable": [], "items only": [], "not distinguishable": []}
    for metric in metrics:
        if metric in entries:
            entry = entries[metric]
            est = entry["items"]["estimate"]
            name = label(metric)
            if evidence(entry) != "not distinguishable":
                name += f" ({who(comparison, est)}, {signed(est)})"
            groups[evidence(entry)].append(name)
    one_seed = any(entries[m]["seeds"].get("low") is None for m in metrics if m in entries)
    parts = []
    if groups["distinguishable"]:
        parts.append("Distinguishable from zero: " + "; ".join(groups["distinguishable"]))
    if groups["items only"]:
        why = "only (one seed: training noise not measured)" if one_seed else "but not across seeds"
        parts.append(f"Distinguishable on these test items {why}: " + "; ".join(groups["items only"]))
    if groups["not distinguishable"]:
        parts.append("Not distinguishable from zero: " + "; ".join(groups["not distinguishable"]))
    return f"**{comparison_label(comparison)}:** " + ". ".join(parts) + "."


def headline(results: dict[str, Any]) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """Per caption regime: (title, per comparison (the summary line, one line per headline metric))."""
    out = []
    for regime, comparisons in results["paired"].items():
        parts = [
            (summary(c, entries, HEADLINE), [difference(c, m, entries[m]) for m in HEADLINE if m in entries])
            for c, entries in comparisons.items()
            if entries
        ]
        out.append((f"{regime.capitalize()} captions", parts))
    return out


def shift_lines(results: dict[str, Any]) -> list[str]:
    """How each composition gap moves from short to long captions, with its uncertainty."""
    lines = []
    for comparison, s in (results.get("shift") or {}).items():
        change = s["change"]
        est = change["items"]["estimate"]
        a, b = (ROW[r] for r in comparison.split("-"))
        way = "does not move" if est == 0 else f"moves {signed(est)} points toward {a if est > 0 else b}"
        items = bounds(change["items"]) or "not measured"
        seeds = bounds(change["seeds"])
        over_seeds = f", over seeds {seeds}" if seeds else "; one seed: training noise not measured"
        lines.append(
            f"Short -> long captions, {comparison_label(comparison)} on the {label(s['metric'])}: the gap goes "
            f"from {signed(s['short'])} to {signed(s['long'])} points, so it {way} (95% interval over test "
            f"items {items}{over_seeds}): {change['verdict']}."
        )
    return lines
