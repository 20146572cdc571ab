"""FLOP formulas for the fused attention kernels that torch's FlopCounterMode has none for.

Without a formula FlopCounterMode counts such a kernel as 0 FLOPs, so attention's two matmuls vanish
whenever PyTorch picks it (e.g. `_scaled_dot_product_flash_attention_for_cpu` on AVX-512 CPUs) and a
count depends on the machine. Every kernel here is counted as the math path counts it: forward, the
scores and weighted-sum matmuls (torch's `sdpa_flop_count`); backward, the four gradient matmuls of
those two, without the scores matmul a fused backward recomputes internally (kernel bookkeeping that
the math path does not do). Formulas torch already has are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.utils import flop_counter as fc


def _recomputed_scores_flop(query_shape, key_shape) -> int:
    b, h_q, s_q, d_q = query_shape
    return fc.bmm_flop((b * h_q, s_q, d_q), (b * h_q, d_q, key_shape[2]))


def _backward_count(grad_out_shape, query_shape, key_shape, value_shape) -> int:
    """The math path's backward: torch's fused-kernel count minus the recomputed scores matmul."""
    total = fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)
    return total - _recomputed_scores_flop(query_shape, key_shape)


def _packed_shapes(query, key, value, grad_out, cum_seq_q, cum_seq_k, max_q, max_k):
    """Per-sequence [1, H, S, D] shapes of a varlen call (packed [T, H, D]); dense shapes otherwise."""
    if query.ndim == 4:  # dense: offsets, if any, are placeholders (a backward's are required tensors)
        cum_seq_q = cum_seq_k = None
    return fc._unpack_flash_attention_nested_shapes(
        query=query,
        key=key,
        value=value,
        grad_out=grad_out,
        cum_seq_q=cum_seq_q,
        cum_seq_k=cum_seq_k,
        max_q=max_q,
        max_k=max_k,
    )


def _to_heads_first(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.transpose(-2, -3) for t in tensors)


# Shape formulas ([B, H, S, D] inputs; FlopCounterMode passes shapes, out_shape as a keyword).
def sdpa_forward_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Forward of an SDPA kernel whose first arguments are query, key, value."""
    return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def sdpa_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    """Backward of an SDPA kernel whose first arguments are grad_out, query, key, value."""
    return _backward_count(grad_out_shape, query_shape, key_shape, value_shape)


# Raw formulas (tensors): varlen kernels, packed [T, H, D] when cumulative sequence lengths are given.
def cudnn_forward_flop(query, key, value, attn_bias, cum_seq_q, cum_seq_k, max_q, max_k, *a, **kw) -> int:
    """`_cudnn_attention_forward`: dense [B, H, S, D] or packed."""
    shapes = _packed_shapes(query, key, value, None, cum_seq_q, cum_seq_k, max_q, max_k)
    return sum(fc.sdpa_flop_count(q, k, v) for q, k, v, _ in shapes)


def cudnn_backward_flop(
    grad_out,
    query,
    key,
    value,
    out,
    lse,
    seed,
    offset,
    attn_bias,
    cum_seq_q,
    cum_seq_k,
    max_q,
    max_k,
    *a,
    **kw,
) -> int:
    """`_cudnn_attention_backward`: dense [B, H, S, D] or packed."""
    shapes = _packed_shapes(query, key, value, grad_out, cum_seq_q, cum_seq_k, max_q, max_k)
    return sum(_backward_count(g, q, k, v) for q, k, v, g in shapes)


def flash_inplace_forward_flop(out, query, key, value, cum_seq_q, cum_seq_k, max_q, max_k, *a, **kw) -> int:
    """`_flash_attention_forward_no_dropout_inplace`: `_flash_attention_forward`'s layout ([B, S, H, D])."""
    if cum_seq_q is None and query.ndim == 4:
        query, key, value = _to_heads_first(query, key, value)
    shapes = _packed_shapes(query, key, value, None, cum_seq_q, cum_seq_k, max_q, max_k)
    return sum(fc.sdpa_flop_count(q, k, v) for q, k, v, _ in shapes)


class Formula(NamedTuple):
    fn: Callable[..., int]
    raw: bool  # True: gets tensors (needs layouts / sequence offsets), False: gets shapes


# aten op name -> formula. A name this torch does not have, or already counts, is skipped.
FUSED_ATTENTION_FORMULAS: dict[str, Formula] = {
    "_scaled_dot_product_flash_attention_for_cpu": Formula(sdpa_forward_flop, raw=False),
    "_scaled_dot_product_flash_attention_for_cpu_backward": Formula(sdpa_backward_flop, raw=False),
    "_scaled_dot_product_flash_attention": Formula(sdpa_forward_flop, raw=False),
    "_scaled_dot_product_flash_attention_backward": Formula(sdpa_backward_flop, raw=False),
    "_scaled_dot_product_efficient_attention": Formula(sdpa_forward_flop, raw=False),
    "_scaled_dot_product_efficient_attention_backward": Formula(sdpa_backward_flop, raw=False),
    "_scaled_dot_product_cudnn_attention": Formula(sdpa_forward_flop, raw=False),
    "_scaled_dot_product_cudnn_attention_backward": Formula(sdpa_backward_flop, raw=False),
    "_scaled_dot_product_fused_attention_overrideable": Formula(sdpa_forward_flop, raw=False),
    "_scaled_dot_product_fused_attention_overrideable_backward": Formula(sdpa_backward_flop, raw=False),
    "_scaled_dot_product_attention_math_for_mps": Formula(sdpa_forward_flop, raw=False),
    "_cudnn_attention_forward": Formula(cudnn_forward_flop, raw=True),
    "_cudnn_attention_backward": Formula(cudnn_backward_flop, raw=True),
    "_flash_attention_forward_no_dropout_inplace": Formula(flash_inplace_forward_flop, raw=True),
}


def aten_op(name: str) -> torch._ops.OpOverloadPacket | None:
    """torch.ops.aten.<name>, or None where this torch has no such op."""
    try:
        return getattr(torch.ops.aten, name)
    except (AttributeError, RuntimeError):
        return None


def register_fused_attention_formulas() -> list[str]:
    """Register a formula for each fused attention kernel this torch has but does not count.

    Idempotent: an op already in torch's registry (torch's own formula, or an earlier call) is skipped.
    Returns the names registered by this call. Counters made before the call do not see them.
    """
    added = []
    for name, formula in FUSED_ATTENTION_FORMULAS.items():
        op = aten_op(name)
        if op is None or op in fc.flop_registry:
            continue
        fc.register_flop_formula(op, get_raw=formula.raw)(formula.fn)
        added.append(name)
    return added


def lift_counted() -> list[str]:
    """Names of the ops counted by a formula of this module (the rest: torch's own, or absent)."""
    names = []
    for name, formula in FUSED_ATTENTION_FORMULAS.items():
        entry = fc.flop_registry.get(aten_op(name))
        if entry is not None and formula.fn in (entry, getattr(entry, "__wrapped__", None)):
            names.append(name)
    return names
