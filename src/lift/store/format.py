"""The on-disk layout of an embedding store: file names, sizes, key hashes and checksums.

STORE/store.json            header: format, version, encoder identity, dim, dtype, views, shard names
STORE/shards/00000.emb      (rows * V, dim) codes, little-endian, fixed stride (np.memmap-able):
                            view v of row r is physical row r * V + v
STORE/shards/00000.scale    (rows * V,) float32 per-physical-row scales (int8 only)
STORE/shards/00000.keys     the keys, utf-8, concatenated
STORE/shards/00000.koff     (rows + 1,) uint64 byte offsets into .keys
STORE/shards/00000.khash    (rows,) uint64 key hashes in row order (the global index is built from them)
STORE/shards/00000.json     sidecar: rows, skipped, per-file sizes and blake2b; written last
STORE/index.hash            (total,) uint64 key hashes, sorted
STORE/index.row             (total,) uint64 global row of each hash (store order)
STORE/transform.safetensors a transformed store's map from the encoder's raw output to its vectors
                            (`lift store transform`; see `lift.store.transform`), listed in header
                            and manifest
STORE/manifest.json         written once every shard exists; its presence means "complete"

Views: a key holds one vector per named view (e.g. one per caption column: `org_caption`,
`re_caption`). Header, sidecars and manifest list them as `"views": [names]`. A store of several
views is format version 2, so a lift that predates views refuses it instead of misreading it; a
store of one view stays version 1, readable by that lift. A version-1 store without "views" (written
before views existed) has one view, named after the caption field it was embedded from.

Transforms: a store whose vectors went through a fitted linear map (centre, PCA, whiten, truncate)
holds it in transform.safetensors; header and manifest record its identity under "transform". Such a
store is format version 3 whatever its views, so a lift that predates transforms refuses it rather
than comparing its vectors with raw encoder output.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lift.errors import LiftError
from lift.store.codecs import get_codec

FORMAT_NAME = "lift-embedding-store"
FORMAT_VERSION = 1  # of a one-view store
MULTI_VIEW_VERSION = 2  # of a store of several views
TRANSFORM_VERSION = 3  # of a store that holds a transform (any number of views)
SUPPORTED_VERSIONS = (FORMAT_VERSION, MULTI_VIEW_VERSION, TRANSFORM_VERSION)
DEFAULT_VIEW = "default"
MANIFEST = "manifest.json"
HEADER = "store.json"
TRANSFORM_FILE = "transform.safetensors"
SHARD_DIR = "shards"
INDEX_FILES = ("index.hash", "index.row")
KEY_HASH_DTYPE = np.dtype("<u8")
OFFSET_DTYPE = np.dtype("<u8")
INDEX_ROW_DTYPE = np.dtype("<u8")
SCALE_DTYPE = np.dtype("<f4")
READ_CHUNK = 4 << 20
CHECKSUM_BYTES = 16  # 128-bit blake2b: ample for integrity, short enough for a 100k-shard manifest


class StoreDamaged(LiftError):
    """A store whose files disagree with its manifest (truncated, grown, corrupted)."""


def shard_prefix(i: int, num_shards: int) -> str:
    """Relative path stem of shard i's files; shards are named by position, never by user-given names."""
    width = max(5, len(str(max(num_shards - 1, 0))))
    return f"{SHARD_DIR}/{i:0{width}d}"


def format_version(num_views: int, transformed: bool = False) -> int:
    """The format version a store of `num_views` views (holding a transform or not) is written as."""
    if transformed:
        return TRANSFORM_VERSION
    return FORMAT_VERSION if num_views == 1 else MULTI_VIEW_VERSION


def check_views(views: Any, where: object) -> list[str]:
    """`views` as a list of distinct non-empty names, or a LiftError naming `where`."""
    if not isinstance(views, (list, tuple)) or not views:
        raise LiftError(f"{where}: views must be a non-empty list of names, got {views!r}")
    for v in views:
        if not isinstance(v, str) or not v.strip():
            raise LiftError(f"{where}: view name {v!r} is not a non-empty string")
    if len(set(views)) != len(views):
        dup = next(v for v in views if list(views).count(v) > 1)
        raise LiftError(f"{where}: view {dup!r} is named twice; view names must be unique")
    return list(views)


