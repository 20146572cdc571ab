"""Training-step throughput, LIFT vs CLIP, side by side: the same vision tower, batch and optimizer;
LIFT reads stored text embeddings, CLIP runs its text tower on captions of n tokens (77 by default).

Inputs are random tensors held in memory (images, embeddings, token ids with no padding), so the
numbers time the training step itself (forward, backward, AdamW), not data loading. Both methods
run the same `forward_backward` the training loop runs, alternating rounds to share CPU noise.

Examples:
  lift bench train --json
  lift bench train --model vit-small --batch-size 64 --tokens 77 --steps 10 --json
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

NAME = "train"
HELP = "training-step img/s of LIFT vs CLIP (same tower and batch; CLIP captions of n tokens)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="vit-tiny", help="vision tower for both methods (default vit-tiny)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=77, help="CLIP caption length n (default 77)")
    parser.add_argument("--embed-dim", type=int, default=384, help="LIFT store dim (MiniLM: 384)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best is kept")
    parser.add_argument("--seed", type=int, default=0)


def _setup(method: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from lift.losses import create_loss
    from lift.methods import get_method
    from lift.models import ModelConfig, create_model
    from lift.optim import create_optimizer
    from lift.train import StepForward, TrainConfig

    torch.manual_seed(args.seed)
    cfg = ModelConfig(
        method=method, model=args.model, embed_dim=args.embed_dim, text_context_length=args.tokens
    )
    model = create_model(cfg).to(device).train()
    g = torch.Generator().manual_seed(args.seed)
    b, s = args.batch_size, model.image_size
    images = torch.randn(b, 3, s, s, generator=g)
    if method == "lift":
        texts = torch.randn(b, args.embed_dim, generator=g)
    else:  # token ids in [1, vocab): every caption is n tokens long, no padding
        vocab = model.vocab_size if hasattr(model, "vocab_size") else 49408
        texts = torch.randint(1, vocab, (b, args.tokens), generator=g)
    return {
        "net": StepForward(model, get_method(method)(TrainConfig(method=method))), "model": model, "loss": create_loss("infonce"),
        "opt": create_optimizer(model, lr=1e-3, weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6),
        "images": images.to(device), "texts": texts.to(device),
    }  # fmt: skip


def _time_steps(ctx: dict[str, Any], steps: int, device: torch.device) -> float:
    from lift.train import forward_backward

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    start = time.perf_counter()
    for _ in range(steps):
        ctx["opt"].zero_grad(set_to_none=True)
        forward_backward(ctx["net"], ctx["model"], ctx["loss"], ctx["images"], ctx["texts"],
                         micro=len(ctx["images"]), autocast=autocast)  # fmt: skip
        ctx["opt"].step()
        ctx["model"].clamp_logit_scale()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(ctx["images"]) / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ctx = {m: _setup(m, args, device) for m in ("lift", "clip")}
    for m in ctx:  # warm-up: allocator, kernels
        _time_steps(ctx[m], 1, device)
    best = {m: 0.0 for m in ctx}
    for r in range(args.rounds):
        for m in ctx:
            best[m] = max(best[m], _time_steps(ctx[m], args.steps, device))
        print(
            f"round {r + 1}/{args.rounds}: lift {best['lift']:.1f} img/s, clip {best['clip']:.1f} img/s",
            file=sys.stderr,
        )
    return {
        "model": args.model, "batch_size": args.batch_size, "tokens": args.tokens, "device": str(device),
        "threads": torch.get_num_threads(), "lift_img_per_s": round(best["lift"], 2),
        "clip_img_per_s": round(best["clip"], 2), "speedup": round(best["lift"] / best["clip"], 3),
    }  # fmt: skip
