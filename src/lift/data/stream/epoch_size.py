"""How many samples one pass over the shards (an epoch of the stream order) has, when that is known
before reading them."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

from lift.data.paths import expand_paths, is_url, shard_name
from lift.data.samples import is_image_ext, split_key


def _local_count(path: str) -> int | None:
    """Samples in a local shard, from img2dataset's `_stats.json` or parquet, else its tar headers."""
    p = Path(path)
    stats = p.with_name(f"{shard_name(path)}_stats.json")
    if stats.is_file():
        try:
            return int(json.loads(stats.read_text())["successes"])
        except (ValueError, KeyError, TypeError, OSError):
            pass
    sidecar = p.with_suffix(".parquet")
    if sidecar.is_file():
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(sidecar, columns=None)
        except Exception:  # an unreadable parquet: count the tar instead
            table = None
        if table is not None:
            if "status" in table.column_names:
                return sum(1 for s in table.column("status").to_pylist() if s == "success")
            return table.num_rows
    try:
        with tarfile.open(path, "r:") as tar:
            return len(
                {
                    parts[0]
                    for m in tar
                    if m.isfile() and (parts := split_key(m.name)) and is_image_ext(parts[1])
                }
            )
    except (tarfile.TarError, OSError):
        return None


def epoch_samples(shards: str | list[str], *, store: Any = None) -> int | None:
    """Samples in one pass over `shards`, when known up front: the store's rows per shard (LIFT), else
    for local shards img2dataset's `_stats.json` / parquet or the tar headers. None when a shard's size
    cannot be known without reading it (a URL): give the budget in samples then."""
    urls = expand_paths(shards, suffixes=(".tar",))
    if store is not None and all(shard_name(u) in store.shard_names for u in urls):
        names = store.shard_names
        return sum(store.shard_len(names.index(shard_name(u))) for u in urls)
    total = 0
    for url in urls:
        n = None if is_url(url) or not os.path.isfile(url) else _local_count(url)
        if n is None:
            return None
        total += n
    return total
