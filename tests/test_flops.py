"""`lift bench flops`: FLOP counts match closed forms; LIFT's step cost is flat in n, CLIP's grows."""

from __future__ import annotations

import argparse
import contextlib
import json

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from lift.bench import flop_formulas, flops
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


BACKENDS = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION}
CPU_FLASH = "_scaled_dot_product_flash_attention_for_cpu"


def _counted(fn) -> tuple[object, int, dict[str, int]]:
    """What fn returns, its FLOPs and the per-op breakdown, counted as lift counts (formulas registered)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    return result, counter.get_total_flops(), by_op


def _mha(device: str, backend: str | None) -> dict:
    """Forward and backward FLOPs of nn.MultiheadAttention under one SDPA backend, with the closed form."""
    b, n, d, heads = 2, 10, 32, 4
    with torch.device(device):
        attn = nn.MultiheadAttention(d, heads, batch_first=True)  # what open_clip's blocks use
        x = torch.randn(b, n, d, requires_grad=True)
    with sdpa_kernel(BACKENDS[backend]) if backend else contextlib.nullcontext():
        try:
            out, fwd, fwd_ops = _counted(lambda: attn(x, x, x, need_weights=False)[0])
        except RuntimeError as e:
            if "No available kernel" not in str(e):
                raise
            pytest.skip(f"this torch cannot run SDPBackend.{BACKENDS[backend].name} on {device}: {e}")
        _, bwd, bwd_ops = _counted(lambda: out.sum().backward())
    qkv, proj = 2 * b * n * d * 3 * d, 2 * b * n * d * d
    scores, weighted = 2 * b * n * n * d, 2 * b * n * n * d  # summed over heads: d = heads * head_dim
    closed = qkv + scores + weighted + proj
    return {
        "forward": fwd,
        "backward": bwd,
        "fwd_ops": fwd_ops,
        "bwd_ops": bwd_ops,
        "closed": closed,
        "attention": scores + weighted,
    }


@pytest.mark.parametrize(("device", "backend"), [("cpu", "math"), ("cpu", "flash"), ("meta", None)])
def test_attention_flops_equal_closed_form(device: str, backend: str | None) -> None:
    r = _mha(device, backend)
    assert r["forward"] == r["closed"]
    # Every matmul's two operands get a gradient (x requires one too): backward is twice the forward,
    # on every kernel (a fused backward's internal recompute of the scores is not counted).
    assert r["backward"] == 2 * r["closed"]
    if backend == "flash":  # the fused CPU kernel really ran, forward and backward
        assert f"aten.{CPU_FLASH}" in r["fwd_ops"] and f"aten.{CPU_FLASH}_backward" in r["bwd_ops"]
        assert "aten.bmm" not in r["fwd_ops"]
    if backend == "math":
        assert not any("flash" in op for op in {**r["fwd_ops"], **r["bwd_ops"]})


def test_cpu_flash_attention_is_short_without_the_registered_formulas(monkeypatch) -> None:
    for name in (CPU_FLASH, f"{CPU_FLASH}_backward"):
        if name not in flop_formulas.lift_counted():
            pytest.skip(f"this torch counts aten.{name} itself")
        monkeypatch.delitem(flop_counter.flop_registry, flop_formulas.aten_op(name))
    r = _mha("cpu", "flash")
    assert r["forward"] == r["closed"] - r["attention"]  # the 163,840 instead of 189,440
    assert r["backward"] == 2 * (r["closed"] - r["attention"])


def test_registration_is_idempotent_and_covers_every_fused_attention_op() -> None:
    before = dict(flop_counter.flop_registry)
    assert flop_formulas.register_fused_attention_formulas() == []  # lift.bench.flops already did it
    assert flop_counter.flop_registry == before
    # Every fused attention kernel of this torch that reaches a counter (composite ops decompose
    # into counted matmuls first) has a formula: a torch upgrade adding one fails here, not silently.
    fused = (
        "_scaled_dot_product_",
        "_flash_attention_",
        "_efficient_attention_",
        "cudnn_attention",
        "fused_attention",
    )
    names = {
        n.split("::")[1].split(".")[0]
        for n in torch._C._dispatch_get_all_op_names()
        if n.startswith("aten::")
    }
    missing = [
        name
        for name in sorted(names)
        if any(p in name for p in fused)
        and not torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{name}", "CompositeImplicitAutograd")
        and getattr(torch.ops.aten, name) not in flop_counter.flop_registry
    ]
    assert missing == []


def _qkv(b: int, h: int, s_q: int, s_k: int, d: int, device: str = "meta") -> tuple[torch.Tensor, ...]:
    """query, key, value, grad_out / out ([B, H, S, D]) and logsumexp ([B, H, S_q])."""
    t = lambda *shape: torch.zeros(*shape, device=device)  # noqa: E731
    return t(b, h, s_q, d), t(b, h, s_k, d), t(b, h, s_k, d), t(b, h, s_q, d), t(b, h, s_q)


B, H, SQ, SK, D = 2, 3, 5, 7, 8  # all different, so a misread layout cannot pass
Q, K, V, G, LSE = _qkv(B, H, SQ, SK, D)
NONE, BIAS = torch.empty(0, device="meta"), torch.zeros(B, H, SQ, SK, device="meta")
aten = torch.ops.aten
# Called on the meta device, as the dispatcher hands them to the counter ([B, S, H, D] for flash's own).
META_CALLS = {
    "_scaled_dot_product_flash_attention_for_cpu": lambda: aten._scaled_dot_product_flash_attention_for_cpu(
        Q, K, V
    ),
    "_scaled_dot_product_flash_attention_for_cpu_backward": lambda: (
        aten._scaled_dot_product_flash_attention_for_cpu_backward(G, Q, K, V, G, LSE, 0.0, False)
    ),
    "_scaled_dot_product_fused_attention_overrideable": lambda: (
        aten._scaled_dot_product_fused_attention_overrideable(Q, K, V)
    ),
    "_scaled_dot_product_fused_attention_overrideable_backward": lambda: (
        aten._scaled_dot_product_fused_attention_overrideable_backward(
            G, Q, K, V, BIAS, [True, True, True, False], G, LSE, NONE, NONE, SQ, SK, 0.0, False, NONE, NONE
        )
    ),
    "_scaled_dot_product_attention_math_for_mps": lambda: aten._scaled_dot_product_attention_math_for_mps(
        Q, K, V
    ),
    "_flash_attention_forward_no_dropout_inplace": lambda: aten._flash_attention_forward_no_dropout_inplace(
        *(t.transpose(1, 2) for t in (G, Q, K, V)), None, None, SQ, SK, 0.0, False, False
    ),
}
ATTENTION = 2 * B * H * SQ * SK * D * 2  # scores + weighted sum


@pytest.mark.parametrize("name", flop_formulas.lift_counted())
def test_each_registered_kernel_counts_as_the_math_path(name: str) -> None:
    entry = flop_counter.flop_registry[flop_formulas.aten_op(name)]
    expected = 2 * ATTENTION if "backward" in name else ATTENTION
    if name in META_CALLS:
        _, counted, by_op = _counted(META_CALLS[name])
        assert by_op == {f"aten.{name}": expected}
        return
    # CUDA-only kernels without a meta kernel: the formula as the counter calls it, dense then varlen.
    cudnn_fwd = name == "_cudnn_attention_forward"
    dense = (Q, K, V, None, None, None, SQ, SK, True) if cudnn_fwd else (G, Q, K, V, G, LSE, NONE, NONE, BIAS)
    if not cudnn_fwd:
        dense += (NONE, NONE, SQ, SK)
    assert entry(*dense, 0.0, False, out_val=None) == expected
    # Packed [T, H, D] with sequence offsets: two sequences of lengths 2 and 3 (queries) / 4 and 3 (keys).
    cum_q, cum_k = torch.tensor([0, 2, 5]), torch.tensor([0, 4, 7])
    pq, pk = torch.zeros(5, H, D), torch.zeros(7, H, D)
    per_seq = sum(2 * H * sq * sk * D * 2 for sq, sk in ((2, 4), (3, 3)))
    if cudnn_fwd:
        packed = (pq, pk, pk, None, cum_q, cum_k, 3, 4, True)
    else:
        packed = (pq, pq, pk, pk, pq, LSE, NONE, NONE, None, cum_q, cum_k, 3, 4)
    assert entry(*packed, 0.0, False, out_val=None) == (2 * per_seq if "backward" in name else per_seq)


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
