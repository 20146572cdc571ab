"""Models: every registered architecture x method runs forward and backward; heads, clamp, decay split."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch

from lift.config import config_from_dict, config_to_dict
from lift.errors import LiftError
from lift.losses import create_loss
from lift.models import ModelConfig, create_model, get_spec, get_tokenizer, list_models

EMBED = 32


def _batch(model, cfg: ModelConfig, n: int, device: str = "cpu"):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, model.image_size, model.image_size, generator=g).to(device)
    if cfg.method == "clip":
        tokens = get_tokenizer(cfg)([f"caption number {i} with a red circle" for i in range(n)]).to(device)
        return images, tokens
    return images, torch.nn.functional.normalize(torch.randn(n, cfg.embed_dim, generator=g), dim=-1).to(
        device
    )


def _features(model, cfg: ModelConfig, images, text):
    img = model.encode_image(images)
    txt = model.encode_text(text) if cfg.method == "clip" else text
    return img, txt


@pytest.mark.parametrize("method", ["lift", "clip"])
@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward(name: str, method: str) -> None:
    # vit-b16 runs on the meta device: shapes and autograd are checked without the CPU cost.
    device = "meta" if name == "vit-b16" else "cpu"
    cfg = ModelConfig(method=method, model=name, embed_dim=EMBED, text_context_length=16)
    torch.manual_seed(0)
    with torch.device(device):
        model = create_model(cfg)
    images, text = _batch(model, cfg, 2, device)
    img, txt = _features(model, cfg, images, text)
    assert img.shape == (2, EMBED) and txt.shape == (2, EMBED)
    create_loss(cfg.loss)(img, txt, model.logit_scale, model.logit_bias).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    if device == "cpu":
        assert torch.allclose(img.norm(dim=-1), torch.ones(2), atol=1e-5)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_vit_b16_matches_the_paper() -> None:
    spec = get_spec("vit-b16")
    v, t = spec.vision, spec.text
    assert (v.layers, v.width, v.width // v.head_width, v.patch_size, v.image_size, v.pool_type) == (
        12, 768, 12, 16, 224, "avg",
    )  # fmt: skip
    assert (t.layers, t.width, t.heads, t.context_length) == (12, 512, 8, 77)
    with torch.device("meta"):
        model = create_model(ModelConfig(model="vit-b16", embed_dim=4096))
    assert model.visual.proj is None  # no built-in projection: the head projects
    assert [type(m).__name__ for m in model.head] == ["Linear", "GELU", "Linear"]
    assert (model.head[0].in_features, model.head[0].out_features, model.head[2].out_features) == (
        768,
        4096,
        4096,
    )
    assert model.image_size == 224


@pytest.mark.parametrize(
    ("depth", "kinds"), [(1, ["Linear"]), (3, ["Linear", "GELU", "Linear", "GELU", "Linear"])]
)
def test_head_depth(depth: int, kinds: list[str]) -> None:
    model = create_model(ModelConfig(embed_dim=EMBED, head_depth=depth, head_hidden=48))
    assert [type(m).__name__ for m in model.head] == kinds
    assert model.head[-1].out_features == EMBED
    assert model.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, EMBED)


def test_logit_init_per_loss() -> None:
    lift = create_model(ModelConfig(embed_dim=EMBED))
    assert lift.logit_scale.item() == pytest.approx(math.log(1 / 0.07)) and lift.logit_bias is None
    sig = create_model(ModelConfig(method="clip", embed_dim=EMBED, loss="siglip"))
    assert sig.logit_scale.item() == pytest.approx(math.log(10)) and sig.logit_bias.item() == -10.0


@pytest.mark.parametrize("method", ["lift", "clip"])
def test_init_temperature_overrides_the_loss_default(method: str) -> None:
    model = create_model(ModelConfig(method=method, embed_dim=EMBED, init_temperature=0.02))
    assert model.logit_scale.exp().item() == pytest.approx(50.0)
    with pytest.raises(LiftError, match="init_temperature"):
        create_model(ModelConfig(method=method, embed_dim=EMBED, init_temperature=0.005))


def test_clamp_logit_scale() -> None:
    model = create_model(ModelConfig(embed_dim=EMBED))
    with torch.no_grad():
        model.logit_scale.fill_(7.0)
    model.clamp_logit_scale()
    assert model.logit_scale.item() == pytest.approx(math.log(100))
    with torch.no_grad():
        model.logit_scale.fill_(-3.0)
    model.clamp_logit_scale()
    assert model.logit_scale.item() == 0.0


@pytest.mark.parametrize("method", ["lift", "clip"])
def test_no_weight_decay_names(method: str) -> None:
    model = create_model(ModelConfig(method=method, embed_dim=EMBED, loss="siglip"))
    names = model.no_weight_decay_names()
    params = dict(model.named_parameters())
    assert names <= set(params)
    expected_in = {"logit_scale", "logit_bias", "visual.positional_embedding", "visual.class_embedding",
                   "visual.ln_post.weight", "visual.transformer.resblocks.0.attn.in_proj_bias"}  # fmt: skip
    expected_out = {"visual.conv1.weight", "visual.transformer.resblocks.0.mlp.c_fc.weight"}
    if method == "lift":
        expected_in |= {"head.0.bias", "head.2.bias"}
        expected_out |= {"head.0.weight", "head.2.weight"}
    else:
        expected_in |= {"positional_embedding", "ln_final.weight"}
        expected_out |= {"token_embedding.weight", "text_projection", "visual.proj"}
    assert expected_in <= names
    assert not expected_out & names
    # Every other matrix is decayed; every vector is not.
    assert all(params[n].ndim < 2 or n.endswith("_embedding") for n in names)
    assert all(p.ndim >= 2 for n, p in params.items() if n not in names)


def test_config_round_trip_rebuilds_same_architecture() -> None:
    cfg = ModelConfig(method="clip", embed_dim=EMBED, text_context_length=20)
    model = create_model(cfg)
    rebuilt = create_model(config_from_dict(ModelConfig, config_to_dict(model.config)))
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(LiftError, match="unknown key"):
        config_from_dict(ModelConfig, {"methd": "lift"})


def test_clip_checkpoint_loads_into_plain_open_clip() -> None:
    cfg = ModelConfig(method="clip", embed_dim=EMBED)
    ours = create_model(cfg).eval()
    spec = get_spec(cfg.model)
    ref = open_clip.CLIP(embed_dim=EMBED, vision_cfg=spec.vision, text_cfg=spec.text).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    images, tokens = _batch(ours, cfg, 2)
    torch.testing.assert_close(ours.encode_text(tokens), ref.encode_text(tokens, normalize=True))
    torch.testing.assert_close(ours.encode_image(images), ref.encode_image(images, normalize=True))


def test_bad_names_and_lift_text() -> None:
    with pytest.raises(LiftError, match="--model must be one of .*, got .vit-huge."):
        create_model(ModelConfig(model="vit-huge"))
    with pytest.raises(LiftError, match="unknown model class .blip."):
        create_model(ModelConfig(method="blip"))
    with pytest.raises(LiftError, match="--loss must be one of"):
        create_model(ModelConfig(loss="triplet"))
    with pytest.raises(LiftError, match="no text tower"):
        create_model(ModelConfig()).encode_text(torch.zeros(1, 77, dtype=torch.long))


def test_grad_checkpointing_gives_same_gradients() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=EMBED)
    plain = create_model(cfg)
    ckpt = create_model(ModelConfig(embed_dim=EMBED, grad_checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    images, text = _batch(plain, cfg, 4)
    for m in (plain, ckpt):
        create_loss("infonce")(m.encode_image(images), text, m.logit_scale).backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.parametrize(
    ("method", "loss"), [("lift", "infonce"), ("lift", "cosine"), ("lift", "siglip"), ("clip", "infonce")]
)
def test_few_adamw_steps_overfit_a_fixed_batch(method: str, loss: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(method=method, embed_dim=EMBED, loss=loss, text_context_length=16)
    model = create_model(cfg)
    images, text = _batch(model, cfg, 8)
    loss_fn = create_loss(loss)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    losses = []
    for _ in range(20):
        value = loss_fn(*_features(model, cfg, images, text), model.logit_scale, model.logit_bias)
        opt.zero_grad()
        value.backward()
        opt.step()
        model.clamp_logit_scale()
        losses.append(value.item())
    assert losses[-1] < 0.3 * losses[0], losses
