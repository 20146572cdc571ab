"""Our embedding store against the reference layout (parquet files of 100 rows, key + list<float32>).

Writes the same random unit vectors into both in a temp folder, then measures random key lookups
(the reference way: a key -> file dict, read that parquet file, find the row), sequential
streaming of every row with its key, and bytes on disk. With `--dtype int8` it also reports the
worst cosine between a stored vector and its float32 original.

Examples:
  lift bench store --json
  lift bench store --json --dtype int8
  lift bench store --json --rows 1000000 --dim 1024 --lookups 300
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lift.store import STORE_DTYPES, StoreWriter, open_store

NAME = "store"
HELP = "embedding store vs 100-row parquet files: random lookups/s, rows/s streamed, bytes"
REFERENCE_ROWS_PER_FILE = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=200_000, help="rows written into both layouts")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--dtype", choices=STORE_DTYPES, default="float16", help="our store's dtype")
    parser.add_argument("--shard-rows", type=int, default=10_000, help="rows per shard of our store")
    parser.add_argument("--lookups", type=int, default=300, help="random lookups timed on the reference")
    parser.add_argument("--seed", type=int, default=0)


def _shard_vectors(seed: int, shard: int, rows: int, dim: int) -> np.ndarray:
    """(rows, dim) random unit vectors, regenerated identically on demand (nothing kept in memory)."""
    x = np.random.default_rng([seed, shard]).standard_normal((rows, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _shards(n_rows: int, shard_rows: int) -> Iterator[tuple[int, list[str]]]:
    for i, start in enumerate(range(0, n_rows, shard_rows)):
        yield i, [f"{k:09d}" for k in range(start, min(start + shard_rows, n_rows))]


def _write_both(args: argparse.Namespace, ours: Path, ref: Path) -> dict[str, Path]:
    """Write our store and the reference parquet files; returns the reference key -> file dict."""
    shards = list(_shards(args.rows, args.shard_rows))
    writer = StoreWriter(
        ours,
        identity={"name": "bench-random-unit-vectors", "dim": args.dim},
        dim=args.dim,
        dtype=args.dtype,
        shard_names=[f"shard-{i:05d}" for i, _ in shards],
    )
    key_file: dict[str, Path] = {}
    ref.mkdir()
    for i, keys in shards:
        x = _shard_vectors(args.seed, i, len(keys), args.dim)
        writer.write_shard(i, keys, x)
        for start in range(0, len(keys), REFERENCE_ROWS_PER_FILE):
            part = slice(start, start + REFERENCE_ROWS_PER_FILE)
            path = ref / f"{keys[start]}.parquet"
            emb = pa.FixedSizeListArray.from_arrays(pa.array(x[part].reshape(-1)), args.dim).cast(
                pa.list_(pa.float32())
            )
            pq.write_table(pa.table({"key": pa.array(keys[part]), "embedding": emb}), path)
            key_file.update(dict.fromkeys(keys[part], path))
    writer.finalize()
    return key_file


def _reference_lookup(path: Path, key: str) -> np.ndarray:
    table = pq.read_table(path)
    row = table.column("key").to_pylist().index(key)
    return table.column("embedding")[row].values.to_numpy().astype(np.float32)


def _interleaved_rates(jobs: dict[str, Callable[[int], int]], rounds: int) -> dict[str, float]:
    """Items per second of each job, timed in alternating rounds so that both sides see the same
    load on a shared machine. jobs: name -> fn(round) returning the items it handled."""
    seconds = dict.fromkeys(jobs, 0.0)
    items = dict.fromkeys(jobs, 0)
    for r in range(rounds):
        for name, fn in jobs.items():
            start = time.perf_counter()
            items[name] += fn(r)
            seconds[name] += time.perf_counter() - start
    return {name: items[name] / seconds[name] for name in jobs}


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _stream_reference(ref: Path, dim: int) -> int:
    rows = 0
    for path in sorted(ref.glob("*.parquet")):
        table = pq.read_table(path)
        keys = table.column("key").to_pylist()
        emb = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        assert emb.shape == (len(keys), dim)
        rows += len(keys)
    return rows


def run(args: argparse.Namespace) -> dict:
    print(f"bench store: {args.rows:,} rows x {args.dim} ({args.dtype}) vs 100-row parquet", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="lift-bench-store-") as tmp:
        ours_dir, ref_dir = Path(tmp) / "ours", Path(tmp) / "reference"
        key_file = _write_both(args, ours_dir, ref_dir)
        store = open_store(ours_dir)
        rng = random.Random(args.seed)
        all_keys = list(key_file)

        # random lookups: far more for ours, which is fast enough to need them for a stable rate
        ref_keys = rng.sample(all_keys, min(args.lookups, len(all_keys)))
        our_keys = [rng.choice(all_keys) for _ in range(max(20 * args.lookups, 10_000))]
        rounds = 5
        rates = _interleaved_rates(
            {
                "ours": lambda r: len([store[k] for k in our_keys[r::rounds]]),
                "parquet": lambda r: len([_reference_lookup(key_file[k], k) for k in ref_keys[r::rounds]]),
            },
            rounds,
        )
        lookup_err = max(
            float(np.abs(store[k] - _reference_lookup(key_file[k], k)).max()) for k in ref_keys[:50]
        )

        # sequential streaming of every row with its key, two passes of each, alternating
        seq = _interleaved_rates(
            {
                "ours": lambda r: sum(
                    len(k) for i in range(store.num_shards) for k, _ in store.iter_shard(i)
                ),
                "parquet": lambda r: _stream_reference(ref_dir, args.dim),
            },
            2,
        )

        min_cos = 1.0
        for i in range(store.num_shards):  # accuracy, untimed: every stored vector vs its original
            x = _shard_vectors(args.seed, i, store.shard_len(i), args.dim)
            y = np.concatenate([e for _, e in store.iter_shard(i)])
            cos = (x * y).sum(1) / np.linalg.norm(y, axis=1)
            min_cos = min(min_cos, float(cos.min()))
        ours_bytes, ref_bytes = _folder_bytes(ours_dir), _folder_bytes(ref_dir)
        store.close()

    result = {
        "rows": args.rows,
        "dim": args.dim,
        "dtype": args.dtype,
        "ours_shards": -(-args.rows // args.shard_rows),
        "reference_files": -(-args.rows // REFERENCE_ROWS_PER_FILE),
        "ours_random_per_s": round(rates["ours"], 1),
        "parquet_random_per_s": round(rates["parquet"], 1),
        "random_speedup": round(rates["ours"] / rates["parquet"], 1),
        "ours_seq_per_s": round(seq["ours"], 1),
        "parquet_seq_per_s": round(seq["parquet"], 1),
        "seq_speedup": round(seq["ours"] / seq["parquet"], 2),
        "ours_bytes": ours_bytes,
        "parquet_bytes": ref_bytes,
        "bytes_ratio": round(ours_bytes / ref_bytes, 4),
        "min_cosine_vs_float32": round(min_cos, 6),
        "max_abs_diff_vs_float32": round(lookup_err, 6),
        "cpu_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    if args.dtype == "int8":
        result["int8_min_cosine"] = round(min_cos, 6)
    return result
