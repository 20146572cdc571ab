"""The demo's report: DIR/report.md (+ DIR/report-assets/*.png) and a self-contained DIR/report.html
(images as data URIs), both rendered from one list of blocks built from results.json.

It names the world seeds that ran, the rows compared (CLIP, LIFT as in the paper, LIFT+ with its
recipe), and says per caption regime which differences are distinguishable from zero and which are
not, with their intervals over test items and over seeds (`lift.demo.report_words`); the tables put
the frozen encoder's own limits beside the trained models' numbers (`lift.demo.report_tables`).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lift.atomic import atomic_write
from lift.demo import report_figures as figures
from lift.demo import report_tables as tables
from lift.demo import report_words as words
from lift.demo.report_commands import reproduce_commands

TITLE = "LIFT vs CLIP on the synthetic compositional world"
HELDOUT_NOTE = (
    "Colour-shape pairs that never appear in a training image or caption, only in the test splits: can a "
    "model compose a colour and a shape it has seen only apart? Only the test items that involve such a "
    "pair count here."
)
PROBE_NOTE = (
    "Beside each task, the frozen text encoder's own separation of its positive and negative captions, "
    "through the store the LIFT rows trained on (`lift probe`): the % of pairs whose frozen targets are "
    "closer than cosine 0.99, and their mean cosine. Where nearly every pair is that close, the targets "
    "themselves barely differ, and the encoder, not the training, limits LIFT."
)


@dataclass
class Block:
    """One piece of the report: kind h2 | h3 | p | ul | table | fig | pre | examples."""

    kind: str
    text: str = ""
    items: list[Any] = field(default_factory=list)
    table: tables.Table | None = None
    data: bytes | None = None


def _sections(results: dict[str, Any], out: Path, figs: dict[str, bytes | None], speeds: dict[str, float],
              examples: list[dict[str, Any]]) -> list[Block]:  # fmt: skip
    from lift.demo.pipeline import TUNING_SEEDS

    seeds = results["seeds"]
    blocks = [Block("p", p) for p in words.opening(results, tuning_seeds=TUNING_SEEDS)]
    blocks.append(Block("h2", "What is real"))
    for title, parts in words.headline(results):
        blocks.append(Block("h3", title))
        for line, lines in parts:
            blocks += [Block("p", line), Block("ul", items=lines)]
    shift = words.shift_lines(results)
    if shift:
        blocks += [Block("h3", "From short to long captions"), Block("ul", items=shift)]
    blocks.append(Block("h2", "SugarCrepe-style composition (accuracy, %)"))
    blocks.append(Block("p", PROBE_NOTE + " " + tables.diff_note(seeds) + "."))
    for regime in results["metrics"]:
        blocks += [Block("h3", f"{regime.capitalize()} captions"),
                   Block("table", table=tables.sugarcrepe_table(results, regime))]  # fmt: skip
    blocks += [Block("fig", "SugarCrepe-style accuracy", data=figs["sugarcrepe-bars.png"]),
               Block("h2", "Zero-shot classification and retrieval (%, first-caption protocol)"),
               Block("p", tables.diff_note(seeds) + "; retrieval R@1 is the mean of image->text and text->image."),
               Block("table", table=tables.zeroshot_retrieval_table(results)),
               Block("p", "The frozen encoder's ceiling on retrieval:"), Block("ul", items=tables.ceiling_lines(results)),
               Block("h2", "Held-out colour-shape pairs (%)"), Block("p", HELDOUT_NOTE),
               Block("table", table=tables.heldout_table(results))]  # fmt: skip
    breadth = tables.breadth_table(results)
    if breadth:
        blocks += [Block("h2", "Winoground, MMVP-style pairs and long-caption retrieval (%)"),
                   Block("p", "The world's splits in Winoground's, MMVP-VLM's and Urban1k's layouts; mean ± std over "
                              "seeds (no item intervals: see results.json for each seed)."),
                   Block("table", table=breadth)]  # fmt: skip
    blocks += [Block("h2", "Paired differences"), Block("table", table=tables.paired_table(results)),
               Block("h2", "Settings and budget"), Block("table", table=tables.settings_table(results)),
               Block("h2", "Training curves")]  # fmt: skip
    for name, alt in (
        ("loss-curves.png", "Training loss"),
        ("eval-curves.png", "Evaluation during training"),
    ):
        if figs.get(name):
            blocks.append(Block("fig", alt, data=figs[name]))
    if not figs.get("eval-curves.png"):
        blocks.append(Block("p", "No run logged evaluations during training (`lift train --eval-suite`)."))
    blocks += [Block("h2", "Cost per step"), Block("table", table=tables.cost_table(speeds, seeds)),
               Block("h2", f"Example retrievals (world seed {seeds[0]}, short-caption runs)"),
               Block("examples", items=examples), Block("h2", "Timings (s)"),
               Block("table", table=tables.timings_table(results["timings_s"], seeds)),
               Block("h2", "Reproduce each number"), Block("pre", items=reproduce_commands(results, out))]  # fmt: skip
    return blocks


def _md_table(table: tables.Table) -> str:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown(blocks: list[Block], assets: dict[bytes, str]) -> str:
    md = [f"# {TITLE}", ""]
    for b in blocks:
        if b.kind in ("h2", "h3"):
            md += [("## " if b.kind == "h2" else "### ") + b.text, ""]
        elif b.kind == "p":
            md += [b.text, ""]
        elif b.kind == "ul":
            md += [*(f"- {i}" for i in b.items), ""]
        elif b.kind == "table":
            md += [_md_table(b.table), ""]
        elif b.kind == "fig":
            md += [f"![{b.text}](report-assets/{assets[b.data]})", ""]
        elif b.kind == "pre":
            md += ["```bash", *b.items, "```", ""]
        elif b.kind == "examples":
            md += ["✓ marks the true image.", ""]
            for ex in b.items:
                md.append(f"- *{ex['caption']}*: " + "; ".join(
                    f"{run} top-3 " + ", ".join(f"{i}{' ✓' if i == ex['truth'] else ''}" for i in ids)
                    for run, ids in ex["top"].items()))  # fmt: skip
            md.append("")
    return "\n".join(md)


def _inline(text: str) -> str:
    """Escaped text with the markdown the sentences use (**bold**, `code`)."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _html_table(table: tables.Table) -> str:
    header, rows = table
    head = "".join(f"<th>{_inline(h)}</th>" for h in header)
    # a difference's interval over seeds goes on a second line, so the widest tables fit the page
    cell = lambda c: _inline(c).replace(" / [", "<br>[")  # noqa: E731
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_examples(examples: list[dict[str, Any]], images: Path) -> str:
    out = ["<p>Query caption, then each run's top-3 images (green: the true image).</p>"]
    for ex in examples:
        cells = []
        for run, ids in ex["top"].items():
            thumbs = "".join(
                f'<img class="thumb{" hit" if i == ex["truth"] else ""}" '
                f'src="{_uri((images / ex["files"][i]).read_bytes())}" alt="image {i}">' for i in ids
            )  # fmt: skip
            cells.append(f"<div><b>{html.escape(run)}</b><br>{thumbs}</div>")
        out.append(f'<div class="ex"><p>“{html.escape(ex["caption"])}”</p>{"".join(cells)}</div>')
    return "".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #1d232b; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccd; padding: 3px 7px; vertical-align: top; }
