"""Build the whole world on disk: train shards and the test splits, resumably and in parallel.

Every scene draws from its own generator seeded by (seed, split, index), so the output does not
depend on the number of workers or on which shards a previous, killed run already finished, and a
split added later (winoground, mmvp, long-retrieval) leaves every other split's bytes as they were.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lift.atomic import write_json
from lift.config import config_from_dict, config_to_dict
from lift.data.synth.captions import long_caption, retrieval_captions, short_caption
from lift.data.synth.minimal_pairs import MMVP_PATTERNS, WINOGROUND_KINDS, mmvp_pair, winoground_example
from lift.data.synth.render import IMAGE_FORMATS, encode, render
from lift.data.synth.sugarcrepe import KINDS, make_item, mentioned_pairs
from lift.data.synth.world import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    MARGIN,
    RADIUS,
    RELATIONS,
    SHAPES,
    Pair,
    Scene,
    parse_holdout,
    sample_scene,
)
from lift.data.synth.writer import (
    SplitFolder,
    train_shard_done,
    write_long_retrieval,
    write_mmvp,
    write_retrieval,
    write_sugarcrepe,
    write_train_shard,
    write_winoground,
    write_zeroshot,
)
from lift.errors import LiftError
from lift.outputs import check_output_folder, check_replaceable, read_marker, write_marker

TEST_SPLITS = ("sugarcrepe", "zeroshot", "retrieval", "winoground", "mmvp", "long-retrieval")
HELDOUT_RATE = 0.3  # share of test scenes that are made to contain a held-out pair
CHUNK = 64  # test scenes per worker job
VERSION = 1  # bump when the same config would draw a different world
WORLD_KIND = "synthetic world"  # the output marker's kind
CONFIG_MARKER = ".synth-config.json"  # the config a world was drawn with (resume refuses another)
FLAG = "output folder"


@dataclass
class SynthConfig:
    seed: int = 0
    image_size: int = 64
    train_size: int = 5000
    test_size: int = 500
    shard_size: int = 1000
    holdout: list[str] = field(default_factory=lambda: ["orange triangle", "purple star"])
    image_format: str = "png"
    # train shards as img2dataset writes real data: JPEG, its .json fields, NNNNN_stats.json; up to 512 px
    realistic: bool = False

    def validate(self) -> None:
        largest = 512 if self.realistic else 224
        if not 16 <= self.image_size <= largest:
            extra = "" if self.realistic else " (up to 512 with --realistic)"
            raise LiftError(f"--image-size must be between 16 and {largest}{extra}, got {self.image_size}")
        if self.realistic and self.image_format != "jpg":
            raise LiftError(
                "--realistic writes JPEG shards as img2dataset does; use --image-format jpg (its default)"
            )
        if self.image_format not in IMAGE_FORMATS:
            raise LiftError(f"--image-format must be one of {IMAGE_FORMATS}, got {self.image_format!r}")
        for name, least in (("train_size", 0), ("test_size", 1), ("shard_size", 1)):
            if getattr(self, name) < least:
                raise LiftError(
                    f"--{name.replace('_', '-')} must be at least {least}, got {getattr(self, name)}"
                )
        if len(zeroshot_classes()) - len(parse_holdout(self.holdout)) < 3:
            raise LiftError("--holdout: leave at least 3 (colour, shape) pairs for train scenes of 3 objects")

    @property
    def zeroshot_size(self) -> int:
        """At least one image per class, so every class folder exists for ImageFolder."""
        return max(self.test_size, len(zeroshot_classes()))

    @property
    def holdout_pairs(self) -> list[Pair]:
        return parse_holdout(self.holdout)

    @property
    def heldout_names(self) -> list[str]:
        return [f"{c} {s}" for c, s in self.holdout_pairs]

    @property
    def n_shards(self) -> int:
        return -(-self.train_size // self.shard_size)


def scene_rng(seed: int, split: str, index: int) -> random.Random:
    # A string seed is hashed with SHA-512: stable across processes and Python runs.
    return random.Random(f"lift-synth/{VERSION}/{seed}/{split}/{index}")


def _test_scene(rng: random.Random, cfg: SynthConfig, n_objects: int) -> Scene:
    pairs = cfg.holdout_pairs
    force = rng.choice(pairs) if pairs and rng.random() < HELDOUT_RATE else None
    return sample_scene(rng, n_objects, force_pair=force)


def _image(scene: Scene, cfg: SynthConfig) -> bytes:
    return encode(render(scene, cfg.image_size), cfg.image_format)


def _involves_heldout(scene: Scene, cfg: SynthConfig, *captions: str) -> bool:
    held = set(cfg.holdout_pairs)
    mentioned = set().union(*(mentioned_pairs(c) for c in captions))
    return bool((scene.pairs() | mentioned) & held)


def train_key(shard: int, index: int, shard_size: int) -> str:
    """img2dataset's key: shard * 10^k + index, zero-padded to at least 9 digits."""
    k = max(4, len(str(shard_size - 1)))
    return f"{shard * 10**k + index:0{max(9, 5 + k)}d}"


