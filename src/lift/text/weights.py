"""A hash of a model folder's weight files, cached, so an identity check costs seconds once and
nothing afterwards (hashing a 14 GB LLM takes about a minute)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from lift.atomic import write_json
from lift.errors import LiftError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")
_CHUNK = 1 << 22


def cache_dir() -> Path:
    return Path(os.environ.get("LIFT_CACHE_DIR") or Path.home() / ".cache" / "lift")


def weight_files(folder: Path) -> list[Path]:
    """The weight files at the top of a model folder (training_args.bin is not a weight)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES) and p.name != "training_args.bin"
    )


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # a missing or damaged cache only costs a rehash


def weights_sha256(folder: str | os.PathLike) -> str:
    """sha256 over (name, sha256) of every weight file; file hashes cached by (abs path, size, mtime)."""
    folder = Path(folder)
    files = weight_files(folder)
    if not files:
        raise LiftError(f"{folder}: no weight files ({', '.join(WEIGHT_SUFFIXES)}); not a model folder")
    cache_path = cache_dir() / "weights_sha256.json"
    cache = _read_cache(cache_path)
    combined = hashlib.sha256()
    changed = False
    for f in files:
        st = f.stat()
        key = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in cache:
            cache[key] = _file_sha256(f)
            changed = True
        combined.update(f"{f.name}\0{cache[key]}\n".encode())
    if changed:
        with contextlib.suppress(OSError):  # a read-only home only loses the cache, never the answer
            write_json(cache_path, cache)
    return combined.hexdigest()