def legacy_view_name(manifest: dict[str, Any]) -> str:
    """The one view of a store written before views existed: the caption field it was embedded from
    (as recorded in `extra`, else its first source's default), else "default"."""
    extra = manifest.get("extra") if isinstance(manifest.get("extra"), dict) else {}
    field = extra.get("caption_field")
    if isinstance(field, str) and field:
        return field
    sources = manifest.get("sources")
    if isinstance(sources, list) and sources and isinstance(sources[0], str):
        from lift.data.captions import source_for  # lazy: the store is read without the caption readers

        fmt = extra.get("fmt")
        try:
            return source_for(sources[0], fmt if isinstance(fmt, str) else "auto").caption_field
        except LiftError:
            pass
    return DEFAULT_VIEW


def store_views(meta: dict[str, Any], where: object) -> list[str]:
    """The views a manifest (or header) records, checked against its version; a version-1 one without
    "views" has the single legacy view. LiftError when they disagree."""
    if "views" not in meta:
        if meta.get("version") != FORMAT_VERSION:
            raise StoreDamaged(f"{where}: a version-{meta.get('version')} store must list its views")
        return [legacy_view_name(meta)]
    try:
        views = check_views(meta["views"], where)
    except LiftError as e:
        raise StoreDamaged(str(e)) from None
    want = format_version(len(views), "transform" in meta)
    if meta.get("version") != want:
        held = " and a transform" if "transform" in meta else ""
        raise StoreDamaged(
            f"{where}: {len(views)} view(s){held} in a version-{meta.get('version')} store (expected version {want})"
        )
    return views


def shard_file_sizes(rows: int, dim: int, dtype: str, keys_bytes: int, views: int = 1) -> dict[str, int]:
    """The exact byte size of every file of a shard of `views` vectors per row: anything else means
    the shard is damaged."""
    codec = get_codec(dtype)
    sizes = {
        "emb": rows * views * dim * codec.storage.itemsize,
        "keys": keys_bytes,
        "koff": (rows + 1) * OFFSET_DTYPE.itemsize,
        "khash": rows * KEY_HASH_DTYPE.itemsize,
    }
    if codec.has_scale:
        sizes["scale"] = rows * views * SCALE_DTYPE.itemsize
    return sizes


def key_hashes(encoded_keys: Iterable[bytes]) -> np.ndarray:
    """blake2b-64 of each utf-8 key, (N,) uint64: stable across machines and Python runs."""
    digests = b"".join(hashlib.blake2b(k, digest_size=8).digest() for k in encoded_keys)
    return np.frombuffer(digests, dtype=KEY_HASH_DTYPE)


def key_hash(encoded_key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(encoded_key, digest_size=8).digest(), "little")


def new_checksum() -> Any:
    return hashlib.blake2b(digest_size=CHECKSUM_BYTES)


def file_checksum(path: Path) -> str:
    """blake2b of a file, streamed in chunks (never the whole file in memory)."""
    h = new_checksum()
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def combined_checksum(files: dict[str, dict[str, Any]]) -> str:
    """One checksum per shard: the hash of its files' hashes, in a fixed order."""
    text = "".join(f"{ext}:{files[ext]['bytes']}:{files[ext]['blake2b']}\n" for ext in sorted(files))
    h = new_checksum()
    h.update(text.encode())
    return "blake2b:" + h.hexdigest()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """Self-checksum of a manifest (all fields but this one), so a damaged manifest is caught on open."""
    body = {k: v for k, v in manifest.items() if k != "manifest_checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    h = new_checksum()
    h.update(text.encode())
    return h.hexdigest()


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from `path`, or a LiftError naming the file and what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise LiftError(f"{path}: {what} is missing") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise StoreDamaged(f"{path}: {what} is not readable JSON ({e})") from None
    if not isinstance(obj, dict):
        raise StoreDamaged(f"{path}: {what} is not a JSON object")
    return obj


def inside(root: Path, rel: str) -> Path:
    """`root/rel`, refusing paths that leave the store (a damaged or hostile manifest)."""
    if not isinstance(rel, str) or os.path.isabs(rel) or ".." in Path(rel).parts:
        raise StoreDamaged(f"{root}: manifest names a file outside the store: {rel!r}")
    return root / rel


def check_header(header: dict[str, Any], where: Path) -> None:
    """Refuse other formats and versions this code does not know."""
    if header.get("format") != FORMAT_NAME:
        raise LiftError(f"{where}: not a lift embedding store (format {header.get('format')!r})")
    if header.get("version") not in SUPPORTED_VERSIONS:
        raise LiftError(
            f"{where}: store format version {header.get('version')!r} is not supported "
            f"(this lift reads versions {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
