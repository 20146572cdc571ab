"""The real on-disk formats: img2dataset shards + parquet, SugarCrepe JSON, ImageFolder, COCO captions,
Winoground's examples.jsonl, MMVP-VLM's Questions.csv and Urban1k's image/ + caption/ folders.

Everything written here is byte-reproducible: tar headers carry no time or owner, parquet rows
come in a fixed order, and JSON keys in insertion order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from lift.atomic import atomic_write
from lift.data.img2dataset import sample_meta, shard_stats


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A tar archive of (name, data) members with zeroed mtime/owner, as webdataset reads it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def parquet_bytes(columns: dict[str, list[str]]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), buf)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1) + "\n").encode()


def write_train_shard(
    folder: Path, shard: int, records: list[dict], image_format: str, *, realistic: bool = False
) -> None:
    """`NNNNN.tar` (KEY.png|jpg, KEY.txt, KEY.json) and its row-aligned `NNNNN.parquet`; `realistic`:
    the .json holds img2dataset's download fields too, and `NNNNN_stats.json` is written.

    The parquet is renamed into place last: its presence marks the shard complete.
    """
    members = []
    if realistic:
        write_atomic(folder / f"{shard:05d}_stats.json", shard_stats(len(records)))
    for r in records:
        meta = {
            "key": r["key"],
            "caption": r["short"],
            "org_caption": r["short"],
            "re_caption": r["long"],
            "scene": r["scene"],
        }
        if realistic:
            size = Image.open(io.BytesIO(r["image"])).size
            meta = sample_meta(key=r["key"], url=f"synth://{r['key']}.{image_format}", caption=r["short"],
                               width=size[0], height=size[1], image=r["image"],
                               **{k: v for k, v in meta.items() if k not in ("key", "caption")})  # fmt: skip
        members += [
            (f"{r['key']}.{image_format}", r["image"]),
            (f"{r['key']}.txt", r["short"].encode()),
            (f"{r['key']}.json", json.dumps(meta).encode()),
        ]
    write_atomic(folder / f"{shard:05d}.tar", tar_bytes(members))
    columns = {
        "key": [r["key"] for r in records],
        "org_caption": [r["short"] for r in records],
        "re_caption": [r["long"] for r in records],
    }
    write_atomic(folder / f"{shard:05d}.parquet", parquet_bytes(columns))


def train_shard_done(folder: Path, shard: int) -> bool:
    return (folder / f"{shard:05d}.parquet").exists() and (folder / f"{shard:05d}.tar").exists()


class SplitFolder:
    """A test split written under a temp folder and renamed into place whole when complete.

    A killed run leaves only the temp folder, which the next run removes and redoes.
    """

    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.parent / f".{final.name}.tmp"

    def done(self) -> bool:
        return self.final.is_dir()

    def __enter__(self) -> SplitFolder:
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        return self

    def write(self, relpath: str, data: bytes) -> None:
        path = self.tmp / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.final)


def write_sugarcrepe(split: SplitFolder, records: list[dict], kinds: tuple[str, ...]) -> None:
    """Seven SugarCrepe JSON files over `images/`, plus held-out item ids and the scene graphs."""
    files: dict[str, dict] = {k: {} for k in kinds}
    heldout: dict[str, list[str]] = {k: [] for k in kinds}
    scenes = {}
    for r in records:
        if not r["items"]:
            continue
        split.write(f"images/{r['filename']}", r["image"])
        scenes[r["filename"]] = r["scene"]
        for kind, (pos, neg, involves_heldout) in r["items"].items():
            item_id = str(len(files[kind]))
            files[kind][item_id] = {"filename": r["filename"], "caption": pos, "negative_caption": neg}
            if involves_heldout:
                heldout[kind].append(item_id)
    for kind in kinds:
        split.write(f"{kind}.json", json_bytes(files[kind]))
    split.write("heldout.json", json_bytes(heldout))
    split.write("scenes.json", json_bytes(scenes))


def write_zeroshot(split: SplitFolder, records: list[dict], classes: list[str], heldout: list[str]) -> None:
    """An ImageFolder tree (`red_circle/000000.png`) with `classnames.txt` in folder-sorted order."""
    scenes = {}
    for r in records:
        split.write(r["filename"], r["image"])
        scenes[r["filename"]] = r["scene"]
    folders = sorted(c.replace(" ", "_") for c in classes)
    split.write("classnames.txt", "".join(f.replace("_", " ") + "\n" for f in folders).encode())
    split.write(
        "heldout.json", json_bytes({"classes": heldout, "folders": [c.replace(" ", "_") for c in heldout]})
    )
    split.write("scenes.json", json_bytes(scenes))


def write_retrieval(split: SplitFolder, records: list[dict]) -> None:
    """`images/` and COCO-captions `captions.json` (several captions per image, the first the reference)."""
    images, annotations, scenes, heldout = [], [], {}, []
    for image_id, r in enumerate(records):
        split.write(f"images/{r['filename']}", r["image"])
        images.append({"id": image_id, "file_name": r["filename"]})
        for caption in r["captions"]:
            annotations.append({"id": len(annotations), "image_id": image_id, "caption": caption})
        scenes[str(image_id)] = r["scene"]
        if r["heldout"]:
            heldout.append(image_id)
    split.write("captions.json", json_bytes({"images": images, "annotations": annotations}))
    split.write("heldout.json", json_bytes({"image_ids": heldout}))
    split.write("scenes.json", json_bytes(scenes))


def write_winoground(split: SplitFolder, records: list[dict], image_format: str) -> None:
    """Winoground's release: `examples.jsonl` (its nine fields) over `images/ex_<id>_img_<0|1>.<fmt>`
    (named without the extension, as the release does), plus held-out example ids and scene graphs."""
    examples, scenes, heldout = [], {}, []
    for r in records:
        if r["captions"] is None:
            continue
        ex_id = len(examples)
        names = [f"ex_{ex_id}_img_{k}" for k in (0, 1)]
        for name, image, scene in zip(names, r["images"], r["scenes"]):
            split.write(f"images/{name}.{image_format}", image)
            scenes[name] = scene
        examples.append(
            {
                "id": ex_id,
                "image_0": names[0],
                "image_1": names[1],
                "caption_0": r["captions"][0],
                "caption_1": r["captions"][1],
                "tag": r["tag"],
                "secondary_tag": r["secondary_tag"],
                "num_main_preds": 1,  # one relation per caption
                "collapsed_tag": r["tag"],
            }
        )
        if r["heldout"]:
            heldout.append(ex_id)
    split.write("examples.jsonl", "".join(json.dumps(e) + "\n" for e in examples).encode())
    split.write("heldout.json", json_bytes({"ids": heldout}))
    split.write("scenes.json", json_bytes(scenes))


def write_mmvp(split: SplitFolder, records: list[dict], patterns: tuple[str, ...], image_format: str) -> None:
    """MMVP-VLM's release: `Questions.csv` (Question ID, Type, Statement; a pair is ids 2k-1, 2k, each
    pattern's pairs contiguous as the official script expects) over `MLLM_VLM Images/<Type>/<id>.<fmt>`."""
    kept = [r for r in records if r["statements"] is not None]
    kept.sort(key=lambda r: patterns.index(r["pattern"]))  # stable: index order within a pattern
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Question ID", "Type", "Statement"])
    scenes = {}
    qid = 0
    for r in kept:
        for statement, image, scene in zip(r["statements"], r["images"], r["scenes"]):
            qid += 1
            split.write(f"MLLM_VLM Images/{r['pattern']}/{qid}.{image_format}", image)
            writer.writerow([qid, r["pattern"], statement])
            scenes[str(qid)] = scene
    split.write("Questions.csv", buf.getvalue().encode())
    split.write("scenes.json", json_bytes(scenes))


def write_long_retrieval(split: SplitFolder, records: list[dict], image_format: str) -> None:
    """Urban1k's layout: `image/<stem>.<fmt>` and `caption/<stem>.txt` (the long description, the
    image's only caption); a description equal to an earlier image's is left out (retrieval needs
    distinct captions)."""
    seen: set[str] = set()
    scenes, heldout = {}, []
    for r in records:
        if r["caption"] in seen:
            continue
        seen.add(r["caption"])
        split.write(f"image/{r['stem']}.{image_format}", r["image"])
        split.write(f"caption/{r['stem']}.txt", r["caption"].encode())
        scenes[r["stem"]] = r["scene"]
        if r["heldout"]:
            heldout.append(r["stem"])
    split.write("heldout.json", json_bytes({"images": heldout}))
    split.write("scenes.json", json_bytes(scenes))
