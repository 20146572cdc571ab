"""The on-disk layout of an embedding store: file names, sizes, key hashes and checksums.

STORE/store.json            header: format, version, encoder identity, dim, dtype, shard names
STORE/shards/00000.emb      (rows, dim) codes, little-endian, fixed stride (np.memmap-able)
STORE/shards/00000.scale    (rows,) float32 per-row scales (int8 only)
STORE/shards/00000.keys     the keys, utf-8, concatenated
STORE/shards/00000.koff     (rows + 1,) uint64 byte offsets into .keys
STORE/shards/00000.khash    (rows,) uint64 key hashes in row order (the global index is built from them)
STORE/shards/00000.json     sidecar: rows, skipped, per-file sizes and blake2b; written last
STORE/index.hash            (total,) uint64 key hashes, sorted
STORE/index.row             (total,) uint64 global row of each hash (store order)
STORE/manifest.json         written once every shard exists; its presence means "complete"
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
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
HEADER = "store.json"
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


def shard_file_sizes(rows: int, dim: int, dtype: str, keys_bytes: int) -> dict[str, int]:
    """The exact byte size of every file of a shard: anything else means the shard is damaged."""
    codec = get_codec(dtype)
    sizes = {
        "emb": rows * dim * codec.storage.itemsize,
        "keys": keys_bytes,
        "koff": (rows + 1) * OFFSET_DTYPE.itemsize,
        "khash": rows * KEY_HASH_DTYPE.itemsize,
    }
    if codec.has_scale:
        sizes["scale"] = rows * SCALE_DTYPE.itemsize
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
    if header.get("version") != FORMAT_VERSION:
        raise LiftError(
            f"{where}: store format version {header.get('version')!r} is not supported "
            f"(this lift reads version {FORMAT_VERSION})"
        )
