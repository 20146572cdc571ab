"""Writing an embedding store: one shard at a time, atomically, resumable, safe under torchrun.

Each shard's files are written to temp names, fsynced and renamed; its small sidecar (rows,
sizes, checksums) is written last, so a shard counts as done exactly when its sidecar agrees with
its files. Ranks write disjoint shards and never touch a shared file; one process calls
`finalize()` once all shards exist, which builds the key index and writes the manifest.

A transformed store (`transform=`, written by `lift store transform`) expects its transform file
saved in the folder before the writer opens it; the header records the transform's identity (a
resumed job must bring the same one) and the manifest the file's size and checksum.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lift.atomic import atomic_write, write_json
from lift.errors import LiftError
from lift.identity import identity_diff
from lift.store.codecs import get_codec
from lift.store.format import (
    DEFAULT_VIEW,
    FORMAT_NAME,
    HEADER,
    INDEX_FILES,
    MANIFEST,
    OFFSET_DTYPE,
    SHARD_DIR,
    TRANSFORM_FILE,
    check_header,
    check_views,
    combined_checksum,
    file_checksum,
    format_version,
    key_hashes,
    manifest_checksum,
    read_json,
    shard_file_sizes,
    shard_prefix,
)
from lift.store.index import MAX_SORT_ROWS, HashingWriter, build_index
from lift.store.transform import StoreTransform


class ViewsDiffer(LiftError):
    """A job writes other views than the store holds (`store_views`, `job_views`): a stage that knows
    where the views come from (`lift embed`: the caption fields) can say so in its own words."""

    def __init__(self, message: str, *, store_views: Any, job_views: list[str]) -> None:
        super().__init__(message)
        self.store_views, self.job_views = store_views, job_views


def _jsonable(value: Any, what: str) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise LiftError(f"store {what} must be JSON-serialisable: {e}") from None
    return value


def _remove_temps(folder: Path, stem: str = "") -> None:
    """Temp files a killed writer left behind (atomic_write names them `.NAME.XXXX.tmp`)."""
    if folder.is_dir():
        for p in folder.glob(f".{stem}*.tmp" if not stem else f".{stem}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _transform_words(identity: Any) -> str:
    """A transform identity (or None) in a few words, for refusals."""
    if identity is None:
        return "no transform"
    chain = identity.get("chain") if isinstance(identity, dict) else None
    return f"transform {'+'.join(map(str, chain)) or 'identity'}" if isinstance(chain, list) else "transform"


class StoreWriter:
    """Creates a store folder (or checks that an existing one matches) and writes its shards.

    `views`: the names of the vectors each key holds (one per caption field, say); `write_shard`
    then takes (N, V, dim) embeddings ((N, dim) also for one view). `transform`: the map from the
    encoder's raw output to these vectors, already saved as STORE/transform.safetensors.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        identity: dict[str, Any],
        dim: int,
        dtype: str = "float16",
        shard_names: list[str],
        sources: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        views: list[str] | tuple[str, ...] = (DEFAULT_VIEW,),
        transform: StoreTransform | None = None,
    ) -> None:
        self.root = Path(out_dir)
        self.codec = get_codec(dtype)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise LiftError(f"store dim must be a positive integer, got {dim!r}")
        names = [str(n) for n in shard_names]
        if not names:
            raise LiftError(f"{self.root}: a store needs at least one shard")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise LiftError(f"{self.root}: shard name {dup!r} is given twice; shard names must be unique")
        self.identity = dict(_jsonable(identity, "identity"))
        self.dim, self.dtype, self.shard_names = dim, dtype, names
        self.views = check_views(views, self.root)
        self.sources = list(_jsonable(sources or [], "sources"))
        self.extra = dict(_jsonable(extra or {}, "extra"))
        if transform is not None and transform.out_dim != dim:
            raise LiftError(
                f"{self.root}: the transform gives {transform.out_dim}-d vectors, the store holds {dim}-d"
            )
        self.transform = transform
        self.header = {
            "format": FORMAT_NAME,
            "version": format_version(len(self.views), transform is not None),
            "identity": self.identity,
            "dim": dim,
            "dtype": dtype,
            "views": self.views,
            "shard_names": names,
        }
        if transform is not None:
            self.header["transform"] = transform.identity
        # the fields that name the views in every file; empty when resuming a store begun before views
        # existed, which is finished in its own (one-view, version 1) layout
        self._views_field: dict[str, Any] = {"views": self.views}
        self._open_or_create()

    @property
    def num_shards(self) -> int:
        return len(self.shard_names)

    @property
    def num_views(self) -> int:
        return len(self.views)

    # ---- the store folder -------------------------------------------------------------------------

    def _open_or_create(self) -> None:
        header_path = self.root / HEADER
        if self.root.exists() and not self.root.is_dir():
            raise LiftError(f"{self.root}: exists and is not a folder")
        entries = [p.name for p in self.root.iterdir()] if self.root.is_dir() else []
        if HEADER in entries:
            self._check_matches(read_json(header_path, "store header"))
        else:
            # another rank may be creating the same store right now: its temp header is no conflict;
            # a transformed store's transform is saved before its header
            ours = (f".{HEADER}.", f".{TRANSFORM_FILE}.") if self.transform is not None else (f".{HEADER}.",)
            others = [e for e in entries if not e.startswith(ours)]
            if self.transform is not None and TRANSFORM_FILE in others:
                others.remove(TRANSFORM_FILE)
                self._check_transform_file()
            if others:
                raise LiftError(
                    f"{self.root}: folder is not empty and is not a lift embedding store "
                    f"(found {', '.join(sorted(others)[:3])}); choose an empty or new folder"
                )
            if self.transform is not None:
                self._check_transform_file()
            write_json(header_path, self.header)  # same content from every rank: last rename wins
        (self.root / SHARD_DIR).mkdir(exist_ok=True)

    def _check_transform_file(self) -> None:
        """The transform saved in the folder must be this job's."""
        assert self.transform is not None
        path = self.root / TRANSFORM_FILE
        if not path.exists():
            raise LiftError(f"{path}: the store's transform is missing; save it before writing the store")
        saved = StoreTransform.load(path)
        if saved != self.transform:
            raise LiftError(
                f"{path}: holds another {_transform_words(saved.identity)} than this job's "
                f"{_transform_words(self.transform.identity)}; write to a new output folder"
            )

    def _check_matches(self, found: dict[str, Any]) -> None:
        where = self.root / HEADER
        check_header(found, where)
        diff = identity_diff(self.identity, found.get("identity") or {})
        if diff:
            raise LiftError(
                f"text encoder mismatch between this job and store {self.root} ({'; '.join(diff)}), this "
                "job's value first; write to a new output folder, or rerun with the store's settings"
            )
        if "views" not in found:  # begun before views existed: one view, named by the job's settings
            if self.num_views > 1:
                raise LiftError(
                    f"{self.root}: the store was begun by a lift without views (one vector per key) but "
                    f"this job writes views={self.views!r}; use a new output folder"
                )
            self._views_field = {}
            found = {**found, "views": self.views}
        if found.get("views") != self.views:
            raise ViewsDiffer(
                f"{self.root}: the store has views={found.get('views')!r} but this job writes "
                f"views={self.views!r}; use a new output folder or the store's settings",
                store_views=found.get("views"),
                job_views=self.views,
            )
        theirs_t, ours_t = found.get("transform"), self.header.get("transform")
        if theirs_t != ours_t:
            then, now = _transform_words(theirs_t), _transform_words(ours_t)
            same = " (another fit)" if then == now else ""
            raise LiftError(
                f"{self.root}: the store holds {then} but this job writes {now}{same}; use a new output folder "
                "or the store's settings"
            )
        if self.transform is not None:
            self._check_transform_file()
        for key in ("dim", "dtype"):
            if found.get(key) != self.header[key]:
                raise LiftError(
                    f"{self.root}: the store has {key}={found.get(key)!r} but this job writes "
                    f"{key}={self.header[key]!r}; use a new output folder or the store's settings"
                )
        theirs = found.get("shard_names")
        if theirs != self.shard_names:
            if not isinstance(theirs, list) or len(theirs) != len(self.shard_names):
                detail = f"{len(theirs) if isinstance(theirs, list) else '?'} shards in the store, {self.num_shards} in this job"
            else:
                i = next(i for i, (a, b) in enumerate(zip(theirs, self.shard_names)) if a != b)
                detail = f"shard {i} is {theirs[i]!r} in the store and {self.shard_names[i]!r} in this job"
            raise LiftError(
                f"{self.root}: shard_names differ ({detail}); the inputs changed since the store began"
            )

    # ---- shards -----------------------------------------------------------------------------------

    def _prefix(self, i: int) -> str:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_shards:
            raise LiftError(f"{self.root}: shard index {i!r} out of range (0..{self.num_shards - 1})")
        return shard_prefix(int(i), self.num_shards)

    def _sidecar_path(self, i: int) -> Path:
        return self.root / f"{self._prefix(i)}.json"

    def done_entry(self, i: int, *, deep: bool = False) -> dict[str, Any] | None:
        """Shard i's manifest entry (rows, skipped, truncated, inputs, files) if its sidecar and files
        agree, else None. `deep=True` also recomputes the checksums (reads the whole shard)."""
        path = self._sidecar_path(i)
        if not path.exists():
            return None
        try:
            side = read_json(path, "shard sidecar")
            entry = side["shard"]
            if (side.get("index"), side.get("dim"), side.get("dtype")) != (i, self.dim, self.dtype):
                return None
            if side.get("views") != self._views_field.get("views"):
                return None
            if entry["name"] != self.shard_names[i] or entry["path"] != self._prefix(i):
                return None
            expected = shard_file_sizes(
                entry["rows"], self.dim, self.dtype, entry["files"]["keys"]["bytes"], self.num_views
            )
            if set(entry["files"]) != set(expected):
                return None
            for ext, size in expected.items():
                f = self.root / f"{entry['path']}.{ext}"
                if entry["files"][ext]["bytes"] != size or not f.exists() or f.stat().st_size != size:
                    return None
                if deep and file_checksum(f) != entry["files"][ext]["blake2b"]:
                    return None
        except (LiftError, KeyError, TypeError):
            return None
        return entry

    def is_done(self, i: int, *, deep: bool = False) -> bool:
        """Shard i was completely written: its sidecar exists and every file has the recorded size.

        `deep=True` also recomputes the checksums (reads the whole shard).
        """
        return self.done_entry(i, deep=deep) is not None

    def _check_shard_input(
        self, i: int, keys: list[str], embeddings: np.ndarray, counts: dict[str, Any]
    ) -> list[bytes]:
        name = f"{self.root} shard {i} ({self.shard_names[i]})"
        emb = np.asarray(embeddings)
        if self.num_views == 1 and emb.ndim == 2:
            emb = emb[:, None]
        if emb.ndim != 3 or emb.shape[1:] != (self.num_views, self.dim):
            want = f"(N, {self.dim})" if self.num_views == 1 else f"(N, {self.num_views}, {self.dim})"
            views = "" if self.num_views == 1 else f" ({self.num_views} views: {', '.join(self.views)})"
            raise LiftError(f"{name}: embeddings have shape {np.shape(embeddings)}, expected {want}{views}")
        if emb.shape[0] != len(keys):
            raise LiftError(f"{name}: {len(keys)} keys but {emb.shape[0]} embeddings")
        for what, n in counts.items():
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
                raise LiftError(f"{name}: {what} must be a count >= 0, got {n!r}")
        bad = np.argwhere(~np.isfinite(emb).all(axis=2))
        if bad.size:
            row, view = bad[0]
            which = "" if self.num_views == 1 else f" view {self.views[view]!r}"
            raise LiftError(f"{name}: embedding of key {keys[row]!r} (row {row}){which} is not finite")
        encoded = []
        for row, key in enumerate(keys):
            if not isinstance(key, str) or not key:
                raise LiftError(f"{name} row {row}: key {key!r} is not a non-empty string")
            try:
                encoded.append(key.encode("utf-8"))
            except UnicodeEncodeError:
                raise LiftError(f"{name} row {row}: key {key!r} is not valid unicode") from None
        if len(set(encoded)) != len(encoded):
            seen: set[bytes] = set()
            dup = next(k for k in encoded if k in seen or seen.add(k))
            raise LiftError(f"{name}: duplicate key {dup.decode()!r}; keys must be unique within a store")
        return encoded

    def write_shard(
        self, i: int, keys: list[str], embeddings: np.ndarray, skipped: int = 0, *, truncated: int = 0,
        inputs: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """Write shard i (replacing any earlier version of it): keys (N,), embeddings (N, V, dim) float32
        in the order of `views` ((N, dim) for a one-view store); view v of row r is stored as physical
        row r * V + v.

        `skipped`: input rows left out; `truncated`: rows whose text was cut; `inputs`: what the shard
        was made from (a JSON dict, e.g. the input file's fingerprint and read settings), kept in its
        manifest entry so a rerun can tell whether the shard still belongs to the job.
        """
        prefix = self._prefix(i)
        keys = list(keys)
        encoded = self._check_shard_input(i, keys, embeddings, {"skipped": skipped, "truncated": truncated})
        inputs = _jsonable(inputs, "shard inputs")
        # a rewrite must first un-finish the shard (and the store), so a kill mid-way never leaves a
        # sidecar or manifest describing bytes that are no longer there
        for stale in (self._sidecar_path(i), self.root / MANIFEST):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        stem = prefix.split("/")[-1]
        _remove_temps(self.root / SHARD_DIR, stem)

        flat = np.asarray(embeddings, dtype=np.float32).reshape(len(keys) * self.num_views, self.dim)
        codes, scales = self.codec.encode(flat)  # (rows * V, dim), (rows * V,): row-major, views inner
        lengths = np.fromiter((len(k) for k in encoded), dtype=np.int64, count=len(encoded))
        arrays: dict[str, np.ndarray | bytes] = {"emb": codes}
        if scales is not None:
            arrays["scale"] = scales
        arrays["keys"] = b"".join(encoded)
        arrays["koff"] = np.concatenate([[0], np.cumsum(lengths)]).astype(OFFSET_DTYPE)
        arrays["khash"] = key_hashes(encoded)
        files = {}
        for ext, data in arrays.items():
            with atomic_write(self.root / f"{prefix}.{ext}") as f:
                w = HashingWriter(f)
                w.write(data)
            files[ext] = w.record()
        entry = {
            "name": self.shard_names[i],
            "path": prefix,
            "rows": len(keys),
            "skipped": int(skipped),
            "truncated": int(truncated),
            "checksum": combined_checksum(files),
            "files": files,
        }
        if inputs is not None:
            entry["inputs"] = inputs
        side = {"format": FORMAT_NAME, "version": self.header["version"], "index": int(i), "dim": self.dim}
        side |= {"dtype": self.dtype, **self._views_field, "shard": entry}
        write_json(self._sidecar_path(i), side)

    # ---- completing the store ---------------------------------------------------------------------

    def _reusable_index(self, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The existing manifest's index when the shards are unchanged since it was built."""
        try:
            old = read_json(self.root / MANIFEST, "manifest")
            if old.get("manifest_checksum") != manifest_checksum(old) or old.get("shards") != entries:
                return None
            files = old["index"]["files"]
            if all((self.root / n).stat().st_size == files[n]["bytes"] for n in INDEX_FILES):
                return old["index"]
        except (LiftError, OSError, KeyError, TypeError):
            pass
        return None

    def finalize(self, *, max_sort_rows: int = MAX_SORT_ROWS) -> dict[str, Any]:
        """Build the key index and write manifest.json once every shard exists; returns the manifest."""
        self._check_matches(read_json(self.root / HEADER, "store header"))  # another rank may differ
        entries = [self.done_entry(i) for i in range(self.num_shards)]
        missing = [self.shard_names[i] for i, e in enumerate(entries) if e is None]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise LiftError(
                f"{self.root}: cannot finalize, {len(missing)} of {self.num_shards} shards are not written: {shown}"
            )
        index = self._reusable_index(entries) or {
            "files": build_index(
                self.root, [(e["path"], e["rows"]) for e in entries], max_sort_rows=max_sort_rows
            )
        }
        manifest: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": self.header["version"],
            "complete": True,
            "identity": self.identity,
            "dim": self.dim,
            "dtype": self.dtype,
            **self._views_field,
            "rows": sum(e["rows"] for e in entries),
            "skipped": sum(e["skipped"] for e in entries),
            "truncated": sum(e.get("truncated", 0) for e in entries),  # older shards do not record it
            "num_shards": self.num_shards,
            "shards": entries,
            "index": index,
            "sources": self.sources,
            "extra": self.extra,
        }
        if self.transform is not None:
            self._check_transform_file()
            path = self.root / TRANSFORM_FILE
            manifest["transform"] = {
                "file": TRANSFORM_FILE,
                "bytes": path.stat().st_size,
                "blake2b": file_checksum(path),
                "identity": self.transform.identity,
            }
        manifest["manifest_checksum"] = manifest_checksum(manifest)
        _remove_temps(self.root)
        _remove_temps(self.root / SHARD_DIR)
        write_json(self.root / MANIFEST, manifest)
        return manifest