def train_record(cfg: SynthConfig, index: int, key: str) -> dict:
    rng = scene_rng(cfg.seed, "train", index)
    held = set(cfg.holdout_pairs)
    scene = sample_scene(rng, rng.choice((1, 2, 2, 3, 3)), allowed=lambda pair: pair not in held)
    short, long = short_caption(scene, rng), long_caption(scene, rng)
    return {"key": key, "image": _image(scene, cfg), "short": short, "long": long, "scene": scene.to_dict()}


def sugarcrepe_record(cfg: SynthConfig, index: int) -> dict:
    rng = scene_rng(cfg.seed, "sugarcrepe", index)
    scene = _test_scene(rng, cfg, rng.choice((2, 3)))
    items = {}
    for kind in KINDS:
        made = make_item(kind, scene, rng)
        if made:
            items[kind] = (*made, _involves_heldout(scene, cfg, *made))
    filename = f"{index:06d}.{cfg.image_format}"
    return {"filename": filename, "image": _image(scene, cfg), "scene": scene.to_dict(), "items": items}


def zeroshot_classes() -> list[str]:
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def zeroshot_record(cfg: SynthConfig, index: int) -> dict:
    rng = scene_rng(cfg.seed, "zeroshot", index)
    classes = zeroshot_classes()  # balanced: image i shows class i mod n
    colour, shape = classes[index % len(classes)].split()
    scene = sample_scene(rng, 1, force_pair=(colour, shape))
    filename = f"{colour}_{shape}/{index:06d}.{cfg.image_format}"
    return {"filename": filename, "image": _image(scene, cfg), "scene": scene.to_dict()}


def retrieval_record(cfg: SynthConfig, index: int) -> dict:
    rng = scene_rng(cfg.seed, "retrieval", index)
    scene = _test_scene(rng, cfg, rng.choice((1, 2, 2, 3, 3)))
    captions = retrieval_captions(scene, rng)
    return {
        "filename": f"{index:06d}.{cfg.image_format}",
        "image": _image(scene, cfg),
        "scene": scene.to_dict(),
        "captions": captions,
        "heldout": _involves_heldout(scene, cfg, *captions),
    }


def _pair_scene(cfg: SynthConfig) -> Callable[[random.Random], Scene]:
    return lambda rng: _test_scene(rng, cfg, rng.choice((2, 3)))


def winoground_record(cfg: SynthConfig, index: int) -> dict:
    """Two scenes and two captions with the same words (None when no checked pair was found)."""
    rng = scene_rng(cfg.seed, "winoground", index)
    tag = tuple(WINOGROUND_KINDS)[index % len(WINOGROUND_KINDS)]  # balanced
    made = winoground_example(tag, rng, _pair_scene(cfg))
    if made is None:
        return {"captions": None}
    (s0, c0, s1, c1), secondary = made
    return {
        "tag": tag,
        "secondary_tag": secondary,
        "captions": [c0, c1],
        "images": [_image(s0, cfg), _image(s1, cfg)],
        "scenes": [s0.to_dict(), s1.to_dict()],
        "heldout": _involves_heldout(s0, cfg, c0, c1) or _involves_heldout(s1, cfg),
    }


def mmvp_record(cfg: SynthConfig, index: int) -> dict:
    """Two scenes differing in one visual pattern, a statement true of each (None when none was found)."""
    rng = scene_rng(cfg.seed, "mmvp", index)
    pattern = MMVP_PATTERNS[index % len(MMVP_PATTERNS)]  # balanced
    made = mmvp_pair(pattern, rng, _pair_scene(cfg))
    if made is None:
        return {"pattern": pattern, "statements": None}
    s0, c0, s1, c1 = made
    return {
        "pattern": pattern,
        "statements": [c0, c1],
        "images": [_image(s0, cfg), _image(s1, cfg)],
        "scenes": [s0.to_dict(), s1.to_dict()],
    }


