"""`lift.load` on the reference implementation's `.pt` layout: reference models are built with open_clip
(random weights), saved as the reference code saves them, loaded, and must give the same outputs."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lift
from interop_fixtures import (
    TINY_HEADS,
    images,
    open_clip_cfg,
    our_checkpoint,
    reference_clip,
    reference_lift,
    save_reference,
)
from lift.config import config_from_dict, config_to_dict
from lift.errors import LiftError
from lift.interop.reference import convert_reference_state
from lift.models import ModelConfig, VisionTowerConfig, create_model, vision_tower
from lift.text import TextEncoder
from lift.text.default import default_encoder_path

TOL = {"atol": 1e-4, "rtol": 0}


def _rebuilds(model: lift.api.LoadedModel) -> None:
    """The loaded model's config alone rebuilds it: same architecture, every weight fits."""
    config = config_from_dict(ModelConfig, model.config["model"])
    with torch.device("meta"):
        rebuilt = create_model(config)
    rebuilt.load_state_dict(model.state_dict(), strict=True, assign=True)


def test_stock_open_clip_vit_b16_clip(tmp_path):
    """open_clip's ViT-B-16 itself (the paper's CLIP baseline layout): class-token pooling, 77 tokens."""
    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-16").eval()
    model = lift.load(save_reference(ref, tmp_path / "clip.pt"))
    cfg = model.config["model"]
    assert cfg["vision"] == {"layers": 12, "width": 768, "heads": 12, "patch_size": 16, "image_size": 224,
                             "mlp_ratio": 4.0, "pool_type": "tok"}  # fmt: skip
    assert cfg["text"] == {"layers": 12, "width": 512, "heads": 8, "vocab_size": 49408, "mlp_ratio": 4.0}
    assert (cfg["method"], cfg["embed_dim"], cfg["text_context_length"]) == ("clip", 512, 77)
    x = images(1, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), ref.encode_image(x, normalize=True), **TOL)
        texts = ["a photo of a dog", "two red cubes left of a sphere"]
        expected = ref.encode_text(open_clip.get_tokenizer("ViT-B-16")(texts), normalize=True)
        torch.testing.assert_close(model.encode_text(texts), expected, **TOL)
    _rebuilds(model)


def test_reference_clip_context_length_and_zero_shot_classifier(tmp_path):
    ref = reference_clip(context_length=20)
    model = lift.load(save_reference(ref, tmp_path / "clip.pt", open_clip_cfg()))  # heads: clip.json
    assert model.config["model"]["text_context_length"] == 20
    names, templates = ["cat", "dog", "red cube"], ["a photo of a {c}.", "a {label} in the wild"]
    classifier = model.zero_shot_classifier(names, templates)  # [D, C]
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=20)
    with torch.no_grad():
        per_class = [
            F.normalize(
                ref.encode_text(tokenizer([f"a photo of a {c}.", f"a {c} in the wild"])), dim=-1
            ).mean(0)
            for c in names
        ]
    torch.testing.assert_close(classifier, F.normalize(torch.stack(per_class, dim=1), dim=0), **TOL)
    x = images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), ref.encode_image(x, normalize=True), **TOL)


def test_reference_lift_images_and_text(tmp_path):
    """A reference LIFT (avg-pooled ViT + mlp_projector.projector) paired with a frozen encoder it names."""
    encoder = TextEncoder.from_pretrained("default", device="cpu")
    ref = reference_lift(hidden=encoder.dim, embed_dim=encoder.dim)
    path = save_reference(ref, tmp_path / "lift.pt")
    model = lift.load(path, vision_heads=2)
    cfg = model.config["model"]
    assert (cfg["method"], cfg["head_depth"], cfg["head_hidden"], cfg["embed_dim"]) == ("lift", 2, 384, 384)
    assert cfg["vision"]["pool_type"] == "avg" and model.text_identity is None
    x = images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), ref.encode_image(x), **TOL)
    assert model.model.logit_scale.item() == pytest.approx(2.6592)
    with pytest.raises(
        LiftError,
        match=r"lift\.pt: no text encoder recorded.*--text-encoder FOLDER \(lift eval\) or text_encoder=",
    ):
        model.encode_text(["a cat"])
    _rebuilds(model)

    paired = lift.load(path, text_encoder=encoder.path, max_tokens=77, vision_heads=2)
    assert paired.text_identity == encoder.identity  # opened on load, so results record it
    texts = ["a red circle", "two blue squares"]
    torch.testing.assert_close(paired.encode_text(texts), F.normalize(encoder.encode(texts), dim=-1), **TOL)


