"""What one training step costs per sample, CLIP vs LIFT, as captions grow from short to long.

FLOPs of one full step (forward + backward, loss included) are counted with
torch.utils.flop_counter.FlopCounterMode on the meta device (exact op shapes, no compute, so
`vit-b16` costs nothing): CLIP trains the image tower and a text tower on n tokens; LIFT trains
the image tower + MLP head against a stored vector, so its cost does not depend on n. Only
matmul-like ops (linear, conv, attention) are counted, as FlopCounterMode does; a multiply-add
is 2 FLOPs. Fused attention kernels torch has no formula for (the CPU flash kernel among them) are
registered on import (lift.bench.flop_formulas), so attention counts the same whichever kernel
runs. Also reported: the one-off offline cost of embedding one caption of n tokens with the
frozen text encoder (forward only) and the epochs after which LIFT's savings repay it.

Peak memory of one training step (after a warm-up step, so AdamW's state exists): on CUDA
torch.cuda.max_memory_allocated; on CPU torch's MemTracker, which adds up the live
tensor storages (parameters, gradients, optimizer state, activations, temporaries). With
`--device fake` the same CPU step runs on fake tensors (FakeTensorMode: shapes, no compute), so
memory is modelled, not measured, and a realistic per-GPU batch costs nothing.

Examples:
  lift bench flops --json
  lift bench flops --json --model vit-b16 --caption-lengths 32,77,128,323 --batch-size 2 --plot flops.png
  lift bench flops --json --model vit-b16 --device fake --batch-size 256 --lift-dim 4096
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lift.bench.flop_formulas import register_fused_attention_formulas
from lift.errors import LiftError
from lift.losses import LOSSES, create_loss
from lift.models import ModelConfig, create_model, list_models

NAME = "flops"
HELP = "FLOPs and peak memory of one training step, CLIP vs LIFT, against caption length"
MB = 2**20

# Before any counter exists: FlopCounterMode copies torch's formula registry when it is created.
register_fused_attention_formulas()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="vit-b16", choices=list_models())
    parser.add_argument("--caption-lengths", default="32,77,128,323", help="comma-separated token counts n")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda", "fake"),
        help="where peak memory is taken (fake: modelled, no compute)",
    )
    parser.add_argument(
        "--lift-dim", type=int, default=None, help="LIFT head output (default: the encoder's dim)"
    )
    parser.add_argument("--clip-dim", type=int, default=512, help="CLIP's shared embedding dim")
    parser.add_argument("--loss", default="infonce", choices=LOSSES.names())
    parser.add_argument("--text-encoder", default="default", help="'default' or a local Hugging Face folder")
    parser.add_argument(
        "--grad-checkpointing", action="store_true", help="as the paper trains (FLOPs then include recompute)"
    )
    parser.add_argument("--plot", default=None, help="write a PNG of cost against n here")


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmul-like ops `fn` runs (FlopCounterMode's convention: multiply-add = 2)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _batch(
    cfg: ModelConfig, image_size: int, batch_size: int, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and either caption tokens [B, n] (CLIP) or stored text vectors [B, D] (LIFT)."""
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    if cfg.method == "clip":
        # A full-length caption: the EOT token (the largest id) last, so argmax pooling sees n tokens.
        tokens = torch.randint(1, 49407, (batch_size, cfg.text_context_length), device=device)
        tokens[:, -1] = 49407
        return images, tokens
    return images, F.normalize(torch.randn(batch_size, cfg.embed_dim, device=device), dim=-1)


