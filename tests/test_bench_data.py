"""`lift bench data --smoke`: the stream and exact orders against a slow loopback remote, end to end
(timings are printed, never asserted)."""

import json

import pytest

from lift.cli import main


def test_bench_data_smoke_prints_one_json_object_last(capsys) -> None:
    assert main(["bench", "data", "--smoke", "--workers", "1", "--json"]) == 0  # ~20 s, mostly imports
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    for key in ("stream_img_per_s", "exact_img_per_s", "exact_local_img_per_s", "stream_vs_exact"):
        assert result[key] > 0
    assert result["smoke"] is True
    assert result["data_workers"] == 1  # a flag given with --smoke is honoured
    assert result["data_samples"] == 64 and result["data_shards"] == 4
    # the access patterns: about one request per shard against one per image
    assert result["remote_requests_exact"] == 32
    assert result["remote_requests_stream"] < 16
    assert "range request per image" in result["exact_method"]
    # the decode pipeline against open_clip's, merged into the same JSON object
    assert result["ours_img_per_s"] > 0 and result["open_clip_img_per_s"] > 0
    assert result["speedup"] == pytest.approx(
        result["ours_img_per_s"] / result["open_clip_img_per_s"], rel=0.01
    )


def test_bench_data_refuses_a_negative_latency(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "data", "--latency-ms", "-1"])
    assert e.value.code == 2
    assert "--latency-ms: must be a number of milliseconds >= 0, got -1" in capsys.readouterr().err
