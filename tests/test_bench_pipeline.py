"""Issue 18 item 2: realistic img2dataset shards and the images/s benchmark of our training image
pipeline against open_clip's webdataset pipeline (`lift.bench.data_pipeline`), at smoke size."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lift.bench import data_pipeline
from lift.bench.data_realistic import Record, jpeg_bytes, natural_image, write_realistic_shards, write_shard
from lift.data.imagetext import build_index
from lift.errors import LiftError

FIELDS = ["url", "caption", "key", "status", "error_message", "width", "height", "original_width",
          "original_height", "exif", "sha256"]  # fmt: skip


def test_realistic_shards_are_laid_out_as_img2dataset_writes_them(tmp_path):
    paths = write_realistic_shards(tmp_path / "a", n=10, shard_size=4, seed=1, min_size=256, max_size=300)
    assert [p.name for p in paths] == ["00000.tar", "00001.tar", "00002.tar"]
    assert sorted(f.name for f in (tmp_path / "a").iterdir()) == sorted(
        f"{s:05d}{ext}" for s in range(3) for ext in (".tar", ".parquet", "_stats.json")
    )
    for shard, path in enumerate(paths):
        with tarfile.open(path) as tar:
            names = tar.getnames()
            members = {name: tar.extractfile(name).read() for name in names}
        keys = list(dict.fromkeys(name.split(".")[0] for name in names))
        assert keys == [f"{shard:05d}{i}" for i in range(len(keys))]  # shard number, then position
        assert names == [f"{k}.{ext}" for k in keys for ext in ("jpg", "txt", "json")]
        rows = pq.read_table(path.with_suffix(".parquet")).to_pylist()
        for key, row in zip(keys, rows, strict=True):
            meta = json.loads(members[f"{key}.json"])
            assert list(meta) == FIELDS and meta == row
            assert meta["key"] == key and meta["status"] == "success" and meta["error_message"] is None
            assert members[f"{key}.txt"].decode() == meta["caption"] and meta["url"].startswith("https://")
            with Image.open(io.BytesIO(members[f"{key}.jpg"])) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                assert (
                    im.size == (meta["width"], meta["height"]) and 256 <= min(im.size) <= max(im.size) <= 300
                )
            assert (
                len(members[f"{key}.jpg"]) > 5000
            )  # photo-like: not a flat drawing that compresses to nothing
        stats = json.loads((tmp_path / "a" / f"{shard:05d}_stats.json").read_text())
        assert stats["count"] == stats["successes"] == len(keys) and stats["status_dict"] == {
            "success": len(keys)
        }
        assert stats["failed_to_download"] == stats["failed_to_resize"] == 0 and stats["duration"] >= 0
    # lift's own reader takes them, with the captions of the parquet beside each tar
    samples = build_index(str(tmp_path / "a"))
    assert len(samples) == 10 and all(s.images == ["jpg"] and s.captions["caption"] for s in samples)
    # reproducible: the same seed writes the same shards
    again = write_realistic_shards(tmp_path / "b", n=10, shard_size=4, seed=1, min_size=256, max_size=300)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_smoke_benchmark_compares_both_pipelines_on_the_same_shards():
    result = data_pipeline.bench_pipeline(smoke=True, workers=1)
    assert result["ours_img_per_s"] > 0 and result["open_clip_img_per_s"] > 0
    ratio = result["ours_img_per_s"] / result["open_clip_img_per_s"]
    assert result["speedup"] == pytest.approx(ratio, rel=0.01)
    assert (
        result["pipeline_image_size"] == data_pipeline.SMOKE["image_size"] and result["pipeline_workers"] == 1
    )
    json.dumps(result)  # merges into `lift bench data --json`


def test_bench_refuses_what_it_cannot_measure(tmp_path):
    with pytest.raises(LiftError, match="no .tar shards"):
        data_pipeline.measure_pipeline(tmp_path)
    with pytest.raises(LiftError, match="--workers 0"):
        data_pipeline.measure_pipeline(tmp_path, workers=0)
    with pytest.raises(LiftError, match="--image-decode nvjpeg"):
        write_realistic_shards(tmp_path, n=2, shard_size=2, min_size=64, max_size=64)
        data_pipeline.measure_pipeline(tmp_path, image_decode="nvjpeg")


def test_write_shard_takes_extra_columns_as_lift_synth_would_give_them(tmp_path):
    image = jpeg_bytes(natural_image(np.random.default_rng(0), 64, 48))
    records = [Record(image, "a red circle", 64, 48, url="synth://0", extra={"re_caption": "a long caption"})]
    assert write_shard(tmp_path, 3, records, shard_size=100) == ["0000300"]
    row = pq.read_table(tmp_path / "00003.parquet").to_pylist()[0]
    assert row["re_caption"] == "a long caption" and row["caption"] == "a red circle"
    (sample,) = build_index(str(tmp_path))
    assert sample.key == "0000300" and sample.captions["re_caption"] == "a long caption"