class _Step:
    """One training step of `cfg` on `device`, split so forward and backward can be measured apart."""

    def __init__(self, cfg: ModelConfig, batch_size: int, device: str) -> None:
        torch.manual_seed(0)
        with torch.device(device):
            self.model = create_model(cfg)
        self.cfg = cfg
        self.images, self.text = _batch(cfg, self.model.image_size, batch_size, device)
        self.loss_fn = create_loss(cfg.loss)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")

    def forward(self) -> torch.Tensor:
        with self.autocast:
            img = self.model.encode_image(self.images)
            txt = self.model.encode_text(self.text) if self.cfg.method == "clip" else self.text
            return self.loss_fn(img, txt, self.model.logit_scale, self.model.logit_bias)

    def run(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.forward().backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def step_flops(cfg: ModelConfig, batch_size: int) -> dict[str, int]:
    """Forward (with loss) and backward FLOPs of one step, counted on the meta device."""
    step = _Step(cfg, batch_size, "meta")
    holder: dict[str, torch.Tensor] = {}
    fwd = count_flops(lambda: holder.setdefault("loss", step.forward()))
    bwd = count_flops(lambda: holder["loss"].backward())
    return {"forward": fwd, "backward": bwd}


def step_peak_memory(cfg: ModelConfig, batch_size: int, device: str) -> tuple[float, str]:
    """Peak MB of one step (forward, backward, AdamW update) after a warm-up step; and how it was taken.

    device "fake": CPU kernels under FakeTensorMode (shapes only, no compute): any batch size is cheap.
    """
    if device == "fake":
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():
            peak, _ = step_peak_memory(cfg, batch_size, "cpu")
        return peak, "torch MemTracker (modelled: FakeTensorMode, CPU kernels, no compute)"
    step = _Step(cfg, batch_size, device)
    opt = torch.optim.AdamW(step.model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    step.run(opt)  # warm-up: AdamW's moments now exist, as in every later step
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step.run(opt)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / MB, "torch.cuda.max_memory_allocated"
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(step.model, opt, step.images, step.text)
    with tracker:
        step.run(opt)
    peak = tracker.get_tracker_snapshot("peak")[torch.device(device)]["Total"]
    return peak / MB, "torch MemTracker (live tensor storages)"


def caption_embedding_flops(encoder_path: str, caption_lengths: list[int]) -> dict[int, int | None]:
    """Forward FLOPs of embedding ONE caption of each length (None past the encoder's maximum length)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(encoder_path)
    # The architecture alone fixes the FLOPs: build it on meta (no weights read, any size is free).
    with torch.device("meta"):
        encoder = AutoModel.from_config(config)
    max_len = getattr(config, "max_position_embeddings", None)
    result: dict[int, int | None] = {}
    for n in caption_lengths:
        ids = torch.zeros(1, n, dtype=torch.long, device="meta")
        # No padding mask: one caption attends to all its tokens (and meta tensors cannot be inspected).
        result[n] = None if max_len and n > max_len else count_flops(lambda ids=ids: encoder(input_ids=ids))
    return result


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise LiftError("--device cuda: no CUDA device is available")
    return device


def _parse_lengths(text: str) -> list[int]:
    try:
        lengths = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise LiftError(
            f"--caption-lengths {text!r}: expected comma-separated integers like 32,77,128"
        ) from None
    if not lengths or lengths[0] < 2:
        raise LiftError(f"--caption-lengths {text!r}: need at least one length >= 2")
    return lengths


def _row(cfg: ModelConfig, caption_len: int | None, batch_size: int, device: str) -> dict:
    flops = step_flops(cfg, batch_size)
    print(f"  {cfg.method} n={caption_len}: FLOPs counted, measuring memory on {device}", file=sys.stderr)
    peak_mb, mem_method = step_peak_memory(cfg, batch_size, device)
    return {
        "method": cfg.method,
        "model": cfg.model,
        "caption_len": caption_len,
        "batch_size": batch_size,
        "gflops_per_sample": round((flops["forward"] + flops["backward"]) / batch_size / 1e9, 4),
        "gflops_forward_per_sample": round(flops["forward"] / batch_size / 1e9, 4),
        "peak_mem_mb": round(peak_mb, 1),
        "device": device,
        "mem_method": mem_method,
    }


def measure(
    *,
    model: str,
    caption_lengths: list[int],
    batch_size: int,
    device: str,
    lift_dim: int,
    clip_dim: int,
    loss: str,
    encoder_path: str,
    grad_checkpointing: bool = False,
) -> dict:
    """Rows for CLIP at every n and for LIFT (once; repeated at every n), plus the reductions."""
    base = {"model": model, "loss": loss, "grad_checkpointing": grad_checkpointing}
    lift_row = _row(ModelConfig(method="lift", embed_dim=lift_dim, **base), None, batch_size, device)
    rows, summary = [], []
    embed_flops = caption_embedding_flops(encoder_path, caption_lengths)
    for n in caption_lengths:
        clip = _row(
            ModelConfig(method="clip", embed_dim=clip_dim, text_context_length=n, **base),
            n,
            batch_size,
            device,
        )
        lift = {**lift_row, "caption_len": n}
        rows += [clip, lift]
        embed = embed_flops[n]
        saved = clip["gflops_per_sample"] - lift["gflops_per_sample"]
        summary.append(
            {
                "caption_len": n,
                "flops_reduction_pct": round(100 * saved / clip["gflops_per_sample"], 2),
                "mem_reduction_pct": round(100 * (1 - lift["peak_mem_mb"] / clip["peak_mem_mb"]), 2),
                "embed_gflops_per_caption": None if embed is None else round(embed / 1e9, 4),
                # The one-off embedding is repaid after this many epochs of LIFT's per-step savings.
                "amortise_epochs": None if embed is None or saved <= 0 else round(embed / 1e9 / saved, 3),
            }
        )
    return {"rows": rows, "summary": summary}


def print_table(result: dict) -> None:
    print(f"{'method':>6} {'n':>5} {'GFLOPs/sample':>14} {'peak MB':>10}  memory from", file=sys.stderr)
    for r in result["rows"]:
        print(
            f"{r['method']:>6} {r['caption_len']:>5} {r['gflops_per_sample']:>14.2f} {r['peak_mem_mb']:>10.1f}"
            f"  {r['mem_method']} on {r['device']}",
            file=sys.stderr,
        )
    for s in result["summary"]:
        print(
            f"n={s['caption_len']}: LIFT saves {s['flops_reduction_pct']}% FLOPs, {s['mem_reduction_pct']}% memory;"
            f" embedding a caption once costs {s['embed_gflops_per_caption']} GFLOPs"
            f" (repaid after {s['amortise_epochs']} epochs)",
            file=sys.stderr,
        )


def save_plot(result: dict, path: str) -> None:
    """Two panels against n: GFLOPs per sample and peak memory, CLIP and LIFT (+ offline embedding cost)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lift.atomic import atomic_write

    fig, (ax_f, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for method, style in (("clip", "o-"), ("lift", "s-")):
        rows = [r for r in result["rows"] if r["method"] == method]
        ns = [r["caption_len"] for r in rows]
        ax_f.plot(ns, [r["gflops_per_sample"] for r in rows], style, label=method.upper())
        ax_m.plot(ns, [r["peak_mem_mb"] for r in rows], style, label=method.upper())
    embed = [(s["caption_len"], s["embed_gflops_per_caption"]) for s in result["summary"]]
    embed = [(n, g) for n, g in embed if g is not None]
    if embed:
        ax_f.plot(*zip(*embed, strict=True), "x--", label="embed caption once (offline)")
    first = result["rows"][0]
    ax_f.set(xlabel="caption length n (tokens)", ylabel="GFLOPs per sample per step", title="training FLOPs")
    ax_m.set(
        xlabel="caption length n (tokens)",
        ylabel="peak MB",
        title=f"peak memory, batch {first['batch_size']} ({first['device']})",
    )
    for ax in (ax_f, ax_m):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{first['model']}: one training step, CLIP vs LIFT")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    from transformers import AutoConfig

    from lift.text.default import resolve_encoder_path

    encoder_path = str(resolve_encoder_path(args.text_encoder))
    lift_dim = args.lift_dim or AutoConfig.from_pretrained(encoder_path).hidden_size
    device = _resolve_device(args.device)
    lengths = _parse_lengths(args.caption_lengths)
    print(
        f"bench flops: {args.model}, n in {lengths}, batch {args.batch_size}, memory on {device}",
        file=sys.stderr,
    )
    result = measure(
        model=args.model,
        caption_lengths=lengths,
        batch_size=args.batch_size,
        device=device,
        lift_dim=lift_dim,
        clip_dim=args.clip_dim,
        loss=args.loss,
        encoder_path=encoder_path,
        grad_checkpointing=args.grad_checkpointing,
    )
    print_table(result)
    if args.plot:
        save_plot(result, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return {
        "benchmark": "flops",
        "model": args.model,
        "batch_size": args.batch_size,
        "device": device,
        "lift_dim": lift_dim,
        "clip_dim": args.clip_dim,
        "grad_checkpointing": args.grad_checkpointing,
        "text_encoder": encoder_path,
        **result,
    }
