"""The demo report's tables, each a (header, rows) of strings, from results.json (`lift.demo.results`).

A metric cell is "mean ± std" over seeds (just the value with one seed); a difference cell is the
paired estimate with its 95% interval over test items and, with several seeds, over seeds.
"""

from __future__ import annotations

from typing import Any

from lift.demo.report_words import ROW, bounds, comparison_label, label, signed, value
from lift.evaluate.results import SUGARCREPE_SUBSETS

Table = tuple[list[str], list[list[str]]]
ZS_RETRIEVAL = ("zeroshot/top1", "retrieval/i2t_R@1", "retrieval/t2i_R@1", "retrieval/R@1")
HELDOUT = ("heldout/sugarcrepe/mean", "heldout/zeroshot/top1", "heldout/retrieval/R@1")
BREADTH = ("winoground/text", "winoground/image", "winoground/group", "mmvp/accuracy", "long-retrieval/R@1")


def diff_note(seeds: list[int]) -> str:
    over_seeds = " / [95% over seeds]" if len(seeds) > 1 else " (one seed: no interval over seeds)"
    return "Differences: estimate [95% over test items]" + over_seeds


def mean_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "–"
    return (
        value(entry["mean"]) if entry.get("std") is None else f"{value(entry['mean'])} ± {entry['std']:.1f}"
    )


def diff_cell(entry: dict[str, Any] | None) -> str:
    """ "+1.2 [-0.5, +3.0] / [-2.1, +4.4]": estimate, interval over items, over seeds (when measured)."""
    if entry is None:
        return "–"
    text = signed(entry["items"]["estimate"])
    for iv in (entry["items"], entry["seeds"]):
        b = bounds(iv)
        if b:
            text += (" " if text[-1] != "]" else " / ") + b
    return text


def _rows(results: dict[str, Any], regime: str) -> list[str]:
    return results["rows"][regime]


def _plus_store(results: dict[str, Any], regime: str) -> str | None:
    """LIFT+'s store when it is not the regime's own (a transformed or re-embedded one)."""
    recipe = (results.get("recipes") or {}).get(regime)
    store = recipe and recipe.get("store")
    return store if store and store != regime else None


def sugarcrepe_table(results: dict[str, Any], regime: str) -> Table:
    """Per task: the frozen encoder's own separation of that task's positive and negative captions (per
    store the LIFT rows trained on), then each row's accuracy and the paired differences."""
    rows, metrics = _rows(results, regime), results["metrics"][regime]
    paired = results["paired"].get(regime, {})
    probe = results["probe"][regime]
    plus_store = _plus_store(results, regime)
    stores = [regime, plus_store] if plus_store else [regime]
    header = ["task"]
    for store in stores:
        who = "LIFT+'s" if store == plus_store else "LIFT's"
        header += [f"frozen encoder ({who} store `{store}`): pairs closer than cos 0.99, %", "their mean cos"]
    header += [*(ROW[r] for r in rows), *(comparison_label(c) for c in paired)]
    table = []
    for task in (*SUGARCREPE_SUBSETS, "mean"):
        metric = f"sugarcrepe/{task}"
        cells = [task]
        for store in stores:
            figures = probe[store]["sugarcrepe"]
            if task == "mean":
                n = len(figures)
                close = sum(f["close_pct"] for f in figures.values()) / n if n else None
                cos = sum(f["mean_cos"] for f in figures.values()) / n if n else None
            else:
                close = figures.get(task, {}).get("close_pct")
                cos = figures.get(task, {}).get("mean_cos")
            cells += ["–" if close is None else value(close), "–" if cos is None else f"{cos:.3f}"]
        cells += [mean_cell(metrics[r].get(metric)) for r in rows]
        cells += [diff_cell(paired[c].get(metric)) for c in paired]
        table.append(cells)
    return header, table


def _metric_table(results: dict[str, Any], metrics: tuple[str, ...], *, diffs: bool) -> Table:
    """Rows per regime and row of `metrics` (mean ± std), then (with `diffs`) the paired differences."""
    present = [
        m for m in metrics if any(m in r for rows in results["metrics"].values() for r in rows.values())
    ]
    header = ["captions", "row", *(label(m) for m in present)]
    table = []
    for regime, by_row in results["metrics"].items():
        for row in _rows(results, regime):
            table.append([regime, ROW[row], *(mean_cell(by_row[row].get(m)) for m in present)])
        if diffs:
            for comparison, entries in results["paired"].get(regime, {}).items():
                table.append(
                    [regime, comparison_label(comparison), *(diff_cell(entries.get(m)) for m in present)]
                )
    return header, table


