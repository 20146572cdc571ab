"""Integrity checks of a finished store: file sizes (cheap, on every open) and the full pass
(`lift store verify`): recount rows, recompute every checksum, and name the damaged shards (and a
damaged transform)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lift.store.format import (
    HEADER,
    INDEX_FILES,
    INDEX_ROW_DTYPE,
    KEY_HASH_DTYPE,
    OFFSET_DTYPE,
    TRANSFORM_FILE,
    combined_checksum,
    file_checksum,
    inside,
    read_json,
    shard_file_sizes,
    store_views,
)
from lift.store.transform import StoreTransform


def _shard_label(i: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"shard {i} ({name})"


def manifest_files(root: Path, manifest: dict[str, Any]) -> list[tuple[str, Path, int, str]]:
    """(owner label, path, expected size, recorded blake2b) for every data file the manifest names."""
    out = []
    total = manifest["rows"]
    num_views = len(store_views(manifest, root / "manifest.json"))
    for name in INDEX_FILES:
        rec = manifest["index"]["files"][name]
        size = total * (KEY_HASH_DTYPE.itemsize if name == INDEX_FILES[0] else INDEX_ROW_DTYPE.itemsize)
        if rec["bytes"] != size:
            raise KeyError(f"index file {name} records {rec['bytes']} bytes, expected {size}")
        out.append((f"index ({name})", root / name, size, rec["blake2b"]))
    for i, entry in enumerate(manifest["shards"]):
        files = entry["files"]
        expected = shard_file_sizes(
            entry["rows"], manifest["dim"], manifest["dtype"], files["keys"]["bytes"], num_views
        )
        if set(files) != set(expected):
            raise KeyError(f"shard {i} lists files {sorted(files)}, expected {sorted(expected)}")
        for ext, size in expected.items():
            if files[ext]["bytes"] != size:
                raise KeyError(f"shard {i} records {files[ext]['bytes']} bytes of .{ext}, expected {size}")
            out.append(
                (_shard_label(i, entry), inside(root, f"{entry['path']}.{ext}"), size, files[ext]["blake2b"])
            )
    if "transform" in manifest:
        rec = manifest["transform"]
        if rec["file"] != TRANSFORM_FILE or not isinstance(rec["identity"]["chain"], list):
            raise KeyError(f"transform record names {rec['file']!r}, expected {TRANSFORM_FILE!r}")
        if not isinstance(rec["bytes"], int) or not isinstance(rec["blake2b"], str):
            raise KeyError("transform record lacks its size or checksum")
        out.append(("transform", inside(root, rec["file"]), rec["bytes"], rec["blake2b"]))
    return out


def transform_problems(root: Path, manifest: dict[str, Any]) -> list[str]:
    """A transformed store's transform must load, be the one the manifest records, and give its dim."""
    rec = manifest.get("transform")
    if rec is None:
        return []
    path = inside(root, rec["file"])
    try:
        t = StoreTransform.load(path)
    except Exception as e:  # reported, not raised: verify lists every problem
        return [f"transform: {e}"]
    if t.identity != rec["identity"]:
        return [f"transform: {path.name} is not the transform the manifest records (its identity differs)"]
    if t.out_dim != manifest["dim"]:
        return [f"transform: {path.name} gives {t.out_dim}-d vectors but the store holds {manifest['dim']}-d"]
    return []


def size_problems(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Missing, truncated or grown files (one stat per file; no data is read)."""
    problems = []
    for owner, path, size, _ in manifest_files(root, manifest):
        if not path.is_file():
            problems.append(f"{owner}: {path.name} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{owner}: {path.name} has {path.stat().st_size} bytes, expected {size}")
    return problems


def _offset_problems(path: Path, rows: int, keys_bytes: int) -> list[str]:
    """Key offsets must start at 0, never decrease, and end at the size of the keys file."""
    off = np.fromfile(path, dtype=OFFSET_DTYPE).astype(np.uint64)
    if off.size != rows + 1:
        return [f"{path.name} holds {off.size - 1} rows, expected {rows}"]
    if off[0] != 0 or off[-1] != keys_bytes or np.any(off[1:] < off[:-1]):
        return [f"{path.name}: key offsets are inconsistent"]
    return []


def _json_problems(path: Path, want: dict[str, Any], label: str) -> list[str]:
    """A writer-side JSON file (header, sidecar) must say exactly what the manifest says."""
    try:
        found = read_json(path, label)
    except Exception as e:  # reported, not raised: verify lists every problem
        return [f"{label}: {e}"]
    return [
        f"{label} {path.name}: {k} disagrees with the manifest" for k in want if found.get(k) != want[k]
    ] + [f"{label} {path.name}: unexpected field {k!r}" for k in found if k not in want]


def verify_store(root: Path, manifest: dict[str, Any], *, progress: bool = False) -> list[str]:
    """Every problem found (empty = healthy): sizes, row counts, checksums, sidecars, header."""
    problems = size_problems(root, manifest)
    if manifest["rows"] != sum(s["rows"] for s in manifest["shards"]):
        problems.append("manifest: total rows differ from the sum of the shards' rows")
    # "views" is in every file of a store that has it, and in none of one written before views existed
    header = {
        k: manifest[k] for k in ("format", "version", "identity", "dim", "dtype", "views") if k in manifest
    }
    if "transform" in manifest:
        header["transform"] = manifest["transform"]["identity"]
    problems += _json_problems(
        root / HEADER, {**header, "shard_names": [s["name"] for s in manifest["shards"]]}, "store header"
    )
    expected = manifest_files(root, manifest)
    for owner, path, size, digest in tqdm(
        expected, desc="verify", unit="file", disable=not progress, leave=False
    ):
        if path.is_file() and path.stat().st_size == size and file_checksum(path) != digest:
            problems.append(f"{owner}: {path.name} checksum mismatch (the file is corrupted)")
    if not any(p.startswith("transform:") for p in problems):  # a damaged file is reported once
        problems += transform_problems(root, manifest)
    for i, entry in enumerate(manifest["shards"]):
        label, files = _shard_label(i, entry), entry["files"]
        if combined_checksum(files) != entry["checksum"]:
            problems.append(f"{label}: shard checksum does not match its files' checksums")
        koff = inside(root, f"{entry['path']}.koff")
        if koff.is_file() and koff.stat().st_size == files["koff"]["bytes"]:
            problems += [
                f"{label}: {p}" for p in _offset_problems(koff, entry["rows"], files["keys"]["bytes"])
            ]
        side = {
            "format": manifest["format"],
            "version": manifest["version"],
            "index": i,
            "dim": manifest["dim"],
        }
        side |= {k: manifest[k] for k in ("dtype", "views") if k in manifest} | {"shard": entry}
        problems += [
            f"{label}: {p}" for p in _json_problems(inside(root, f"{entry['path']}.json"), side, "sidecar")
        ]
    return problems
