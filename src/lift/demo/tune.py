"""Choose each demo run's learning rate and initial temperature on the developer's own seeds.

    python -m lift.demo.tune --out demo-tune --seeds 1 2
    python -m lift.demo.tune --out demo-tune --seeds 1 2 --variants lift-all lift-short-mlp

For each seed: a world of that seed (never the demo's seed 0, so the numbers the demo reports never
guide the choice), both caption stores, then for every run (method x caption regime) every grid
point trained at the demo's budget and evaluated on that seed's test splits. A point's score is the
mean of SugarCrepe-style mean accuracy, zero-shot top-1 and retrieval R@1 (image->text and
text->image averaged), averaged over the seeds; each run takes its best point. Every stage resumes,
so a killed sweep continues where it stopped. Writes OUT/tuning.json and OUT/tuning.md.

`--variants` adds runs of `lift.demo.variants` (several views, text adapters, ...) to the sweep, each
searched over its method's grid, so the demo can show the best tuned variant beside the paper's
recipe. Variants that start from another run (`--init-from`) are measured there, not tuned here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lift.atomic import atomic_write, write_json
from lift.config import config_to_dict, save_config
from lift.demo.pipeline import (
    CORE_TASKS,
    METHODS,
    PROFILES,
    REGIMES,
    MethodSettings,
    evaluate_run,
    resolve_device,
    synth_world,
    train_spec,
)
from lift.demo.variants import BY_NAME, Variant, make_store
from lift.errors import LiftError


@dataclass
class TuneConfig:
    out: str = "demo-tune"
    profile: str = "default"
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    # Each method searches around its own optimum (a coarse pass on seed 1 placed them; docs/demo.md).
    lrs: dict[str, list[float]] = field(
        default_factory=lambda: {"lift": [1e-3, 2e-3, 4e-3], "clip": [2.5e-4, 5e-4, 1e-3]}
    )
    temperatures: list[float] = field(default_factory=lambda: [0.07, 0.03])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    regimes: list[str] = field(default_factory=lambda: list(REGIMES))
    variants: list[str] = field(default_factory=list)  # more runs: names in lift.demo.variants
    device: str = "auto"

    def runs(self) -> list[Variant]:
        """The paper's runs (METHOD-REGIME) and the variants asked for, each a `Variant`."""
        names = [f"{m}-{r}" for r in self.regimes for m in self.methods] + list(self.variants)
        if not names:
            raise LiftError("nothing to tune: --methods and --variants name no runs; give at least one")
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            raise LiftError(f"unknown variant {unknown[0]!r}; known: {', '.join(BY_NAME)}")
        started = [n for n in names if BY_NAME[n].init_from]
        if started:
            raise LiftError(
                f"{started[0]} starts from another run; measure it with python -m lift.demo.variants"
            )
        return [BY_NAME[n] for n in names]


def score(tasks: dict[str, dict]) -> float:
    """One number in [0, 1] per evaluated run: the three tasks weighted equally."""
    sc = tasks["sugarcrepe"]["metrics"]["mean"]
    zs = tasks["zeroshot"]["metrics"]["top1"]
    rt = tasks["retrieval"]["metrics"]
    return (sc + zs + (rt["i2t_R@1"] + rt["t2i_R@1"]) / 2) / 3 / 100.0


def _grid(cfg: TuneConfig, method: str) -> list[MethodSettings]:
    if not cfg.lrs.get(method):
        raise LiftError(f"no learning rates to try for {method}")
    return [
        MethodSettings(lr=lr, temperature=t) for lr, t in itertools.product(cfg.lrs[method], cfg.temperatures)
    ]


def point_name(run: str, settings: MethodSettings) -> str:
    return f"{run}-lr{settings.lr:g}-t{settings.temperature:g}"


def _log(msg: str) -> None:
    print(f"[lift tune] {msg}", file=sys.stderr, flush=True)