def zeroshot_retrieval_table(results: dict[str, Any]) -> Table:
    return _metric_table(results, ZS_RETRIEVAL, diffs=True)


def heldout_table(results: dict[str, Any]) -> Table:
    return _metric_table(results, HELDOUT, diffs=True)


def breadth_table(results: dict[str, Any]) -> Table | None:
    """Winoground, MMVP-style pairs and long-caption retrieval (mean ± std); None when no world had them."""
    header, table = _metric_table(results, BREADTH, diffs=False)
    return (header, table) if len(header) > 2 else None


def ceiling_lines(results: dict[str, Any]) -> list[str]:
    """Per regime and store: how many retrieval test captions the frozen encoder can barely tell from
    another image's caption (the first caption of each image, as the demo's retrieval evaluates)."""
    lines = []
    for regime, stores in results["probe"].items():
        for store, figures in stores.items():
            r = figures["retrieval"]
            n = len(results["seeds"])
            per = " (mean over seeds)" if n > 1 else ""
            lines.append(
                f"{regime} captions, store `{store}`: {_count(r['close_other_text'])} of {_count(r['captions'])} "
                f"test captions have another image's caption (a different text) closer than cosine 0.99"
                f"{per}, and {_count(r['same_text_elsewhere'])} share the very same text with another "
                "image's caption: no image tower can rank those above their neighbour from these targets."
            )
    return lines


def _count(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def paired_table(results: dict[str, Any]) -> Table:
    header = ["captions", "metric", "comparison", "estimate", "95% over items", "95% over seeds", "verdict"]
    table = []
    for regime, comparisons in results["paired"].items():
        for comparison, entries in comparisons.items():
            for metric, e in entries.items():
                table.append([
                    regime, label(metric), comparison_label(comparison), signed(e["items"]["estimate"]),
                    bounds(e["items"]) or "–", bounds(e["seeds"]) or "one seed", e["verdict"],
                ])  # fmt: skip
    return header, table


def settings_table(results: dict[str, Any]) -> Table:
    """Each row's own settings beside its budget (the same steps and samples within a regime)."""
    settings = results["config"]["profile"]["settings"]
    first = results["training"][str(results["seeds"][0])]
    header = ["captions", "row", "run", "recipe", "learning rate", "initial temperature", "warmup", "steps",
              "samples seen"]  # fmt: skip
    table = []
    for regime, rows in results["rows"].items():
        recipe = (results.get("recipes") or {}).get(regime)
        for row in rows:
            run = f"{row}-{regime}"
            name = recipe["name"] if row == "plus" and recipe else run
            what = (
                recipe["recipe"]
                if row == "plus" and recipe
                else ("the paper's recipe" if row == "lift" else "the baseline")
            )
            s = settings.get(name, {})
            temp = s.get("temperature")
            t = first.get(run, {})
            table.append([
                regime, ROW[row], run, f"{what} (`{name}`)" if row == "plus" else what,
                f"{s['lr']:g}" if "lr" in s else "–", "0.07 (default)" if temp is None else f"{temp:g}",
                "default" if s.get("warmup") is None else str(s["warmup"]),
                str(t.get("steps", "–")), str(t.get("samples", "–")),
            ])  # fmt: skip
    return header, table


def cost_table(speeds: dict[str, float], seeds: list[int]) -> Table:
    over = "mean over seeds of each seed's median" if len(seeds) > 1 else "median"
    return ["run", f"images/s ({over} of logged steps)"], [[run, f"{s:.0f}"] for run, s in speeds.items()]


def timings_table(timings: dict[str, float], seeds: list[int]) -> Table:
    """Stage x world seed (keys "seed S: stage"); the other keys (total, report) as rows of their own."""
    stages: dict[str, dict[str, str]] = {}
    for key, v in timings.items():
        seed, _, stage = key.partition(": ") if key.startswith("seed ") else ("", "", key)
        stages.setdefault(stage if seed else f"{stage} (all seeds)", {})[seed] = f"{v:.1f}"
    columns = [f"seed {s}" for s in seeds]
    rows = [[stage, *(by.get(c, by.get("", "")) if c == columns[0] else by.get(c, "") for c in columns)]
            for stage, by in stages.items()]  # fmt: skip
    return ["stage", *(f"world {c}" for c in columns)], rows