def long_retrieval_record(cfg: SynthConfig, index: int) -> dict:
    """One scene and its long (Recap-style) description, the image's only caption."""
    rng = scene_rng(cfg.seed, "long-retrieval", index)
    scene = _test_scene(rng, cfg, rng.choice((2, 3)))  # 1-object descriptions would repeat
    caption = long_caption(scene, rng)
    return {
        "stem": f"{index:06d}",
        "image": _image(scene, cfg),
        "scene": scene.to_dict(),
        "caption": caption,
        "heldout": _involves_heldout(scene, cfg, caption),
    }


RECORD_MAKERS: dict[str, Callable[[SynthConfig, int], dict]] = {
    "sugarcrepe": sugarcrepe_record,
    "zeroshot": zeroshot_record,
    "retrieval": retrieval_record,
    "winoground": winoground_record,
    "mmvp": mmvp_record,
    "long-retrieval": long_retrieval_record,
}


def _run_job(job: tuple) -> tuple[str, int, list[dict]]:
    """One unit of parallel work: write a train shard, or make a chunk of test records."""
    kind, cfg_dict, out, start, stop = job
    cfg = config_from_dict(SynthConfig, cfg_dict)
    if kind == "train":
        shard = start // cfg.shard_size
        records = [
            train_record(cfg, i, train_key(shard, i - start, cfg.shard_size)) for i in range(start, stop)
        ]
        write_train_shard(Path(out) / "train", shard, records, cfg.image_format, realistic=cfg.realistic)
        return kind, stop - start, []
    return kind, stop - start, [RECORD_MAKERS[kind](cfg, i) for i in range(start, stop)]


def _check_folder(out: Path, force: bool) -> None:
    """Before anything is written: `out` is new, empty or a world lift made (its marker); a folder of
    anything else is never written into, and never deleted by --force."""
    if not check_output_folder(out, flag=FLAG):
        return
    marker = read_marker(out)
    if marker is None and (out / CONFIG_MARKER).is_file():  # worlds made before output markers
        return
    if marker is None or marker["kind"] != WORLD_KIND:
        what = (
            f"lift wrote it as a {marker['kind']!r} folder"
            if marker
            else "it is not a synthetic world lift made"
        )
        raise LiftError(
            f"{out}: {what}; lift synth writes (and --force deletes) only its own worlds. Choose a new folder"
        )
    if force:
        check_replaceable(out, kind=WORLD_KIND, flag=FLAG)


def _check_config(out: Path, cfg: SynthConfig, force: bool) -> None:
    """Refuse to resume into a folder made with a different config (stale shards would mix in)."""
    marker = out / CONFIG_MARKER
    if force:
        for name in ("train", *TEST_SPLITS, "world.json", CONFIG_MARKER):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif marker.exists():
        # a world made before a field existed has that field's default
        found = {**config_to_dict(SynthConfig()), **json.loads(marker.read_text())}
        if found != config_to_dict(cfg):
            diff = sorted(
                k for k in set(found) | set(config_to_dict(cfg)) if found.get(k) != config_to_dict(cfg).get(k)
            )
            raise LiftError(
                f"{out}: made with a different config (differs in {diff}); pass --force to redo it"
            )
    write_json(marker, config_to_dict(cfg))


def _read(path: Path):
    return json.loads(path.read_text())