def test_the_papers_lift_shapes_infer_the_papers_architecture():
    """ViT-B/16 (avg-pooled, no proj) + Linear 768->4096, GELU, Linear 4096->4096: on the meta device."""
    with torch.device("meta"):
        trunk = open_clip.create_model("ViT-B-16", device="meta").visual
        head = nn.Sequential(nn.Linear(768, 4096), nn.GELU(), nn.Linear(4096, 4096))
    state = {f"module.visual.{k}": v for k, v in trunk.state_dict().items() if k != "proj"}
    state |= {f"module.mlp_projector.projector.{k}": v for k, v in head.state_dict().items()}
    state["module.logit_scale"] = torch.empty((), device="meta")
    config, weights = convert_reference_state(
        {k.removeprefix("module."): v for k, v in state.items()}, where="lift_b16.pt"
    )
    assert config.vision is not None and config.text is None
    v = config.vision
    assert (v.layers, v.width, v.heads, v.patch_size, v.image_size, v.pool_type) == (
        12,
        768,
        12,
        16,
        224,
        "avg",
    )
    assert (config.embed_dim, config.head_depth, config.head_hidden) == (4096, 2, 4096)
    with torch.device("meta"):
        ours = create_model(config)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in weights.items()}


def test_a_clip_reference_pooled_differently_is_told_so(tmp_path):
    ref = reference_clip()
    ref.visual.pool_type = "avg"  # e.g. a CLIP trained with LIFT's average pooling
    path = save_reference(ref, tmp_path / "clip.pt")
    x = images(1, 32)
    with torch.no_grad():
        expected = ref.encode_image(x, normalize=True)
        assert not torch.allclose(lift.load(path, **TINY_HEADS).encode_image(x), expected, atol=1e-3)
        pooled = lift.load(path, vision_pool="avg", **TINY_HEADS)
        torch.testing.assert_close(pooled.encode_image(x), expected, **TOL)


def test_bad_reference_files_are_named(tmp_path):
    junk = tmp_path / "junk.pt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, junk)
    with pytest.raises(LiftError, match=r"junk\.pt: not a LIFT or CLIP checkpoint in the reference layout"):
        lift.load(junk)
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "callback": print}, evil)
    with pytest.raises(LiftError, match=r"evil\.pt: holds pickled Python objects") as refused:
        lift.load(evil)
    assert "weights_only=False" not in str(refused.value) and "weights_only` set to `False" not in str(
        refused.value
    )
    torn = tmp_path / "torn.pt"
    ref = reference_lift()
    state = {k: v for k, v in ref.state_dict().items() if "resblocks.1." not in k or "attn" in k}
    torch.save({"state_dict": state}, torn)
    with pytest.raises(LiftError, match=r"torn\.pt: weights do not fit.*missing"):
        lift.load(torn, vision_heads=2)
    with pytest.raises(LiftError, match="vision_pool must be one of"):
        lift.load(save_reference(ref, tmp_path / "lift.pt"), vision_pool="max")


def test_text_encoder_of_the_wrong_dim_is_refused(tmp_path):
    path = save_reference(reference_lift(embed_dim=64), tmp_path / "lift.pt")
    with pytest.raises(LiftError, match=r"gives 384-d embeddings but .*lift\.pt reads 64-d text vectors"):
        lift.load(path, text_encoder=default_encoder_path(), vision_heads=2)


def test_configs_without_towers_load_unchanged_and_explicit_towers_round_trip():
    old = {"method": "lift", "model": "vit-tiny", "embed_dim": 384, "head_depth": 2, "head_hidden": None,
           "loss": "infonce", "text_context_length": 77, "grad_checkpointing": False}  # fmt: skip
    cfg = config_from_dict(ModelConfig, old)  # a config.json written before `vision` / `text` existed
    assert cfg.vision is None and cfg.text is None
    assert vision_tower(cfg) == VisionTowerConfig(layers=4, width=128, heads=4, patch_size=8, image_size=64)
    explicit = config_from_dict(ModelConfig, {**old, "vision": config_to_dict(vision_tower(cfg))})
    assert explicit.vision == vision_tower(cfg)
    assert create_model(explicit).state_dict().keys() == create_model(cfg).state_dict().keys()
    with pytest.raises(LiftError, match=r"model\.vision: unknown key\(s\) \['widht'\]"):
        config_from_dict(ModelConfig, {**old, "vision": {"layers": 2, "widht": 128}}, where="model")
    with pytest.raises(LiftError, match="not divisible by 3 heads"):
        VisionTowerConfig(layers=2, width=128, heads=3, patch_size=8, image_size=64)


def test_text_options_must_agree_with_what_a_checkpoint_records(tmp_path):
    identity = {"name": "enc", "weights_sha256": "x", "pooling": "mean", "max_length": 77, "instruction": ""}
    run = our_checkpoint(tmp_path / "lift", ModelConfig(embed_dim=32), text_identity=identity)
    assert lift.load(run, pooling="mean", max_tokens=77).text_identity == identity
    with pytest.raises(
        LiftError, match=r"records its text encoder's settings; asked for pooling='cls' \(recorded 'mean'\)"
    ):
        lift.load(run, pooling="cls")
    clip = save_reference(reference_clip(), tmp_path / "clip.pt", open_clip_cfg())
    with pytest.raises(LiftError, match=r"clip\.pt: a clip model encodes text with its own tower"):
        lift.load(clip, text_encoder="default")
