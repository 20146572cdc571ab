"""One rank of the 2-process loss test (its own module: spawned children import only torch and lift)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lift.losses import create_loss


def features(n: int = 8, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(img + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    return img, txt


def rank_worker(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    img, txt = features(n=4 * world, seed=1)
    b = img.shape[0] // world
    results = {}
    views = torch.stack([txt, txt.roll(1, dims=0)], dim=1)  # [N, 2, D]: two captions per image
    for name, scale, bias, texts in (("infonce", 2.0, None, txt), ("siglip", 2.3, -10.0, txt),
                                     ("infonce-views", 2.0, None, views), ("siglip-views", 2.3, -10.0, views)):  # fmt: skip
        i = img[rank * b : (rank + 1) * b].clone().requires_grad_()
        t = texts[rank * b : (rank + 1) * b].clone().requires_grad_()
        s = torch.tensor(scale, dtype=torch.float64)
        bias_t = None if bias is None else torch.tensor(bias, dtype=torch.float64)
        loss = create_loss(name.removesuffix("-views"), world_size=world, rank=rank)(i, t, s, bias_t)
        loss.backward()
        results[name] = (loss.detach(), i.grad, t.grad)
    torch.save(results, f"{out}.{rank}")
    # Without it a rank can tear down its gloo pairs while the other still talks through them, and the
    # other then aborts ("terminate called without an active exception"): seen in about 1 run in 3.
    dist.barrier()
    dist.destroy_process_group()
    # The results are on disk. A loaded machine has shown gloo's threads aborting the interpreter's
    # shutdown ("terminate called without an active exception") after this point; end without it.
    os._exit(0)
