"""Losses equal open_clip's on the same inputs; the cross-rank gather gives the single-process loss."""

from __future__ import annotations

import math

import open_clip.loss as oc_loss
import pytest
import torch
import torch.multiprocessing as mp

from lift.errors import LiftError
from lift.losses import LOSS_REGISTRY, create_loss
from loss_rank_worker import features as _features
from loss_rank_worker import rank_worker


def test_registry_names() -> None:
    assert set(LOSS_REGISTRY) == {"infonce", "siglip", "cosine"}
    with pytest.raises(LiftError, match="unknown loss"):
        create_loss("triplet")


@pytest.mark.parametrize("bias", [None, -1.5])
def test_infonce_equals_open_clip(bias: float | None) -> None:
    img, txt = _features()
    log_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    b = None if bias is None else torch.tensor(bias, dtype=torch.float64)
    ours = create_loss("infonce")(img, txt, log_scale, b)
    ref = oc_loss.ClipLoss()(img, txt, log_scale.exp(), b)
    assert abs(ours.item() - ref.item()) < 1e-6
    assert ours.item() > 0


def test_siglip_equals_open_clip() -> None:
    img, txt = _features()
    log_scale, bias = (
        torch.tensor(math.log(10.0), dtype=torch.float64),
        torch.tensor(-10.0, dtype=torch.float64),
    )
    ours = create_loss("siglip")(img, txt, log_scale, bias)
    ref = oc_loss.SigLipLoss()(img, txt, log_scale.exp(), bias)
    assert abs(ours.item() - ref.item()) < 1e-6
    with pytest.raises(LiftError, match="logit_bias"):
        create_loss("siglip")(img, txt, log_scale)


def test_cosine_loss() -> None:
    img, txt = _features()
    scale = torch.tensor(2.0, requires_grad=True)
    loss = create_loss("cosine")(img, txt, scale)
    expected = (1 - (img * txt).sum(-1)).mean()  # unit vectors: cos is the dot product
    assert abs(loss.item() - expected.item()) < 1e-9
    assert create_loss("cosine")(img, img, scale).item() == pytest.approx(0.0, abs=1e-9)
    loss.backward()
    assert scale.grad is not None and scale.grad.item() == 0.0  # in the graph (for DDP), but no pull


def test_gathered_local_loss_equals_global(tmp_path) -> None:
    world = 2
    out = str(tmp_path / "res")
    mp.spawn(rank_worker, args=(world, f"file://{tmp_path / 'init'}", out), nprocs=world, join=True)
    per_rank = [torch.load(f"{out}.{r}") for r in range(world)]
    img, txt = _features(n=4 * world, seed=1)
    for name, scale, bias in (("infonce", 2.0, None), ("siglip", 2.3, -10.0)):
        i, t = img.clone().requires_grad_(), txt.clone().requires_grad_()
        bias_t = None if bias is None else torch.tensor(bias, dtype=torch.float64)
        loss = create_loss(name)(i, t, torch.tensor(scale, dtype=torch.float64), bias_t)
        loss.backward()
        mean_loss = sum(r[name][0] for r in per_rank) / world
        assert abs(mean_loss.item() - loss.item()) < 1e-9, name
        # all_gather's backward sums every rank's gradient; DDP then divides by the world size.
        grad_i = torch.cat([r[name][1] for r in per_rank]) / world
        grad_t = torch.cat([r[name][2] for r in per_rank]) / world
        torch.testing.assert_close(grad_i, i.grad, rtol=0, atol=1e-9)
        torch.testing.assert_close(grad_t, t.grad, rtol=0, atol=1e-9)