def _split_counts(out: Path, cfg: SynthConfig, name: str) -> dict:
    """What a finished split holds (read back, so a resumed run reports the same numbers)."""
    folder = out / name
    if name == "train":
        return {"scenes": cfg.train_size, "shards": cfg.n_shards}
    if name == "sugarcrepe":
        held = _read(folder / "heldout.json")
        return {k: {"items": len(_read(folder / f"{k}.json")), "heldout_items": len(held[k])} for k in KINDS}
    if name == "zeroshot":
        held = _read(folder / "heldout.json")["classes"]
        return {"images": cfg.zeroshot_size, "classes": len(zeroshot_classes()), "heldout_classes": held}
    if name == "winoground":
        examples = [json.loads(line) for line in (folder / "examples.jsonl").read_text().splitlines()]
        tags = [e["tag"] for e in examples]
        return {
            "examples": len(examples),
            "tags": {t: tags.count(t) for t in WINOGROUND_KINDS},
            "heldout_examples": len(_read(folder / "heldout.json")["ids"]),
        }
    if name == "mmvp":
        with open(folder / "Questions.csv", newline="") as f:
            patterns = [row["Type"] for row in csv.DictReader(f)]
        return {"pairs": len(patterns) // 2, "patterns": {p: patterns.count(p) // 2 for p in MMVP_PATTERNS}}
    if name == "long-retrieval":
        return {
            "images": len(list((folder / "caption").iterdir())),
            "heldout_images": len(_read(folder / "heldout.json")["images"]),
        }
    captions = _read(folder / "captions.json")
    return {
        "images": len(captions["images"]),
        "captions": len(captions["annotations"]),
        "heldout_images": len(_read(folder / "heldout.json")["image_ids"]),
    }


def _world_json(out: Path, cfg: SynthConfig, splits: tuple[str, ...]) -> dict:
    return {
        "version": VERSION,
        "seed": cfg.seed,
        "image_size": cfg.image_size,
        "image_format": cfg.image_format,
        "vocabulary": {
            **{k: list(v) for k, v in ATTRIBUTES.items()},
            "colour_rgb": {k: list(v) for k, v in COLOURS.items()},
            "background": {k: list(v) for k, v in BACKGROUNDS.items()},
            "relation": list(RELATIONS),
        },
        "geometry": {"radius": RADIUS, "relation_margin": MARGIN, "coordinates": "normalised, y down"},
        "heldout_pairs": cfg.heldout_names,
        "counts": {name: _split_counts(out, cfg, name) for name in splits},
        "config": config_to_dict(cfg),
    }


SPLIT_WRITERS: dict[str, Callable[[SplitFolder, list[dict], SynthConfig], None]] = {
    "sugarcrepe": lambda split, records, cfg: write_sugarcrepe(split, records, KINDS),
    "zeroshot": lambda split, records, cfg: write_zeroshot(
        split, records, zeroshot_classes(), cfg.heldout_names
    ),
    "retrieval": lambda split, records, cfg: write_retrieval(split, records),
    "winoground": lambda split, records, cfg: write_winoground(split, records, cfg.image_format),
    "mmvp": lambda split, records, cfg: write_mmvp(split, records, MMVP_PATTERNS, cfg.image_format),
    "long-retrieval": lambda split, records, cfg: write_long_retrieval(split, records, cfg.image_format),
}


def _jobs(out: Path, cfg: SynthConfig, splits: tuple[str, ...]) -> list[tuple]:
    """The work left to do: unfinished train shards and chunks of unfinished test splits."""
    cfg_dict, jobs = config_to_dict(cfg), []
    if "train" in splits:
        (out / "train").mkdir(exist_ok=True)
        for torn in (out / "train").glob(".*.tmp"):  # left by a killed run
            torn.unlink()
        for s in range(cfg.n_shards):
            if not train_shard_done(out / "train", s):
                start = s * cfg.shard_size
                jobs.append(("train", cfg_dict, str(out), start, min(start + cfg.shard_size, cfg.train_size)))
    for name in splits:
        if name != "train" and not SplitFolder(out / name).done():
            size = cfg.zeroshot_size if name == "zeroshot" else cfg.test_size
            jobs += [(name, cfg_dict, str(out), a, min(a + CHUNK, size)) for a in range(0, size, CHUNK)]
    return jobs


def generate_world(
    out: str | Path,
    cfg: SynthConfig,
    *,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    splits: tuple[str, ...] = ("train", *TEST_SPLITS),
) -> dict:
    """Write the world under `out`; rerunning skips finished shards and splits. Returns world.json's dict."""
    cfg.validate()
    cfg = dataclasses.replace(cfg, holdout=cfg.heldout_names)  # one spelling per holdout set
    out = Path(out)
    _check_folder(out, force)
    out.mkdir(parents=True, exist_ok=True)
    if read_marker(out) is None:
        write_marker(out, WORLD_KIND)
    _check_config(out, cfg, force)
    jobs = _jobs(out, cfg, splits)
    total = sum(stop - start for *_, start, stop in jobs)
    records: dict[str, list[dict]] = {j[0]: [] for j in jobs if j[0] != "train"}
    bar = tqdm(total=total, unit="scene", desc="lift synth", file=sys.stderr, disable=not progress)
    pool = multiprocessing.Pool(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        # imap keeps job order, so each test split's records arrive in index order.
        for kind, n, recs in pool.imap(_run_job, jobs) if pool else map(_run_job, jobs):
            if kind != "train":
                records[kind].extend(recs)
            bar.update(n)
    finally:
        bar.close()
        if pool:
            pool.terminate()
    for name, recs in records.items():
        with SplitFolder(out / name) as split:
            SPLIT_WRITERS[name](split, recs, cfg)
    world = _world_json(out, cfg, splits)
    write_json(out / "world.json", world)
    return world
