"""Reading an embedding store: memory-mapped, key lookup without loading embeddings, streaming.

Views: every key holds one vector per view (`store.views`). A one-view store reads as it always
has ((dim,) per key, (n, dim) per batch); a store of V views gives (V, dim) per key and (n, V, dim)
per batch, or (n, dim) of one view when `view=` (an index or a name) is given.

Integrity: `open_store` checks every file's size against the manifest (truncated or grown files
are refused up front), and a key lookup compares the stored key, so damaged keys or index give an
error, never another key's vector. Lookups do NOT checksum the embedding bytes they read (that
would mean hashing whole shards per read); `store.verify()` / `lift store verify` does the full pass.
"""

from __future__ import annotations

import bisect
import os
import sys
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lift.errors import LiftError
from lift.store.codecs import get_codec
from lift.store.format import (
    HEADER,
    INDEX_FILES,
    INDEX_ROW_DTYPE,
    KEY_HASH_DTYPE,
    MANIFEST,
    OFFSET_DTYPE,
    SCALE_DTYPE,
    SHARD_DIR,
    StoreDamaged,
    check_header,
    file_checksum,
    inside,
    key_hash,
    key_hashes,
    manifest_checksum,
    read_json,
    store_views,
)
from lift.store.transform import StoreTransform
from lift.store.verify import manifest_files, size_problems, transform_problems, verify_store


class KeyNotInStore(LiftError, KeyError):
    """A key the store does not hold (a LiftError for the CLI, a KeyError for Python code)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def _map(path: Path, dtype: np.dtype | str, shape: tuple[int, ...]) -> np.ndarray:
    """Read-only memory map of a whole file whose size must be exactly shape * itemsize."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    try:
        actual = os.path.getsize(path)
    except OSError:
        raise StoreDamaged(f"{path}: file is missing") from None
    if actual != size:
        raise StoreDamaged(f"{path}: has {actual} bytes, expected {size} (truncated or damaged)")
    if size == 0:  # an empty file cannot be mapped
        return np.empty(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape).view(np.ndarray)


def _int_view(arr: np.ndarray) -> Sequence[int]:
    """Indexable uint64s that yield plain Python ints, ~10x cheaper per item than numpy scalars:
    what the per-key lookup path reads. (numpy itself on big-endian hosts.)"""
    if sys.byteorder != "little":
        return arr
    return memoryview(np.ascontiguousarray(arr)).cast("B").cast("Q")


class _Shard:
    """The memory maps of one shard, opened on first use."""

    def __init__(
        self, root: Path, index: int, entry: dict[str, Any], dim: int, dtype: str, views: int
    ) -> None:
        codec = get_codec(dtype)
        rows, base = entry["rows"], inside(root, entry["path"])
        self.index, self.name, self.rows = index, entry["name"], rows
        self.stem = str(base)
        # the (rows * V, dim) file seen as (rows, V, dim): view v of row r is physical row r * V + v
        self.emb = _map(Path(f"{base}.emb"), codec.storage, (rows, views, dim))
        self.scale = _map(Path(f"{base}.scale"), SCALE_DTYPE, (rows, views)) if codec.has_scale else None
        self.keys = _map(Path(f"{base}.keys"), np.uint8, (entry["files"]["keys"]["bytes"],))
        self.koff = _map(Path(f"{base}.koff"), OFFSET_DTYPE, (rows + 1,))
        self.koff_ints = _int_view(self.koff)
        self.key_view = memoryview(self.keys).cast("B")

    def key_bounds(self, start: int, stop: int) -> np.ndarray:
        """Byte offsets of keys start..stop (stop + 1 - start values), checked for damage."""
        off = self.koff[start : stop + 1].astype(np.int64)
        if off.size and (off[0] < 0 or off[-1] > self.keys.size or np.any(off[1:] < off[:-1])):
            raise StoreDamaged(f"{self.stem}.koff: key offsets of rows {start}..{stop} are damaged")
        return off

    def has_key(self, row: int, encoded: bytes) -> bool:
        """Whether row holds this key (the lookup hot path: plain ints and buffer slices)."""
        a, b = self.koff_ints[row], self.koff_ints[row + 1]
        if not 0 <= a <= b <= len(self.key_view):
            raise StoreDamaged(f"{self.stem}.koff: key offsets of row {row} are damaged")
        return self.key_view[a:b] == encoded

    def keys_range(self, start: int, stop: int) -> list[str]:
        off = self.key_bounds(start, stop)
        if off.size < 2:
            return []
        blob = self.keys[off[0] : off[-1]].tobytes()
        rel = (off - off[0]).tolist()
        try:
            text = blob.decode("utf-8")
            if len(text) == len(blob):  # all ASCII: character offsets are byte offsets
                return [text[a:b] for a, b in zip(rel[:-1], rel[1:])]
            return [blob[a:b].decode("utf-8") for a, b in zip(rel[:-1], rel[1:])]
        except UnicodeDecodeError:
            raise StoreDamaged(
                f"{self.stem}.keys: keys of rows {start}..{stop} are not valid utf-8"
            ) from None


