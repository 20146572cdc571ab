"""The commands that reproduce each number of a demo report, per world seed, with the current CLI:
`lift synth` (from the world's own world.json), `lift embed` / `lift store transform` (every store a
row trained on), `lift train` (from each run's own config.json, so every flag the demo set is there),
`lift eval` (each task the demo evaluated, as the demo configured it) and `lift probe`.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

SYNTH_FLAGS = ("seed", "image_size", "train_size", "test_size", "shard_size")
# written even at their default: a reader should not have to know the defaults to see the budget
ALWAYS = ("model", "batch_size", "epochs", "lr", "seed")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _q(x: Any) -> str:
    return shlex.quote(str(x))


def synth_command(world: Path) -> str:
    cfg = json.loads((world / "world.json").read_text())["config"]
    return f"lift synth {_q(world)} " + " ".join(f"{_flag(k)} {cfg[k]}" for k in SYNTH_FLAGS if k in cfg)


def store_commands(seed_dir: Path, name: str) -> list[str]:
    """How OUT/stores/NAME was made (`lift.demo.pipeline.REGIMES` or `lift.demo.variants.STORES`), its
    source store first."""
    from lift.demo.pipeline import REGIMES
    from lift.demo.variants import STORES

    spec = {"caption_field": REGIMES[name]} if name in REGIMES else dict(STORES[name])
    target = seed_dir / "stores" / name
    if "from" not in spec:
        flags = "".join(f" {_flag(k)} {_q(v)}" for k, v in spec.items())
        return [f"lift embed {_q(str(seed_dir / 'world' / 'train' / '*.parquet'))}{flags} --out {_q(target)}"]
    source = spec.pop("from")
    flags = "".join(f" {_flag(k)}" if v is True else f" {_flag(k)} {_q(v)}" for k, v in spec.items())
    before = [] if source in REGIMES else store_commands(seed_dir, source)
    return [*before, f"lift store transform {_q(seed_dir / 'stores' / source)} --out {_q(target)}{flags}"]


def train_command(config: dict[str, Any]) -> str:
    """`lift train` with every setting of a run's config.json that differs from the defaults."""
    from lift.methods import get_method
    from lift.train import TrainConfig

    defaults = dataclasses.asdict(TrainConfig())
    options = dataclasses.asdict(get_method(config["method"]).Options())
    parts = ["lift train", f"--method {config['method']}"]
    settings = [(k, v, defaults.get(k)) for k, v in config.items() if k not in ("method", "options")]
    settings += [(k, v, options.get(k)) for k, v in (config.get("options") or {}).items()]
    for key, v, default in settings:
        if v is None or (v == default and key not in ALWAYS):
            continue
        if isinstance(v, bool):
            parts.append(_flag(key) if v else "--no-" + key.replace("_", "-"))
        else:
            parts.append(f"{_flag(key)} {_q(v)}")
    return " ".join(parts)


def eval_commands(seed_dir: Path, runs: list[str]) -> list[str]:
    """Every task the demo evaluated, as one loop over the seed's runs."""
    from lift.demo.pipeline import eval_tasks

    lines = [f"for run in {' '.join(runs)}; do"]
    for task, cfg in eval_tasks(seed_dir / "world").items():
        flags = " ".join(f"{_flag(k)} {_q(v)}" for k, v in cfg.items())
        ckpt, result = seed_dir / "runs", seed_dir / "evals"
        lines.append(
            f'  lift eval {task} --checkpoint "{ckpt}/$run" {flags} --out "{result}/$run/{task}.json"'
        )
    return [*lines, "done"]


def seed_commands(seed_dir: Path, runs: list[str], stores: list[str]) -> list[str]:
    lines = [synth_command(seed_dir / "world")]
    for store in stores:
        lines += [c for c in store_commands(seed_dir, store) if c not in lines]
    for run in runs:
        lines.append(train_command(json.loads((seed_dir / "runs" / run / "config.json").read_text())))
    lines += eval_commands(seed_dir, runs)
    probe = " ".join(f"--store {_q(seed_dir / 'stores' / s)}" for s in stores)
    lines.append(f"lift probe {probe} --annotations {_q(seed_dir / 'world' / 'sugarcrepe')}")
    return lines


def reproduce_commands(results: dict[str, Any], out: Path) -> list[str]:
    """Per world seed, every command behind its numbers (a comment line heads each seed)."""
    stores = list(dict.fromkeys(s for by_store in results["probe"].values() for s in by_store))
    lines: list[str] = []
    for seed in results["seeds"]:
        runs = list(results["training"][str(seed)])
        lines += [f"# world seed {seed}", *seed_commands(out / f"seed-{seed}", runs, stores), ""]
    return lines[:-1]
