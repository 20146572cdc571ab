"""`lift bench flops`: FLOP counts match closed forms; LIFT's step cost is flat in n, CLIP's grows."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from lift.bench import flops
from lift.errors import LiftError
from lift.models import ModelConfig


def test_linear_flops_equal_closed_form() -> None:
    b, d_in, d_out = 3, 16, 24
    layer = nn.Linear(d_in, d_out)
    x = torch.randn(b, d_in, requires_grad=True)
    assert flops.count_flops(lambda: layer(x)) == 2 * b * d_in * d_out
    # Backward: one matmul for the input's gradient, one for the weight's.
    y = layer(x).sum()
    assert flops.count_flops(lambda: y.backward()) == 2 * 2 * b * d_in * d_out


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_flops_equal_closed_form(device: str) -> None:
    b, n, d, heads = 2, 10, 32, 4
    with torch.device(device):
        attn = nn.MultiheadAttention(d, heads, batch_first=True)  # what open_clip's blocks use
        x = torch.randn(b, n, d)
    counted = flops.count_flops(lambda: attn(x, x, x, need_weights=False))
    qkv, out = 2 * b * n * d * 3 * d, 2 * b * n * d * d
    scores, weighted = 2 * b * n * n * d, 2 * b * n * n * d  # summed over heads: d = heads * head_dim
    assert counted == qkv + scores + weighted + out


def _per_sample(method: str, n: int) -> float:
    cfg = ModelConfig(method=method, model="vit-tiny", embed_dim=64, text_context_length=n)
    f = flops.step_flops(cfg, batch_size=2)
    assert f["backward"] > f["forward"] > 0
    return (f["forward"] + f["backward"]) / 2


def test_lift_flat_and_clip_growing_in_caption_length() -> None:
    lengths = (8, 32, 77, 128)
    lift = [_per_sample("lift", n) for n in lengths]
    clip = [_per_sample("clip", n) for n in lengths]
    assert len(set(lift)) == 1
    assert all(a < b for a, b in zip(clip, clip[1:], strict=False))
    assert clip[0] > lift[0]  # even a short caption costs a text tower


def test_caption_embedding_flops_grow_and_stop_at_max_length() -> None:
    from lift.text.default import default_encoder_path

    path = str(default_encoder_path())
    counts = flops.caption_embedding_flops(path, [16, 64, 100_000])
    assert 0 < counts[16] < counts[64]
    assert counts[100_000] is None


def test_bench_end_to_end_on_fake_tensors(tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    flops.add_arguments(parser)
    plot = tmp_path / "cost.png"
    args = parser.parse_args(
        ["--model", "vit-tiny", "--caption-lengths", "77,16", "--device", "fake", "--plot", str(plot)]
    )
    result = flops.run(args)
    json.dumps(result)  # the bench command prints it as one JSON line
    rows = result["rows"]
    assert [(r["method"], r["caption_len"]) for r in rows] == [
        ("clip", 16),
        ("lift", 16),
        ("clip", 77),
        ("lift", 77),
    ]
    keys = {"method", "model", "caption_len", "batch_size", "gflops_per_sample", "peak_mem_mb", "device"}
    assert all(keys <= set(r) and r["device"] == "fake" and "MemTracker" in r["mem_method"] for r in rows)
    clip16, lift16, clip77, _ = rows
    assert clip77["peak_mem_mb"] > clip16["peak_mem_mb"] > lift16["peak_mem_mb"] > 0
    summary = {s["caption_len"]: s for s in result["summary"]}
    assert 0 < summary[16]["flops_reduction_pct"] < summary[77]["flops_reduction_pct"] < 100
    assert summary[77]["amortise_epochs"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "LIFT saves" in capsys.readouterr().err


def test_cpu_memory_is_measured_from_live_storages() -> None:
    cfg = ModelConfig(method="lift", model="vit-tiny", embed_dim=64)
    peak, method = flops.step_peak_memory(cfg, batch_size=2, device="cpu")
    params = sum(p.numel() for p in flops._Step(cfg, 1, "meta").model.parameters()) * 4 / flops.MB
    # At least weights + gradients + AdamW's two moments, and not absurdly more at batch 2.
    assert 4 * params <= peak < 4 * params + 64
    assert "live tensor storages" in method


def test_fake_tensor_memory_equals_real_cpu_memory() -> None:
    cfg = ModelConfig(method="lift", model="vit-tiny", embed_dim=64)
    real, _ = flops.step_peak_memory(cfg, batch_size=4, device="cpu")
    fake, method = flops.step_peak_memory(cfg, batch_size=4, device="fake")
    assert fake == pytest.approx(real, rel=1e-6)
    assert "FakeTensorMode" in method


def test_bad_caption_lengths() -> None:
    with pytest.raises(LiftError, match="caption-lengths"):
        flops._parse_lengths("77,long")
