"""Inspect, check and transform an embedding store written by `lift embed`.

`info` prints the manifest summary: rows, shards, dim, dtype, the views each key holds (one vector
per caption field embedded) and the bytes per row, bytes on disk, the text encoder identity the
embeddings came from, how many input rows were skipped, and a transformed store's transform (op by
op, with a PCA's explained variance). `verify` reads every byte again: it recounts rows, recomputes
every checksum and names each damaged shard or transform (exit status 1 when anything is damaged,
0 when the store is healthy).

`transform STORE --out NEW` fits a linear map on a seeded sample of the store (`--fit-rows`,
`--seed`) and writes NEW, the same keys and views mapped through it: `--center`, `--pca K` (the
top-K principal axes; with `--whiten`, scaled to unit variance), `--whiten` alone (ZCA whitening;
covariance eigenvalues below `--whiten-eps` x the largest are raised to that and counted),
`--truncate K` (the first K coordinates, after `--center` if given), `--dtype` (the new store's
dtype; alone, a re-quantisation). NEW records the map from the text encoder's raw output to its
vectors (a transformed STORE's transform composed with this one), which training and evaluation
apply to new text. Refused: --pca with --truncate, --whiten with --truncate (transform twice
instead), --whiten-eps without --whiten, --fit-rows or --seed when nothing is fitted. Rerunning
the same command resumes (finished shards are kept); other options into the same NEW are refused.
Under torchrun each rank writes its share of the shards.

Examples:
  lift store info runs/emb
  lift store info runs/emb --json
  lift store verify runs/emb
  lift store transform runs/emb --out runs/emb-pca96 --pca 96 --dtype int8
  lift store transform runs/emb --out runs/emb-white --whiten --fit-rows 200000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys

from lift.store import StoreDamaged, open_store

NAME = "store"
HELP = "inspect (info), integrity-check (verify) or transform (centre, whiten, PCA, truncate) a store"
ORDER = 20


ACTIONS = {
    "info": "print the manifest summary",
    "verify": "recount rows, recompute checksums, name damaged shards",
    "transform": "write a new store of the vectors centred, whitened, PCA-projected, truncated or re-quantised",
}


def _transform_arguments(p: argparse.ArgumentParser) -> None:
    from lift.errors import ON_ERROR_CHOICES
    from lift.store.codecs import CODECS

    # ranges and combinations are checked by the job, in one line naming the flag and the store's dim
    p.add_argument("--out", required=True, metavar="NEW", help="the new store folder (created or resumed)")
    p.add_argument("--center", action="store_true", help="subtract the fit sample's mean")
    p.add_argument("--whiten", action="store_true", help="unit covariance: ZCA, or PCA-whitening with --pca")
    p.add_argument(
        "--whiten-eps",
        type=float,
        default=None,
        metavar="E",
        help="eigenvalues below E x the largest are raised to it (default 1e-6)",
    )
    p.add_argument("--pca", type=int, default=None, metavar="K", help="project on the top-K principal axes")
    p.add_argument("--truncate", type=int, default=None, metavar="K", help="keep the first K coordinates")
    p.add_argument(
        "--dtype",
        default=None,
        metavar="DTYPE",
        help=f"the new store's dtype: {', '.join(CODECS.names())} (default: the input's)",
    )
    p.add_argument(
        "--fit-rows",
        type=int,
        default=None,
        metavar="N",
        help="rows in the seeded fit sample (default 100000)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the fit sample (default 0)")
    p.add_argument(
        "--on-error",
        choices=ON_ERROR_CHOICES,
        default="stop",
        help="rows holding NaN or inf: stop naming them, or leave them out and count them",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, help_text in ACTIONS.items():
        p = sub.add_parser(
            action, help=help_text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.add_argument("store", metavar="STORE", help="the store folder")
        if action == "info":
            p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
        if action == "transform":
            _transform_arguments(p)


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
        "transform": _transform_summary(store.transform),
    }


def _transform_summary(t) -> dict | None:
    """What `lift store info` shows of a store's transform: its identity and every op of its chain."""
    if t is None:
        return None
    return {**t.identity, "ops": t.chain}


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
    t = s["transform"]
    if t is not None:
        from lift.store.transform import op_details

        print(
            f"transform  {t['in_dim']}-d encoder output -> {t['out_dim']}-d stored vectors, "
            f"{len(t['ops'])} op(s), sha256 {t['sha256'][:16]}"
        )
        for n, op in enumerate(t["ops"], 1):
            print(f"  {n}. {op_details(op)}")
        if s["extra"].get("source_store"):
            print(f"  from     {s['extra']['source_store']}")
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
        made_by = (
            "lift store transform"
            if (store.manifest.get("extra") or {}).get("source_store")
            else "lift embed"
        )
        print(
            f"{args.store}: {len(problems)} problem(s) found; to repair, delete the damaged shards' .json "
            f"sidecars (a damaged transform: its transform.safetensors) and rerun `{made_by}`"
        )
        return 1
    print(f"{args.store}: ok ({len(store):,} rows in {store.num_shards:,} shards, all checksums match)")
    return 0


def _transform(args: argparse.Namespace) -> int:
    from lift.store.transform_job import summary_lines, transform_store

    summary = transform_store(
        store=args.store, out=args.out, center=args.center, whiten=args.whiten, whiten_eps=args.whiten_eps,
        pca=args.pca, truncate=args.truncate, dtype=args.dtype, fit_rows=args.fit_rows, seed=args.seed,
        on_error=args.on_error, progress=args.progress,
    )  # fmt: skip
    if summary["rows_in_store"] is not None:  # only rank 0 prints
        print("\n".join(summary_lines(summary)))
    return 0


RUN = {"info": _info, "verify": _verify, "transform": _transform}


def run(args: argparse.Namespace) -> int:
    return RUN[args.action](args)
