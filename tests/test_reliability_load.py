"""Issue 15, loading side: reference `.pt` head counts are never guessed (item 10), a config that does
not fit its weights is named in one line (item 12), and the pickle refusal never suggests unpickling
(item 13). Reference checkpoints are open_clip's own models with 4 heads of width 32 (lift's vit-tiny
width), which a 64-wide-head assumption would load as 2 heads and compute something else."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

import lift
from interop_fixtures import (
    images,
    open_clip_cfg,
    our_checkpoint,
    reference_clip,
    reference_lift,
    save_reference,
)
from lift.cli import main
from lift.errors import LiftError
from lift.models import ModelConfig

TOL = {"atol": 1e-5, "rtol": 0}
VISION_4x32 = CLIPVisionCfg(layers=2, width=128, head_width=32, patch_size=16, image_size=32)
TEXT_4x32 = CLIPTextCfg(context_length=20, width=128, heads=4, layers=2)
CFG_4x32 = open_clip_cfg(VISION_4x32, TEXT_4x32)
TEXTS = ["a photo of a dog", "two red cubes left of a sphere"]


@pytest.fixture(scope="module")
def clip4():
    return reference_clip(seed=3, vision=VISION_4x32, text=TEXT_4x32)


def _same_as(model, ref) -> None:
    x = images(2, 32, seed=1)
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=20)(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), ref.encode_image(x, normalize=True), **TOL)
        torch.testing.assert_close(model.encode_text(TEXTS), ref.encode_text(tokens, normalize=True), **TOL)
    assert model.config["model"]["vision"]["heads"] == 4 and model.config["model"]["text"]["heads"] == 4


def test_a_4_head_clip_without_config_or_flags_is_refused_naming_the_flag(tmp_path, clip4):
    pt = save_reference(clip4, tmp_path / "clip.pt")
    with pytest.raises(
        LiftError, match=r"clip\.pt: the 128-wide vision tower's head count .*--vision-heads N"
    ):
        lift.load(pt)
    with pytest.raises(LiftError, match=r"128-wide text tower's head count .*--text-heads N"):
        lift.load(pt, vision_heads=4)


def test_a_4_head_clip_loads_exactly_with_the_flags(tmp_path, clip4):
    _same_as(lift.load(save_reference(clip4, tmp_path / "clip.pt"), vision_heads=4, text_heads=4), clip4)


@pytest.mark.parametrize("where", ["--model-config", "NAME.json", "open_clip_config.json", "params.txt"])
def test_a_4_head_clip_loads_exactly_with_its_model_config(tmp_path, clip4, where):
    """The config given explicitly, or found beside the .pt, or through open_clip's trainer's params.txt."""
    kwargs = {}
    if where == "--model-config":
        pt = save_reference(clip4, tmp_path / "clip.pt")
        (tmp_path / "cfgs").mkdir()
        (tmp_path / "cfgs" / "tiny.json").write_text(json.dumps(CFG_4x32))
        kwargs["model_config"] = tmp_path / "cfgs" / "tiny.json"
    elif where == "NAME.json":
        pt = save_reference(clip4, tmp_path / "clip.pt", CFG_4x32)
    elif where == "open_clip_config.json":
        pt = save_reference(clip4, tmp_path / "clip.pt")
        (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": CFG_4x32}))
    else:  # open_clip's trainer: logs/NAME/params.txt + logs/NAME/checkpoints/epoch_N.pt
        run = tmp_path / "logs" / "tiny-run"
        (run / "checkpoints").mkdir(parents=True)
        pt = save_reference(clip4, run / "checkpoints" / "epoch_2.pt")
        (run / "params.txt").write_text(
            "batch_size: 8\nforce_quick_gelu: False\nmodel: tiny-4x32\nlr: 0.001\n"
        )
        (run / "tiny-4x32.json").write_text(json.dumps(CFG_4x32))
    _same_as(lift.load(pt, **kwargs), clip4)


def test_a_model_config_that_disagrees_is_refused_naming_the_key(tmp_path, clip4):
    pt = save_reference(clip4, tmp_path / "clip.pt", CFG_4x32)
    with pytest.raises(LiftError, match=r"--vision-heads 2 contradicts .*clip\.json \(4 vision heads\)"):
        lift.load(pt, vision_heads=2)
    wrong = {**CFG_4x32, "vision_cfg": {**CFG_4x32["vision_cfg"], "layers": 12}}
    (tmp_path / "clip.json").write_text(json.dumps(wrong))
    with pytest.raises(
        LiftError, match=r"clip\.json: vision_cfg\.layers is 12 but clip\.pt's weights have 2"
    ):
        lift.load(pt)
    (tmp_path / "clip.json").write_text(json.dumps({**CFG_4x32, "quick_gelu": True}))
    with pytest.raises(LiftError, match=r"clip\.json: quick_gelu=True is not supported"):
        lift.load(pt)
    scaled = {**CFG_4x32, "vision_cfg": {**CFG_4x32["vision_cfg"], "ls_init_value": 0.1}}
    (tmp_path / "clip.json").write_text(json.dumps(scaled))
    with pytest.raises(LiftError, match=r"vision_cfg\.ls_init_value=0\.1 is not supported"):
        lift.load(pt)
    params = tmp_path / "run" / "params.txt"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    params.write_text("model: no-such-model\n")
    with pytest.raises(LiftError, match=r"params\.txt \(model no-such-model\).*--model-config FILE"):
        lift.load(save_reference(clip4, tmp_path / "run" / "checkpoints" / "epoch_1.pt"))


def test_a_4_head_reference_lift(tmp_path):
    ref = reference_lift(vision=VISION_4x32)
    pt = save_reference(ref, tmp_path / "lift.pt")
    with pytest.raises(LiftError, match=r"--vision-heads N"):
        lift.load(pt)
    with pytest.raises(LiftError, match=r"--text-heads 4: .*lift\.pt is a LIFT model; it has no text tower"):
        lift.load(pt, vision_heads=4, text_heads=4)
    x = images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(lift.load(pt, vision_heads=4).encode_image(x), ref.encode_image(x), **TOL)
    lift_cfg = {"embed_dim": 64, "vision_cfg": {**CFG_4x32["vision_cfg"], "pool_type": "avg"}}
    with torch.no_grad():
        loaded = lift.load(pt, model_config=lift_cfg)
        torch.testing.assert_close(loaded.encode_image(x), ref.encode_image(x), **TOL)
    with pytest.raises(LiftError, match=r"--vision-pool tok contradicts model_config= \(pool_type 'avg'\)"):
        lift.load(pt, model_config=lift_cfg, vision_pool="tok")


def test_reference_flags_on_a_checkpoint_folder_are_refused(tmp_path):
    run = our_checkpoint(tmp_path / "run", ModelConfig(method="clip", embed_dim=32))
    with pytest.raises(
        LiftError, match=r"vision_heads= \(--vision-heads\) applies to reference \.pt files only"
    ):
        lift.load(run, vision_heads=4)


def test_export_cli_refuses_then_honours_the_head_flags(tmp_path, capsys, clip4):
    pt = save_reference(clip4, tmp_path / "clip.pt")
    out = tmp_path / "oc"
    args = ["export", str(pt), "--format", "open_clip", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--vision-heads N" in err and not out.exists()
    assert main([*args, "--vision-heads", "4", "--text-heads", "4"]) == 0
    exported = open_clip.create_model_and_transforms(f"local-dir:{out}")[0].eval()
    x = images(2, 32, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(exported.encode_image(x), clip4.encode_image(x), **TOL)
    cfg = tmp_path / "model.json"
    cfg.write_text(json.dumps(CFG_4x32))
    out2 = tmp_path / "oc2"
    assert (
        main(["export", str(pt), "--format", "open_clip", "--out", str(out2), "--model-config", str(cfg)])
        == 0
    )
    assert (
        json.loads((out2 / "open_clip_config.json").read_text())["model_cfg"]["vision_cfg"]["head_width"]
        == 32
    )


@pytest.mark.parametrize("method", ["lift", "clip"])
def test_a_config_whose_embed_dim_disagrees_with_its_weights(tmp_path, capsys, method):
    run = our_checkpoint(tmp_path / "run", ModelConfig(method=method, embed_dim=32))
    config_file = next(run.rglob("config.json"))
    meta = json.loads(config_file.read_text())
    meta["model"]["embed_dim"] = 64
    config_file.write_text(json.dumps(meta))
    key = "head.2.weight" if method == "lift" else "text_projection"
    with pytest.raises(
        LiftError, match=rf"config\.json: model\.embed_dim is 64 but the weights' {key} .* gives 32"
    ):
        lift.load(run)
    code = main(["export", str(run), "--format", "hf-clip-vision", "--out", str(tmp_path / "hf")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{config_file}: model.embed_dim is 64" in err


def test_a_pickle_of_objects_is_refused_without_suggesting_to_unpickle(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "callback": print}, evil)
    code = main(["export", str(evil), "--format", "hf-clip-vision", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "holds pickled Python objects" in err and "weights-only checkpoints only" in err
    assert "weights_only" not in err.replace("weights-only", "")