class EmbeddingStore:
    """A finished store. `store[key]`, `store.get(shard, row)`, `get_many`, `iter_shard`, `keys()`;
    `views`, `num_views`, `view_index(name)`."""

    def __init__(self, root: Path, manifest: dict[str, Any], *, max_open_shards: int = 64) -> None:
        self.path, self.manifest = root, manifest
        self.dim: int = manifest["dim"]
        self.dtype: str = manifest["dtype"]
        self.identity: dict[str, Any] = manifest["identity"]
        self.views: list[str] = store_views(manifest, root / MANIFEST)
        self._codec = get_codec(self.dtype)
        self._entries: list[dict[str, Any]] = manifest["shards"]
        self._starts = [0]
        for e in self._entries:
            self._starts.append(self._starts[-1] + e["rows"])
        self._total = self._starts[-1]
        self._hash = _map(root / INDEX_FILES[0], KEY_HASH_DTYPE, (self._total,))
        self._hash_ints = _int_view(self._hash)
        self._rows_ints = _int_view(_map(root / INDEX_FILES[1], INDEX_ROW_DTYPE, (self._total,)))
        self._open: OrderedDict[int, _Shard] = OrderedDict()
        self._max_open = max_open_shards
        self._transform: StoreTransform | None = None

    # ---- shape of the store -----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._total

    @property
    def num_shards(self) -> int:
        return len(self._entries)

    @property
    def num_views(self) -> int:
        return len(self.views)

    @property
    def bytes_per_row(self) -> int:
        """Bytes of vectors (every view, int8 scales included) each key takes on disk."""
        per_view = self.dim * self._codec.storage.itemsize + (
            SCALE_DTYPE.itemsize if self._codec.has_scale else 0
        )
        return self.num_views * per_view

    @property
    def transform(self) -> StoreTransform | None:
        """The map from the text encoder's raw output to this store's vectors (`lift store transform`),
        loaded on first use and checked against the manifest; None for an untransformed store."""
        rec = self.manifest.get("transform")
        if rec is None:
            return None
        if self._transform is None:
            # checksummed on every load (unlike shards, it is small): a damaged map would silently change
            # every text vector it is applied to
            path = inside(self.path, rec["file"])
            if path.is_file() and file_checksum(path) != rec["blake2b"]:
                raise StoreDamaged(
                    f"{path}: checksum mismatch (the file is corrupted); run `lift store verify`"
                )
            problems = transform_problems(self.path, self.manifest)
            if problems:
                raise StoreDamaged(f"{self.path}: {problems[0]}; run `lift store verify`")
            self._transform = StoreTransform.load(path)
        return self._transform

    def view_index(self, view: str | int) -> int:
        """The position of a view, given by name or index; a one-line LiftError naming the views otherwise."""
        if isinstance(view, (int, np.integer)) and not isinstance(view, bool):
            if 0 <= view < self.num_views:
                return int(view)
            raise LiftError(
                f"{self.path}: view {view} out of range; the store has {self.num_views} view(s): "
                f"{', '.join(self.views)}"
            )
        if isinstance(view, str) and view in self.views:
            return self.views.index(view)
        raise LiftError(f"{self.path}: no view {view!r}; the store's views: {', '.join(self.views)}")

    def _view_or_all(self, view: str | int | None) -> int | None:
        """The view index to read (None: every view, as a [.., V, dim] axis); one-view stores read view 0."""
        if view is not None:
            return self.view_index(view)
        return 0 if self.num_views == 1 else None

    @property
    def shard_names(self) -> list[str]:
        return [e["name"] for e in self._entries]

    @property
    def nbytes(self) -> int:
        """Bytes on disk: every file of the store."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def shard_len(self, i: int) -> int:
        return self._entries[self._check_shard(i)]["rows"]

    def _check_shard(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_shards:
            raise LiftError(f"{self.path}: shard {i!r} out of range (the store has {self.num_shards})")
        return int(i)

    def _shard(self, i: int) -> _Shard:
        """LRU of open shards: a store of 100k shards must not hold 100k open files."""
        sh = self._open.get(i)
        if sh is not None:
            self._open.move_to_end(i)
            return sh
        i = self._check_shard(i)
        sh = self._open[i] = _Shard(self.path, i, self._entries[i], self.dim, self.dtype, self.num_views)
        if len(self._open) > self._max_open:
            self._open.popitem(last=False)
        return sh

    def _decode(self, sh: _Shard, rows: np.ndarray | slice | int, view: int | None) -> np.ndarray:
        """float32 vectors of `rows`: [.., dim] of one view, or [.., V, dim] when view is None."""
        at = (rows, slice(None)) if view is None else (rows, view)
        return self._codec.decode(sh.emb[at], None if sh.scale is None else sh.scale[at])

    # ---- lookups ----------------------------------------------------------------------------------

    def get(self, shard: int, row: int) -> np.ndarray:
        """The float32 embedding at (shard, row): (dim,) in a one-view store, else (V, dim)."""
        sh = self._shard(shard)
        if not isinstance(row, (int, np.integer)) or not 0 <= row < sh.rows:
            raise LiftError(f"{self.path}: row {row!r} out of range for shard {shard} ({sh.rows} rows)")
        return self._decode(sh, row, self._view_or_all(None))

    def read_rows(
        self, shard: int, rows: Sequence[int] | np.ndarray, view: str | int | None = None
    ) -> np.ndarray:
        """float32 vectors of rows of one shard (ascending rows read fastest): (n, dim) in a one-view store
        or of the given `view`, else (n, V, dim)."""
        sh = self._shard(shard)
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= sh.rows):
            raise LiftError(f"{self.path}: rows out of range for shard {shard} ({sh.rows} rows)")
        return self._decode(sh, idx, self._view_or_all(view))

    def shard_key(self, shard: int, row: int) -> str:
        """The key at (shard, row)."""
        sh = self._shard(shard)
        if not isinstance(row, (int, np.integer)) or not 0 <= row < sh.rows:
            raise LiftError(f"{self.path}: row {row!r} out of range for shard {shard} ({sh.rows} rows)")
        return sh.keys_range(int(row), int(row) + 1)[0]

    def _scan(self, i: int, h: int, encoded: bytes) -> tuple[_Shard, int] | None:
        """Index entries from position i on share the hash h; the stored key decides which is ours."""
        hashes, rows, starts = self._hash_ints, self._rows_ints, self._starts
        while i < self._total and hashes[i] == h:
            g = rows[i]
            if not 0 <= g < self._total:
                raise StoreDamaged(f"{self.path}: the key index is damaged (row {g} of {self._total})")
            s = bisect.bisect_right(starts, g) - 1
            sh = self._shard(s)
            if sh.has_key(g - starts[s], encoded):
                return sh, g - starts[s]
            i += 1
        return None

    def _find(self, key: object) -> tuple[_Shard, int] | None:
        if not isinstance(key, str):
            return None
        encoded = key.encode("utf-8", "surrogatepass")
        h = key_hash(encoded)
        return self._scan(bisect.bisect_left(self._hash_ints, h), h, encoded)

    def locate(self, key: str) -> tuple[int, int] | None:
        """(shard, row) of a key, or None when the store does not hold it."""
        found = self._find(key)
        return None if found is None else (found[0].index, found[1])

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not None

    def __getitem__(self, key: str) -> np.ndarray:
        """The float32 embedding of a key: (dim,) in a one-view store, else (V, dim)."""
        found = self._find(key)
        if found is None:
            raise KeyNotInStore(f"key {key!r} is not in the store {self.path}")
        return self._decode(*found, self._view_or_all(None))

    def get_many(self, keys: Sequence[str], view: str | int | None = None) -> np.ndarray:
        """float32 vectors of n keys: (n, dim) in a one-view store or of the given `view` (index or
        name), else (n, V, dim). One vectorised index search, then one gather per shard."""
        v = self._view_or_all(view)
        keys = list(keys)
        if not all(isinstance(k, str) for k in keys):
            raise KeyNotInStore(f"keys must be strings (store {self.path})")
        encoded = [k.encode("utf-8", "surrogatepass") for k in keys]
        hashes = key_hashes(encoded)
        pos = np.searchsorted(self._hash, hashes)
        shards = np.empty(len(keys), np.int64)
        rows = np.empty(len(keys), np.int64)
        for j, (p, h, kb) in enumerate(zip(pos.tolist(), hashes.tolist(), encoded)):
            found = self._scan(p, h, kb)
            if found is None:
                raise KeyNotInStore(f"key {keys[j]!r} is not in the store {self.path}")
            shards[j], rows[j] = found[0].index, found[1]
        out = np.empty(
            (len(keys), self.dim) if v is not None else (len(keys), self.num_views, self.dim), np.float32
        )
        for s in np.unique(shards):
            sel = np.flatnonzero(shards == s)
            sel = sel[np.argsort(rows[sel], kind="stable")]  # ascending rows: friendlier to the page cache
            out[sel] = self._decode(self._shard(int(s)), rows[sel], v)
        return out

    # ---- streaming --------------------------------------------------------------------------------

    def shard_keys(self, i: int) -> list[str]:
        sh = self._shard(i)
        return sh.keys_range(0, sh.rows)

    def iter_shard(
        self, i: int, batch_size: int = 4096, view: str | int | None = None
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Shard i in row order, as (keys, float32) batches: (b, dim) in a one-view store or of the given
        `view`, else (b, V, dim)."""
        if batch_size < 1:
            raise LiftError(f"batch_size must be >= 1, got {batch_size}")
        v = self._view_or_all(view)  # checked before the first batch is asked for
        sh = self._shard(i)
        return self._iter_rows(sh, batch_size, v)

    def _iter_rows(
        self, sh: _Shard, batch_size: int, view: int | None
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        for start in range(0, sh.rows, batch_size):
            stop = min(start + batch_size, sh.rows)
            yield sh.keys_range(start, stop), self._decode(sh, slice(start, stop), view)

    def keys(self) -> Iterator[str]:
        """Every key, in store order (shard by shard, row by row)."""
        for i in range(self.num_shards):
            sh = self._shard(i)
            for start in range(0, sh.rows, 65536):
                yield from sh.keys_range(start, min(start + 65536, sh.rows))

    __iter__ = keys

    def verify(self, *, progress: bool = False) -> list[str]:
        """Full integrity pass (reads every byte): a list of problems, empty when healthy."""
        return verify_store(self.path, self.manifest, progress=progress)

    def close(self) -> None:
        self._open.clear()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        views = f", views={self.views}" if self.num_views > 1 else ""
        rec = self.manifest.get("transform")
        chain = f", transform={'+'.join(rec['identity']['chain']) or 'identity'}" if rec else ""
        return f"EmbeddingStore({str(self.path)!r}, rows={len(self)}, dim={self.dim}, dtype={self.dtype}{views}{chain})"


def _incomplete_message(root: Path) -> str:
    header = read_json(root / HEADER, "store header")
    names = header.get("shard_names") or []
    done = len(list((root / SHARD_DIR).glob("*.json")))
    return (
        f"{root}: the store is incomplete ({done} of {len(names)} shards written, no manifest); "
        "rerun the command that writes it to finish"
    )


def open_store(path: str | os.PathLike, *, check_sizes: bool = True) -> EmbeddingStore:
    """Open a finished store read-only. LiftError when it is not a store, incomplete, of an unknown
    format version, or (with `check_sizes`) has a missing, truncated or grown file."""
    root = Path(path)
    if not root.is_dir():
        raise LiftError(f"{root}: no such store folder")
    if not (root / MANIFEST).exists():
        if (root / HEADER).exists():
            raise LiftError(_incomplete_message(root))
        raise LiftError(f"{root}: not a lift embedding store (no {MANIFEST})")
    manifest = read_json(root / MANIFEST, "manifest")
    check_header(manifest, root / MANIFEST)
    if manifest.get("manifest_checksum") != manifest_checksum(manifest):
        raise StoreDamaged(f"{root / MANIFEST}: manifest is damaged (its checksum does not match)")
    if manifest.get("complete") is not True:
        raise LiftError(f"{root}: the store is incomplete; rerun the command that writes it to finish")
    try:
        get_codec(manifest["dtype"])
        manifest_files(root, manifest)  # structure check: every field the reader relies on is there
        problems = size_problems(root, manifest) if check_sizes else []
        store = EmbeddingStore(root, manifest) if not problems else None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StoreDamaged(f"{root / MANIFEST}: manifest is malformed ({e})") from None
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise StoreDamaged(
            f"{root}: store is damaged: {'; '.join(problems[:3])}{more}; run `lift store verify`"
        )
    assert store is not None
    return store
