"""img2dataset's output layout, for the shards lift writes itself (`lift synth --realistic`, the data
benchmarks): per sample a `.json` with the download's fields, per shard a `NNNNN_stats.json` (see
img2dataset's writer.py and logger.py). Readers ignore what they do not use; `lift embed` skips the
stats files."""

from __future__ import annotations

import hashlib
import json


def sample_meta(
    *, key: str, url: str, caption: str, width: int, height: int, image: bytes, **extra: object
) -> dict:
    """The .json (and parquet row) img2dataset writes for a successful download; `extra`: more columns."""
    return {
        "url": url, "caption": caption, "key": key, "status": "success", "error_message": None,
        "width": width, "height": height, "original_width": width, "original_height": height, "exif": None,
        "sha256": hashlib.sha256(image).hexdigest(), **extra,
    }  # fmt: skip


def shard_stats(count: int, *, start: float = 0.0, end: float = 0.0) -> bytes:
    """A shard's `_stats.json` for `count` successful downloads (times 0: the bytes stay reproducible)."""
    stats = {
        "count": count, "successes": count, "failed_to_download": 0, "failed_to_resize": 0,
        "duration": end - start, "start_time": start, "end_time": end, "status_dict": {"success": count},
    }  # fmt: skip
    return (json.dumps(stats, indent=4) + "\n").encode()
