"""How fast `lift synth` makes training scenes (the issue's target: 500 scenes/s on 2 cores).

Writes N training scenes (img2dataset shards + parquet) to a temp folder with W workers and
reports scenes per second end to end, beside a single-process run and a per-stage breakdown
(sampling + captions, drawing, image encoding) so a slowdown can be located.

Examples:
  lift bench synth --json
  lift bench synth --json --n 2000 --image-size 224 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from lift.data.synth.captions import long_caption, short_caption
from lift.data.synth.generate import SynthConfig, generate_world, scene_rng
from lift.data.synth.render import encode, render
from lift.data.synth.world import sample_scene

NAME = "synth"
HELP = "scenes per second of `lift synth` (end to end, 1 vs W workers, per-stage breakdown)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=2000, help="training scenes to generate")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))


def _end_to_end(n: int, image_size: int, image_format: str, workers: int) -> float:
    # Enough shards that every worker is busy, as in a real run.
    shard_size = max(1, -(-n // (4 * workers)))
    cfg = SynthConfig(train_size=n, shard_size=shard_size, image_size=image_size, image_format=image_format)
    with tempfile.TemporaryDirectory(prefix="lift-bench-synth-") as tmp:
        start = time.perf_counter()
        generate_world(tmp, cfg, workers=workers, progress=False, splits=("train",))
        return time.perf_counter() - start


def _stages(n: int, image_size: int, image_format: str) -> dict[str, float]:
    """Microseconds per scene of each stage, single process."""
    t = {"sample_and_captions": 0.0, "render": 0.0, "encode": 0.0}
    for i in range(n):
        t0 = time.perf_counter()
        rng = scene_rng(0, "bench", i)
        scene = sample_scene(rng, rng.choice((1, 2, 3)))
        short_caption(scene, rng), long_caption(scene, rng)
        t1 = time.perf_counter()
        img = render(scene, image_size)
        t2 = time.perf_counter()
        encode(img, image_format)
        t3 = time.perf_counter()
        t["sample_and_captions"] += t1 - t0
        t["render"] += t2 - t1
        t["encode"] += t3 - t2
    return {f"us_per_scene_{k}": round(v / n * 1e6, 1) for k, v in t.items()}


def run(args: argparse.Namespace) -> dict:
    print(f"bench synth: {args.n} scenes at {args.image_size} px, {args.workers} workers", file=sys.stderr)
    multi = _end_to_end(args.n, args.image_size, args.image_format, args.workers)
    single = _end_to_end(args.n, args.image_size, args.image_format, 1)
    return {
        "benchmark": "synth",
        "scenes_per_s": round(args.n / multi, 1),
        "scenes_per_s_1_worker": round(args.n / single, 1),
        "n": args.n,
        "image_size": args.image_size,
        "image_format": args.image_format,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        **_stages(min(args.n, 500), args.image_size, args.image_format),
    }