def tune(cfg: TuneConfig) -> dict[str, Any]:
    """Run the sweep (reusing finished points) and return {run: {"best": settings, "points": [...]}}."""
    if cfg.profile not in PROFILES:
        raise LiftError(f"unknown demo profile {cfg.profile!r}; known: {sorted(PROFILES)}")
    if 0 in cfg.seeds:
        raise LiftError("seed 0 is the demo's own world; tune on other seeds so its numbers stay unseen")
    profile, device = PROFILES[cfg.profile], resolve_device(cfg.device)
    runs = cfg.runs()  # refused before anything is written
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, root / "tune-config.json")
    grids = {v.name: _grid(cfg, v.method) for v in runs}
    scores: dict[str, dict[str, dict[int, float]]] = {}  # run -> point -> seed -> score
    for seed in cfg.seeds:
        out = root / f"seed-{seed}"
        synth_world(out, profile, seed)
        for store in sorted({v.store for v in runs if v.store}):
            make_store(out, store, device)
        for v in runs:
            for settings in grids[v.name]:
                name = point_name(v.name, settings)
                _log(f"seed {seed}: {name}")
                train_spec(out, profile, seed, name=name, method=v.method, settings=settings, captions=v.captions,
                           options=v.options(out), budget=v.budget, data_order=v.data_order)  # fmt: skip
                value = score(evaluate_run(out, name, device, only=CORE_TASKS))
                scores.setdefault(v.name, {}).setdefault(name, {})[seed] = value
    summary: dict[str, Any] = {}
    for run, points in scores.items():
        rows = [
            {"settings": config_to_dict(s), "per_seed": points[point_name(run, s)],
             "score": sum(points[point_name(run, s)].values()) / len(cfg.seeds)}
            for s in grids[run]
        ]  # fmt: skip
        best = max(rows, key=lambda r: r["score"])  # first of equals: grid order breaks ties
        summary[run] = {"best": best["settings"], "points": rows}
    write_json(root / "tuning.json", {"config": config_to_dict(cfg), "runs": summary})
    with atomic_write(root / "tuning.md", "w") as f:
        f.write(tuning_markdown(summary, cfg))
    return summary


def tuning_markdown(summary: dict[str, Any], cfg: TuneConfig) -> str:
    seeds = ", ".join(str(s) for s in cfg.seeds)
    lines = [
        f"Score: mean of SugarCrepe-style mean, zero-shot top-1 and retrieval R@1, in %, over seeds {seeds}.",
        "",
    ]
    for run, info in summary.items():
        lines += [f"**{run}**", "", "| lr | temperature | " + " | ".join(f"seed {s}" for s in cfg.seeds)
                  + " | mean |", "|---|---|" + "---|" * (len(cfg.seeds) + 1)]  # fmt: skip
        for row in info["points"]:
            s = row["settings"]
            mark = " **(chosen)**" if s == info["best"] else ""
            per_seed = " | ".join(f"{100 * row['per_seed'][seed]:.1f}" for seed in cfg.seeds)
            lines.append(
                f"| {s['lr']:g} | {s['temperature']:g} | {per_seed} | {100 * row['score']:.1f}{mark} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = TuneConfig()
    p = argparse.ArgumentParser(prog="python -m lift.demo.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", default=defaults.out, help="sweep folder (default: %(default)s)")
    p.add_argument(
        "--profile", default=defaults.profile, choices=sorted(PROFILES), help="demo profile (budget)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=defaults.seeds, help="worlds to tune on (not 0)")
    p.add_argument("--lift-lrs", type=float, nargs="+", default=defaults.lrs["lift"], help="LIFT's lr grid")
    p.add_argument("--clip-lrs", type=float, nargs="+", default=defaults.lrs["clip"], help="CLIP's lr grid")
    p.add_argument("--temperatures", type=float, nargs="+", default=defaults.temperatures,
                   help="initial temperatures, for both methods")  # fmt: skip
    p.add_argument("--methods", nargs="*", default=defaults.methods, choices=METHODS,
                   help="the paper's runs to tune (default: all; none: only --variants)")  # fmt: skip
    p.add_argument("--regimes", nargs="+", default=defaults.regimes, choices=list(REGIMES))
    p.add_argument("--variants", nargs="+", default=defaults.variants, choices=list(BY_NAME),
                   help="more runs to tune (lift.demo.variants), each over its method's grid")  # fmt: skip
    p.add_argument("--device", default=defaults.device, help="auto | cpu | cuda")
    args = vars(p.parse_args(argv))
    args["lrs"] = {"lift": args.pop("lift_lrs"), "clip": args.pop("clip_lrs")}
    cfg = TuneConfig(**args)
    try:
        summary = tune(cfg)
    except LiftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({run: info["best"] for run, info in summary.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
