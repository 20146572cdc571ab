"""`lift export`: the exported folders load in the real libraries (transformers, open_clip) and give our
model's numbers: per-layer hidden states for CLIPVisionModel, embeddings for open_clip."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPVisionModel

import lift
from interop_fixtures import images, open_clip_cfg, our_checkpoint, reference_clip, save_reference
from lift.cli import main
from lift.errors import LiftError
from lift.interop.export import export_model
from lift.models import ModelConfig

TOL = {"atol": 1e-4, "rtol": 0}


def _photo(seed: int = 0) -> Image.Image:
    """A non-square image, so resizing and cropping both happen."""
    pixels = np.random.default_rng(seed).integers(0, 255, (53, 71, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _open_clip_internals(visual: torch.nn.Module, x: torch.Tensor) -> dict[str, object]:
    """ln_pre output, every resblock's output and ln_post output of an open_clip ViT, by hooks."""
    seen: dict[str, object] = {"blocks": []}
    hooks = [visual.ln_pre.register_forward_hook(lambda m, i, o: seen.__setitem__("ln_pre", o)),
             visual.ln_post.register_forward_hook(lambda m, i, o: seen.__setitem__("ln_post", o))]  # fmt: skip
    hooks += [
        b.register_forward_hook(lambda m, i, o: seen["blocks"].append(o))
        for b in visual.transformer.resblocks
    ]
    with torch.no_grad():
        seen["out"] = visual(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {
        "lift": our_checkpoint(root / "lift", ModelConfig(method="lift", model="vit-tiny", embed_dim=32)),
        "clip-reference": save_reference(reference_clip(), root / "clip.pt", open_clip_cfg()),  # + clip.json
        "clip-siglip": our_checkpoint(
            root / "clip", ModelConfig(method="clip", embed_dim=32, loss="siglip", text_context_length=16)
        ),
    }


@pytest.mark.parametrize("name", ["lift", "clip-reference"])
def test_hf_clip_vision_gives_our_hidden_states(sources, tmp_path, capsys, name):
    out = tmp_path / "hf"
    assert main(["export", str(sources[name]), "--format", "hf-clip-vision", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    ours = lift.load(sources[name])
    hf, info = CLIPVisionModel.from_pretrained(out, output_loading_info=True)
    hf.eval()
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info

    size = ours.model.image_size
    x = images(2, size)
    ref = _open_clip_internals(ours.model.visual, x)
    with torch.no_grad():
        got = hf(pixel_values=x, output_hidden_states=True)
    assert len(got.hidden_states) == len(ref["blocks"]) + 1
    torch.testing.assert_close(got.hidden_states[0], ref["ln_pre"], **TOL)
    for layer, block in enumerate(ref["blocks"], start=1):  # LLaVA reads hidden_states[-2]
        torch.testing.assert_close(got.hidden_states[layer], block, **TOL, msg=f"layer {layer}")
    torch.testing.assert_close(got.last_hidden_state, ref["blocks"][-1], **TOL)
    readme = (out / "README.md").read_text()
    note = json.loads((out / "config.json").read_text())["lift_export"]
    assert note["head_included"] is False and note["method"] == ours.method
    if name == "lift":  # average pooling: the trunk's output, which the head then projects
        pooled = hf.post_layernorm(got.last_hidden_state[:, 1:]).mean(1)
        torch.testing.assert_close(pooled, ref["out"], **TOL)
        assert "without LIFT's MLP head" in readme and "without LIFT's MLP head" in printed
    else:  # class token: HF's pooler_output is open_clip's pooled feature before visual.proj
        torch.testing.assert_close(got.pooler_output, ref["ln_post"][:, 0], **TOL)
        torch.testing.assert_close(got.pooler_output @ ours.model.visual.proj, ref["out"], **TOL)
        assert "pooled image feature is `pooler_output (the layer-normed class token)`" in readme

    processor = CLIPImageProcessor.from_pretrained(out)
    assert processor.crop_size == {"height": size, "width": size} and processor.size == {
        "shortest_edge": size
    }
    assert processor.image_mean == pytest.approx(list(ours.model.image_mean))
    diff = (processor(images=_photo(), return_tensors="pt").pixel_values[0] - ours.preprocess(_photo())).abs()
    # PIL bicubic in both: a few pixels differ by one or two uint8 levels (1/255/std = 0.015) of rounding
    assert diff.max() < 0.05 and diff.mean() < 1e-3


@pytest.mark.parametrize("name", ["clip-siglip", "clip-reference"])
def test_open_clip_loads_the_export_offline(sources, tmp_path, name):
    out = tmp_path / f"{name}-oc"
    report = export_model(sources[name], fmt="open_clip", out=out)
    assert report.files == [f"{name}-oc.json", "open_clip_config.json", "open_clip_model.safetensors"]
    ours = lift.load(sources[name])
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    open_clip.add_model_config(out)  # the route of open_clip versions without local-dir:
    by_name = open_clip.create_model(f"{name}-oc", pretrained=str(out / "open_clip_model.safetensors"))
    texts = ["a photo of a dog", "two red cubes left of a sphere"]
    x = images(2, ours.model.image_size)
    with torch.no_grad():
        for loaded in (model.eval(), by_name.eval()):
            torch.testing.assert_close(loaded.encode_image(x, normalize=True), ours.encode_image(x), **TOL)
            torch.testing.assert_close(
                loaded.encode_text(tokenizer(texts), normalize=True), ours.encode_text(texts), **TOL
            )
    assert tokenizer.context_length == ours.config["model"]["text_context_length"]
    assert model.logit_scale.item() == pytest.approx(ours.model.logit_scale.item())
    if name == "clip-siglip":
        assert model.logit_bias.item() == pytest.approx(ours.model.logit_bias.item())
    torch.testing.assert_close(preprocess(_photo()), ours.preprocess(_photo()), atol=0, rtol=0)


def test_open_clip_refuses_lift_in_one_line(sources, tmp_path, capsys):
    code = main(["export", str(sources["lift"]), "--format", "open_clip", "--out", str(tmp_path / "oc")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no MLP-head slot" in err and "--format hf-clip-vision" in err
    assert not (tmp_path / "oc").exists() and not list(tmp_path.glob(".oc.tmp-*"))


def test_existing_out_needs_overwrite(sources, tmp_path, capsys):
    out = tmp_path / "hf"
    args = ["export", str(sources["clip-siglip"]), "--format", "hf-clip-vision", "--out", str(out)]
    assert main(args) == 0
    (out / "stale.txt").write_text("from an older export")
    assert main(args) == 2
    assert "already exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    with pytest.raises(LiftError, match="--format must be one of hf-clip-vision, open_clip, got 'onnx'"):
        export_model(sources["lift"], fmt="onnx", out=tmp_path / "x")
