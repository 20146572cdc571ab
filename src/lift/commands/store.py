"""Inspect and check an embedding store written by `lift embed`.

`info` prints the manifest summary: rows, shards, dim, dtype, the views each key holds (one vector
per caption field embedded) and the bytes per row, bytes on disk, the text encoder identity the
embeddings came from, and how many input rows were skipped. `verify` reads every
byte again: it recounts rows, recomputes every checksum and names each damaged shard
(exit status 1 when anything is damaged, 0 when the store is healthy).

Examples:
  lift store info runs/emb
  lift store info runs/emb --json
  lift store verify runs/emb
"""

from __future__ import annotations

import argparse
import json
import sys

from lift.store import StoreDamaged, open_store

NAME = "store"
HELP = "inspect (info) or integrity-check (verify) an embedding store"
ORDER = 20


ACTIONS = {
    "info": "print the manifest summary",
    "verify": "recount rows, recompute checksums, name damaged shards",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, help_text in ACTIONS.items():
        p = sub.add_parser(
            action, help=help_text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.add_argument("store", metavar="STORE", help="the store folder")
        if action == "info":
            p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    raise AssertionError("unreachable")


def store_summary(path: str) -> dict:
    """The fields `lift store info` shows, as a dict."""
    store = open_store(path)
    m = store.manifest
    return {
        "path": str(store.path),
        "rows": len(store),
        "shards": store.num_shards,
        "dim": store.dim,
        "dtype": store.dtype,
        "views": store.views,
        "bytes_per_row": store.bytes_per_row,
        "bytes": store.nbytes,
        "skipped": m["skipped"],
        "truncated": m.get("truncated"),  # stores written before lift counted truncation lack it
        "format_version": m["version"],
        "identity": store.identity,
        "sources": len(m.get("sources") or []),
        "extra": m.get("extra") or {},
    }


def _info(args: argparse.Namespace) -> int:
    s = store_summary(args.store)
    if args.json:
        print(json.dumps(s))
        return 0
    print(f"store      {s['path']} (format version {s['format_version']})")
    cut, limit = s["truncated"], s["identity"].get("max_length")
    cut = "" if cut is None else f", {cut:,} truncated" + (f" at {limit} tokens" if limit else "")
    print(f"rows       {s['rows']:,} in {s['shards']:,} shards ({s['skipped']:,} input rows skipped{cut})")
    print(f"vectors    {s['dim']}-d {s['dtype']}, {_human(s['bytes'])} on disk ({s['bytes']:,} bytes)")
    print(f"views      {len(s['views'])}: {', '.join(s['views'])} ({s['bytes_per_row']:,} bytes per row)")
    print("encoder    " + ", ".join(f"{k}={v}" for k, v in s["identity"].items()))
    if s["sources"]:
        read = {
            k: v
            for k, v in s["extra"].items()
            if k in ("fmt", "key_field", "caption_field") and v not in (None, "auto")
        }
        how = f" ({', '.join(f'{k}={v}' for k, v in read.items())})" if read else ""
        print(f"sources    {s['sources']:,} input files{how}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        store = open_store(args.store, check_sizes=False)  # sizes are part of the report below
    except StoreDamaged as e:
        print(f"DAMAGED: {e}")
        return 1
    problems = store.verify(progress=sys.stderr.isatty())
    for p in problems:
        print(f"DAMAGED: {p}")
    if problems:
        print(
            f"{args.store}: {len(problems)} problem(s) found; to repair, delete the damaged shards' .json sidecars and rerun `lift embed`"
        )
        return 1
    print(f"{args.store}: ok ({len(store):,} rows in {store.num_shards:,} shards, all checksums match)")
    return 0


def run(args: argparse.Namespace) -> int:
    return _info(args) if args.action == "info" else _verify(args)
