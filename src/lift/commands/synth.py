"""Generate the embedded default dataset: a compositional world of coloured shapes.

Scenes hold 1 to 3 non-overlapping objects (shape, colour, size, pattern) whose relations
(left of, right of, above, below) are read off the geometry with a margin. Each scene gets a short
web-like caption and a long recaption stating every attribute and relation. Written in real
formats so the real-data loaders serve it:

  OUT/train/          img2dataset shards 00000.tar (KEY.png, KEY.txt, KEY.json) + 00000.parquet
                      (key, org_caption, re_caption), row-aligned with the tar
  OUT/sugarcrepe/     add_obj.json ... swap_att.json over images/, every item checked on its scene graph
  OUT/zeroshot/       ImageFolder tree (red_circle/...) + classnames.txt
  OUT/retrieval/      images/ + captions.json (COCO captions format, 5 captions per image)
  OUT/winoground/     Winoground's examples.jsonl over images/ex_<id>_img_<0|1>.png: two scenes, two
                      captions with the same words in another order (attributes or objects swapped)
  OUT/mmvp/           MMVP-VLM's Questions.csv over "MLLM_VLM Images/<Type>/<id>.png": scene pairs that
                      differ in one visual pattern (Color, Position, Count, Size), a statement each
  OUT/long-retrieval/ Urban1k's layout: image/<stem>.png + caption/<stem>.txt, the long description
                      as each image's only caption
  OUT/world.json      seed, vocabularies, held-out pairs, counts

Every test caption is checked against its scene graph(s) (docs/synth.md). Held-out (colour, shape)
pairs never appear in train and do appear in the test splits; heldout.json lists the items that
involve one. Same seed -> byte-identical output; a killed run resumes where it stopped, and a world
made before a split existed gains it on a rerun, the other splits' bytes unchanged.

Examples:
  lift synth data/world
  lift synth data/world224 --image-size 224 --train-size 100000 --workers 8
  lift synth data/tiny --train-size 200 --test-size 50 --holdout "purple star,orange triangle"
  lift synth data/real --realistic --train-size 20000     # JPEG shards as img2dataset writes them
"""

from __future__ import annotations

import argparse
import time

from lift.data.synth.generate import SynthConfig, generate_world
from lift.data.synth.render import IMAGE_FORMATS

NAME = "synth"
HELP = "generate the compositional world: train shards and six benchmark-format test splits"
ORDER = 5
REALISTIC_SIZE = 384  # the middle of img2dataset's usual 256-512 px


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SynthConfig()
    parser.add_argument("out", help="output folder")
    parser.add_argument(
        "--image-size", type=int, default=None,
        help=f"pixels per side, 16..224 (default {d.image_size}; --realistic: up to 512, default {REALISTIC_SIZE})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=d.seed, help="same seed -> byte-identical output")
    parser.add_argument("--train-size", type=int, default=d.train_size, help="training scenes")
    parser.add_argument("--test-size", type=int, default=d.test_size, help="scenes per test split")
    parser.add_argument("--shard-size", type=int, default=d.shard_size, help="training scenes per tar shard")
    parser.add_argument(
        "--holdout",
        default=",".join(d.holdout),
        help="comma-separated 'colour shape' pairs kept out of train (default: %(default)s; '' for none)",
    )
    parser.add_argument("--image-format", choices=IMAGE_FORMATS, default=None,
                        help=f"default {d.image_format}; jpg with --realistic")  # fmt: skip
    parser.add_argument(
        "--realistic", action="store_true",
        help="train shards as img2dataset writes real data: JPEG (384 px unless --image-size), its .json "
        "fields (url, caption, width, height, status, key, sha256 ...) and NNNNN_stats.json",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    parser.add_argument("--force", action="store_true", help="delete previous output and redo everything")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    d = SynthConfig()
    cfg = SynthConfig(
        seed=args.seed,
        image_size=args.image_size or (REALISTIC_SIZE if args.realistic else d.image_size),
        train_size=args.train_size,
        test_size=args.test_size,
        shard_size=args.shard_size,
        holdout=[p.strip() for p in args.holdout.split(",") if p.strip()],
        image_format=args.image_format or ("jpg" if args.realistic else d.image_format),
        realistic=args.realistic,
    )
    start = time.perf_counter()
    world = generate_world(
        args.out, cfg, workers=max(1, args.workers), force=args.force, progress=not args.no_progress
    )
    c = world["counts"]
    sugarcrepe_items = sum(v["items"] for v in c["sugarcrepe"].values())
    print(
        f"lift synth: {args.out}: {c['train']['scenes']} train scenes in {c['train']['shards']} shards, "
        f"sugarcrepe {sugarcrepe_items} items, zeroshot {c['zeroshot']['images']} images "
        f"/ {c['zeroshot']['classes']} classes, retrieval {c['retrieval']['images']} images, "
        f"winoground {c['winoground']['examples']} examples, mmvp {c['mmvp']['pairs']} pairs, "
        f"long-retrieval {c['long-retrieval']['images']} images; "
        f"held out {', '.join(world['heldout_pairs']) or 'nothing'} ({time.perf_counter() - start:.1f}s)"
    )
    return 0
