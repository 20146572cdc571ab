"""`lift bench gpu --smoke`: the accelerator check's code path, on CPU at tiny sizes."""

import json

import pytest

from lift.cli import main

pytestmark = pytest.mark.slow


def test_smoke_runs_every_section_and_prints_one_json_object(capsys):
    assert main(["bench", "gpu", "--smoke", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["smoke"] is True and result["device"] == "cpu" and result["peak_bf16_tflops"] is None
    train = result["train"]
    assert set(train) >= {"lift", "clip_n16", "clip_n32", "lift_vs_clip_n16"}
    assert all(
        train[k]["img_per_s"] > 0 and train[k]["mfu"] is None for k in ("lift", "clip_n16", "clip_n32")
    )
    assert train["clip_n32"]["gflops_per_sample"] > train["clip_n16"]["gflops_per_sample"]
    assert set(result["embed"]) >= {"n16", "n48"} and result["embed"]["n48"]["captions_per_s"] > 0
    assert result["eval"]["same_accuracy"] is True and result["eval"]["speedup"] > 0


def test_peak_flops_table_names_known_devices():
    import torch

    from lift.bench.gpu import PEAK_BF16_TFLOPS, device_peak_flops

    assert device_peak_flops(torch.device("cpu")) == (None, "cpu")
    assert PEAK_BF16_TFLOPS["H100"] == 989.0 and PEAK_BF16_TFLOPS["A100"] == 312.0
