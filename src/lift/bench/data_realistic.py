"""Shards laid out as img2dataset writes real web data, with photo-like JPEGs, for the data benchmarks.

img2dataset's webdataset output (rom1504/img2dataset, writer.py and logger.py), one set per shard:

    00000.tar          000000000.jpg  000000000.txt  000000000.json  000000001.jpg ...
    00000.parquet      one row per sample: the .json fields
    00000_stats.json   count, successes, failed_to_download, failed_to_resize, duration,
                       start_time, end_time, status_dict

Keys are the shard number followed by the sample's position in it; each `.json` holds url, caption,
key, status, error_message, width, height, original_width, original_height, exif and sha256.

The images are smooth colour fields at several scales plus grain: they compress like photographs
(tens of kB at 384 px, quality 90), unlike flat synthetic drawings, so decoding costs what it costs
on real data. `lift synth` can write its scenes the same way: `write_shard(folder, shard, [Record(
jpeg_bytes(render(scene, 384)), short, 384, 384, url=..., extra={"re_caption": long}), ...],
shard_size=...)`.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from lift.data.img2dataset import sample_meta, shard_stats
from lift.data.synth.writer import tar_bytes, write_atomic

COLOURS = ("red", "green", "blue", "yellow", "grey", "brown", "purple", "orange")
THINGS = ("hillside", "sky at dusk", "forest floor", "sea", "wall", "field", "cloud", "street")


def natural_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like RGB picture: random colour fields from coarse to fine (amplitude ~ 1/frequency)
    plus sensor-like grain."""
    out = np.zeros((height, width, 3), np.float32)
    for octave in range(1, 8):
        cells = 2**octave
        grid = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        layer = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
        out += (np.asarray(layer, np.float32) - 128) / octave
    out = out * (96 / np.abs(out).max()) + rng.uniform(90, 165, 3).astype(np.float32)
    out += rng.normal(0, 4, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class Record:
    """One downloaded sample: the encoded image, its caption and where it came from."""

    image: bytes
    caption: str
    width: int
    height: int
    url: str
    ext: str = "jpg"
    extra: dict = field(default_factory=dict)  # more columns (e.g. lift synth's re_caption, scene)


def meta(record: Record, key: str) -> dict:
    """The .json (and parquet row) img2dataset writes for a successful download."""
    return sample_meta(key=key, url=record.url, caption=record.caption, width=record.width, height=record.height,
                       image=record.image, **record.extra)  # fmt: skip


def sample_key(shard: int, index: int, shard_size: int) -> str:
    """img2dataset's key: the shard number (5 digits) then the position (as many digits as needed)."""
    return f"{shard:05d}{index:0{len(str(max(shard_size - 1, 1)))}d}"


def write_shard(folder: str | Path, shard: int, records: list[Record], *, shard_size: int) -> list[str]:
    """`NNNNN.tar`, `NNNNN.parquet` and `NNNNN_stats.json` for `records`; returns their keys."""
    folder = Path(folder)
    start = time.time()
    members, rows = [], []
    for i, r in enumerate(records):
        key = sample_key(shard, i, shard_size)
        row = meta(r, key)
        members += [(f"{key}.{r.ext}", r.image), (f"{key}.txt", r.caption.encode()),
                    (f"{key}.json", json.dumps(row, indent=4).encode())]  # fmt: skip
        rows.append(row)
    write_atomic(folder / f"{shard:05d}.tar", tar_bytes(members))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    write_atomic(folder / f"{shard:05d}.parquet", buf.getvalue())
    write_atomic(folder / f"{shard:05d}_stats.json", shard_stats(len(records), start=start, end=time.time()))
    return [row["key"] for row in rows]


def natural_records(
    n: int, *, seed: int = 0, min_size: int = 256, max_size: int = 512, quality: int = 90
) -> Iterator[Record]:
    """`n` photo-like JPEGs with sides drawn in [min_size, max_size] and short captions."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        width, height = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
        caption = f"a {rng.choice(COLOURS)} {rng.choice(THINGS)}"
        image = jpeg_bytes(natural_image(rng, width, height), quality)
        yield Record(image, caption, width, height, url=f"https://example.com/{seed}/{i}.jpg")


def write_shards(folder: str | Path, records: Iterable[Record], *, shard_size: int) -> list[Path]:
    """Split `records` into img2dataset shards of `shard_size` in `folder`; returns the tar paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, chunk = [], []
    for r in records:
        chunk.append(r)
        if len(chunk) == shard_size:
            write_shard(folder, len(paths), chunk, shard_size=shard_size)
            paths.append(folder / f"{len(paths):05d}.tar")
            chunk = []
    if chunk:
        write_shard(folder, len(paths), chunk, shard_size=shard_size)
        paths.append(folder / f"{len(paths):05d}.tar")
    return paths


def write_realistic_shards(
    folder: str | Path, *, n: int, shard_size: int = 256, seed: int = 0, min_size: int = 256,
    max_size: int = 512, quality: int = 90,
) -> list[Path]:  # fmt: skip
    """`n` photo-like samples as img2dataset shards in `folder`; returns the tar paths."""
    records = natural_records(n, seed=seed, min_size=min_size, max_size=max_size, quality=quality)
    return write_shards(folder, records, shard_size=shard_size)
