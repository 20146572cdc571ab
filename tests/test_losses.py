"""Losses equal open_clip's on the same inputs; the cross-rank gather gives the single-process loss."""

from __future__ import annotations

import math

import open_clip.loss as oc_loss
import pytest
import torch
import torch.multiprocessing as mp

from lift.errors import LiftError
from lift.losses import LOSSES, create_loss
from loss_rank_worker import features as _features
from loss_rank_worker import rank_worker


def test_registry_names() -> None:
    assert set(LOSSES.names()) == {"infonce", "siglip", "cosine"}
    with pytest.raises(LiftError, match="--loss must be one of cosine, infonce, siglip, got 'triplet'"):
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
    views = torch.stack([txt, txt.roll(1, dims=0)], dim=1)
    for name, scale, bias, texts in (("infonce", 2.0, None, txt), ("siglip", 2.3, -10.0, txt),
                                     ("infonce-views", 2.0, None, views), ("siglip-views", 2.3, -10.0, views)):  # fmt: skip
        i, t = img.clone().requires_grad_(), texts.clone().requires_grad_()
        bias_t = None if bias is None else torch.tensor(bias, dtype=torch.float64)
        loss = create_loss(name.removesuffix("-views"))(
            i, t, torch.tensor(scale, dtype=torch.float64), bias_t
        )
        loss.backward()
        mean_loss = sum(r[name][0] for r in per_rank) / world
        assert abs(mean_loss.item() - loss.item()) < 1e-9, name
        # all_gather's backward sums every rank's gradient; DDP then divides by the world size.
        grad_i = torch.cat([r[name][1] for r in per_rank]) / world
        grad_t = torch.cat([r[name][2] for r in per_rank]) / world
        torch.testing.assert_close(grad_i, i.grad, rtol=0, atol=1e-9)
        torch.testing.assert_close(grad_t, t.grad, rtol=0, atol=1e-9)


def _multi_positive_by_hand(img: torch.Tensor, txt: torch.Tensor, scale: float) -> float:
    """The multi-positive InfoNCE, written out loop by loop: img [B, D], txt [B, V, D]."""
    b, v, _ = txt.shape
    texts = txt.reshape(b * v, -1)
    i2t = 0.0
    for i in range(b):
        logits = [scale * float(img[i] @ texts[j]) for j in range(b * v)]
        log_norm = math.log(sum(math.exp(x) for x in logits))
        i2t += sum(log_norm - logits[i * v + k] for k in range(v)) / v
    t2i = 0.0
    for j in range(b * v):
        logits = [scale * float(texts[j] @ img[i]) for i in range(b)]
        t2i += math.log(sum(math.exp(x) for x in logits)) - logits[j // v]
    return (i2t / b + t2i / (b * v)) / 2


def test_multi_positive_infonce_equals_a_hand_computation() -> None:
    g = torch.Generator().manual_seed(3)
    img = torch.nn.functional.normalize(torch.randn(4, 8, generator=g, dtype=torch.float64), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(4, 3, 8, generator=g, dtype=torch.float64), dim=-1)
    loss = create_loss("infonce")(img, txt, torch.tensor(math.log(5.0), dtype=torch.float64))
    assert loss.item() == pytest.approx(_multi_positive_by_hand(img, txt, 5.0), rel=1e-12)


@pytest.mark.parametrize("name", ["infonce", "siglip", "cosine"])
def test_one_view_is_the_plain_loss(name: str) -> None:
    img, txt = _features(n=6, seed=4)
    scale, bias = torch.tensor(2.0, dtype=torch.float64), torch.tensor(-3.0, dtype=torch.float64)
    plain = create_loss(name)(img, txt, scale, bias if name == "siglip" else None)
    viewed = create_loss(name)(img, txt[:, None], scale, bias if name == "siglip" else None)
    assert viewed.item() == pytest.approx(plain.item(), rel=1e-12)


def test_siglip_counts_every_view_as_a_positive_pair() -> None:
    img, txt = _features(n=3, seed=5)
    views = torch.stack([txt, txt.flip(0)], dim=1)  # [3, 2, D]
    scale, bias = torch.tensor(1.5, dtype=torch.float64), torch.tensor(-2.0, dtype=torch.float64)
    loss = create_loss("siglip")(img, views, scale, bias)
    logits = scale.exp() * img @ views.reshape(6, -1).T + bias  # [3, 6]
    labels = -torch.ones(3, 6, dtype=torch.float64)
    for i in range(3):
        labels[i, 2 * i : 2 * i + 2] = 1
    assert loss.item() == pytest.approx(float(-torch.nn.functional.logsigmoid(labels * logits).sum() / 3))
