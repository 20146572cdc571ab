"""The demo report's figures (PNG bytes) and what it reads from the runs themselves: SugarCrepe-style
bars with error bars over seeds, training loss curves, evaluation-during-training curves (rows
`{"step", "eval": {...}}` of a run's metrics.jsonl, when it logged any), the cost per step, and a
few retrieval examples.
"""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path
from typing import Any

from lift.demo.report_words import ROW
from lift.evaluate.results import COLUMNS, SUGARCREPE_SUBSETS

COLORS = {"clip": "#9aa5b1", "lift": "#2f6fde", "plus": "#e07b1a"}
MAX_EVAL_PANELS = 6


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def log_rows(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_dirs(seed_dir: Path) -> list[Path]:
    return sorted(p for p in (seed_dir / "runs").glob("*") if (p / "metrics.jsonl").is_file())


def sugarcrepe_bars(results: dict[str, Any]) -> bytes:
    """Per caption regime, one bar per row and task; error bars: the standard deviation over seeds."""
    import numpy as np

    plt = _plt()
    regimes = list(results["metrics"])
    fig, axes = plt.subplots(1, len(regimes), figsize=(6.4 * len(regimes), 3.6), squeeze=False)
    head = {key: h for key, h, *_ in COLUMNS["sugarcrepe"]}
    tasks = (*SUGARCREPE_SUBSETS, "mean")
    x = np.arange(len(tasks))
    seeds = results["seeds"]
    for ax, regime in zip(axes[0], regimes):
        rows = results["rows"][regime]
        width = 0.8 / len(rows)
        for k, row in enumerate(rows):
            m = results["metrics"][regime][row]
            means = [m.get(f"sugarcrepe/{t}", {}).get("mean", 0.0) for t in tasks]
            stds = [m.get(f"sugarcrepe/{t}", {}).get("std") or 0.0 for t in tasks]
            ax.bar(x + (k - (len(rows) - 1) / 2) * width, means, width=width, label=ROW[row], color=COLORS[row],
                   yerr=stds if len(seeds) > 1 else None, capsize=2)  # fmt: skip
        ax.set_xticks(x, [head.get(t, t) for t in tasks])
        ax.set_ylim(0, 100)
        ax.axhline(50, color="k", lw=0.6, ls=":")  # chance for a two-caption choice
        spread = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else f"one seed ({seeds[0]})"
        ax.set_title(f"SugarCrepe-style accuracy, {regime} captions ({spread})", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def loss_curves(seed_dir: Path, seed: int) -> bytes | None:
    runs = [(r.name, [row for row in log_rows(r) if "loss" in row]) for r in run_dirs(seed_dir)]
    runs = [(name, rows) for name, rows in runs if rows]
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, rows in runs:
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"Training loss, world seed {seed} (each method's own objective)", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def eval_curves(seed_dir: Path, seed: int) -> bytes | None:
    """One panel per metric a run evaluated during training (`lift train --eval-suite`), one line per
    run; None when no run logged an evaluation."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}  # metric -> run -> (step, value)
    for run in run_dirs(seed_dir):
        for row in log_rows(run):
            for metric, v in (row.get("eval") or {}).items():
                if isinstance(v, (int, float)):
                    series.setdefault(metric, {}).setdefault(run.name, []).append((row["step"], float(v)))
    if not series:
        return None
    metrics = list(series)[:MAX_EVAL_PANELS]
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, points in series[metric].items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=name)
        ax.set_xlabel("step")
        ax.set_title(metric, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Evaluation during training, world seed {seed}", fontsize=10)
    return _png(fig)


def cost(out: Path, seeds: list[int]) -> dict[str, float]:
    """Per run: the median images/s of its logged steps (the first log row includes start-up), averaged
    over seeds."""
    per_run: dict[str, list[float]] = {}
    for seed in seeds:
        for run in run_dirs(out / f"seed-{seed}"):
            values = [r["img_per_s"] for r in log_rows(run) if "img_per_s" in r][1:]
            if values:
                per_run.setdefault(run.name, []).append(statistics.median(values))
    return {run: statistics.fmean(v) for run, v in per_run.items()}


def retrieval_examples(seed_dir: Path, runs: list[str], n: int, device: str) -> list[dict[str, Any]]:
    """A few retrieval queries of one world: caption -> each run's top-3 images (keyed CLIP, LIFT, LIFT+)."""
    import torch

    from lift import load
    from lift.data.images import load_rgb

    world = seed_dir / "world" / "retrieval"
    ann = json.loads((world / "captions.json").read_text())
    files = {im["id"]: im["file_name"] for im in ann["images"]}
    ids = sorted(files)
    queries = ann["annotations"][:: max(1, len(ann["annotations"]) // max(n, 1))][:n]
    images = [load_rgb(world / "images" / files[i]) for i in ids]
    examples = [{"caption": q["caption"], "truth": q["image_id"], "top": {}} for q in queries]
    for run in runs:
        model = load(seed_dir / "runs" / run, device=device)
        with torch.inference_mode():
            img = torch.cat([model.encode_image(torch.stack([model.preprocess(im) for im in images[i:i + 64]]).to(device))
                             for i in range(0, len(images), 64)])  # fmt: skip
            txt = model.encode_text([q["caption"] for q in queries])
        top = (txt @ img.T).topk(3, dim=1).indices.tolist()
        for example, row in zip(examples, top):
            example["top"][ROW.get(run.split("-")[0], run)] = [ids[j] for j in row]
    for example in examples:
        example["files"] = {i: files[i] for m in example["top"].values() for i in m} | {
            example["truth"]: files[example["truth"]]
        }
    return examples