th { background: #eef2f8; font-weight: 600; max-width: 11em; }
td { white-space: nowrap; } td:last-child { white-space: normal; min-width: 12em; }
.wide { overflow-x: auto; }
.fig { max-width: 100%; display: block; margin: 1em 0; }
.thumb { width: 64px; height: 64px; image-rendering: pixelated; margin: 2px; border: 2px solid #ddd; }
.hit { border-color: #1a9e3a; } .ex { display: flex; gap: 2em; align-items: center; }
.ex p { width: 320px; }
pre { background: #f5f6f8; padding: 1em; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.8em; }
"""


def page(blocks: list[Block], images: Path) -> str:
    body = [f"<h1>{html.escape(TITLE)}</h1>"]
    for b in blocks:
        if b.kind in ("h2", "h3"):
            body.append(f"<{b.kind}>{_inline(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            body.append(_html_table(b.table))
        elif b.kind == "fig":
            body.append(f'<img class="fig" src="{_uri(b.data)}" alt="{html.escape(b.text)}">')
        elif b.kind == "pre":
            body.append(f"<pre>{html.escape(chr(10).join(b.items))}</pre>")
        elif b.kind == "examples":
            body.append(_html_examples(b.items, images))
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>lift demo report</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def write_report(out: Path, results: dict[str, Any], *, device: str = "cpu") -> dict[str, Path]:
    """Write DIR/report.md (+ DIR/report-assets/*.png) and a self-contained DIR/report.html."""
    out = Path(out)
    first = out / f"seed-{results['seeds'][0]}"
    figs = {
        "sugarcrepe-bars.png": figures.sugarcrepe_bars(results),
        "loss-curves.png": figures.loss_curves(first, results["seeds"][0]),
        "eval-curves.png": figures.eval_curves(first, results["seeds"][0]),
    }
    assets = out / "report-assets"
    assets.mkdir(exist_ok=True)
    for name, data in figs.items():
        if data:
            with atomic_write(assets / name) as f:
                f.write(data)
    runs = [f"{row}-short" for row in results["rows"].get("short", [])]
    n = results["config"]["profile"].get("retrieval_examples", 3)
    examples = figures.retrieval_examples(first, runs, n, device) if runs else []
    blocks = _sections(results, out, figs, figures.cost(out, results["seeds"]), examples)
    names = {data: name for name, data in figs.items() if data}
    with atomic_write(out / "report.md", "w") as f:
        f.write(markdown(blocks, names))
    with atomic_write(out / "report.html", "w") as f:
        f.write(page(blocks, first / "world" / "retrieval" / "images"))
    return {"md": out / "report.md", "html": out / "report.html"}
