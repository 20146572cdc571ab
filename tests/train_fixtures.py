"""Tiny image-text shards (webdataset layout) for the training-stage tests."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image


def png_bytes(rng: np.random.Generator, size: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_shards(
    root: Path, *, shards: int = 2, per_shard: int = 12, seed: int = 0, sidecar: bool = True
) -> list[str]:
    """`root/0000{i}.tar` with KEY.png, KEY.txt, KEY.json (+ a sidecar parquet); returns the keys."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    keys = []
    for s in range(shards):
        rows = []
        with wds.TarWriter(str(root / f"{s:05d}.tar")) as w:
            for i in range(per_shard):
                key = f"{s:05d}{i:04d}"
                short, long = f"short caption {key}", f"a long caption describing sample {key} in detail"
                w.write({"__key__": key, "png": png_bytes(rng, 32 + 8 * (i % 3)), "txt": short,
                         "json": json.dumps({"key": key, "scene": [i]})})  # fmt: skip
                rows.append({"key": key, "org_caption": short, "re_caption": long})
                keys.append(key)
        if sidecar:
            pq.write_table(pa.Table.from_pylist(rows), root / f"{s:05d}.parquet")
    return keys


def write_tar(path: Path, members: dict[str, bytes | str] | list[tuple[str, bytes | str]]) -> Path:
    """A tar holding exactly `members` (name -> data, or (name, data) pairs to repeat a name), in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items() if isinstance(members, dict) else members:
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


IDENTITY = {"model": "test-encoder", "pooling": "mean", "dim": 16}


def write_store(
    root: Path, keys: list[str], *, dim: int = 16, seed: int = 0, identity: dict | None = None,
    views: list[str] | None = None,
) -> Path:  # fmt: skip
    """A real embedding store (lift.store) with one random unit vector per key (per view with `views`)."""
    from lift.store import StoreWriter

    rng = np.random.default_rng(seed)
    shape = (len(keys), len(views), dim) if views else (len(keys), dim)
    emb = rng.standard_normal(shape).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    # one store shard per data shard, named like it (key[:5] is the shard), as `lift embed` writes them
    names = sorted({k[:5] for k in keys if k[:5].isdigit()})
    kw = {"views": views} if views else {}
    w = StoreWriter(root, identity=identity or IDENTITY, dim=dim, dtype="float32", shard_names=names, **kw)
    for i, name in enumerate(names):
        rows = [j for j, k in enumerate(keys) if k[:5] == name or (i == 0 and not k[:5].isdigit())]
        w.write_shard(i, [keys[j] for j in rows], emb[rows])
    w.finalize()
    return root


def corrupt_embedding(store_root: Path, key: str) -> None:
    """Overwrite one stored float32 embedding with NaN on disk (as bit rot would; the writer refuses NaN)."""
    from lift.store import open_store

    store = open_store(store_root)
    shard, row = store.locate(key)
    path = store_root / "shards" / f"{store.shard_names[shard]}.emb"
    data = np.memmap(path, dtype=np.float32, mode="r+", shape=(store.shard_len(shard), store.dim))
    data[row, 0] = np.nan
    data.flush()
