"""Registries (issue 16): vision towers, poolings, evaluators and export formats are `lift.registry`
registries; every entry works, a plugin entry appears in the CLI's choices and help, and an unknown
name is the registry's one-line error."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import open_clip
import pytest
import torch

from eval_standin import StandIn, solid
from lift.checkpoint import save_checkpoint
from lift.cli import main
from lift.config import config_to_dict
from lift.errors import LiftError
from lift.evaluate import EVALUATORS, EvalContext, register, run_evaluator
from lift.evaluate.context import make_result
from lift.interop.export import FORMATS, ExportReport, export_model, register_format
from lift.models import MODEL_REGISTRY, ModelConfig, create_model, get_spec, list_models, register_model
from lift.models.towers import TOWERS, TowerSpec, build_vision_trunk, text_cfg, vision_cfg
from lift.registry import Registry
from lift.text.pooling import POOLING_CHOICES, POOLING_REGISTRY, POOLINGS, register_pooling, resolve_pooling


@pytest.fixture
def scratch(monkeypatch):
    """Registers into a registry for one test only: its entries are restored afterwards."""

    def use(registry: Registry) -> Registry:
        registry.items()  # import lazy built-ins now, so they are not lost with the restore
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        return registry

    return use


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


# --- vision towers -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOWERS.names())
def test_every_registered_tower_builds_and_trains(name: str) -> None:
    # vit-b16 runs on the meta device: shapes and autograd are checked without the CPU cost.
    device = "meta" if name == "vit-b16" else "cpu"
    cfg = ModelConfig(model=name, text_context_length=8)
    torch.manual_seed(0)
    with torch.device(device):
        vision = build_vision_trunk(vision_cfg(cfg))
        text = open_clip.model._build_text_tower(16, text_cfg(cfg))
        size = vision_cfg(cfg).image_size
        images = torch.randn(2, 3, size, size)
        tokens = torch.randint(0, text_cfg(cfg).vocab_size, (2, 8))
        img, txt = vision(images), text(tokens)
    assert img.shape == (2, vision_cfg(cfg).width) and txt.shape == (2, 16)
    (img.sum() + txt.sum()).backward()
    towers = [*vision.named_parameters(), *text.named_parameters()]
    assert not [n for n, p in towers if p.grad is None]
    if device == "cpu":
        assert all(torch.isfinite(p.grad).all() for _, p in towers)


def test_towers_have_help_and_the_old_names_are_the_registry() -> None:
    assert MODEL_REGISTRY is TOWERS and list_models() == TOWERS.names() == [
        "vit-b16",
        "vit-small",
        "vit-tiny",
    ]
    assert all(TOWERS.help(name) for name in TOWERS.names())
    assert get_spec("vit-tiny").description == TOWERS.help("vit-tiny")


def test_an_unknown_tower_is_the_registry_error() -> None:
    msg = "--model must be one of vit-b16, vit-small, vit-tiny, got 'vit-huge'"
    with pytest.raises(LiftError, match=msg):
        get_spec("vit-huge")
    with pytest.raises(LiftError, match=msg):
        create_model(ModelConfig(model="vit-huge"))


def test_a_plugin_tower_is_built_by_name(scratch) -> None:
    scratch(TOWERS)

    @register_model("vit-micro", help="2-layer 64-wide ViT at 32 px")
    def _micro() -> TowerSpec:
        return TowerSpec(
            open_clip.model.CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=8, image_size=32),
            open_clip.model.CLIPTextCfg(layers=1, width=64, heads=2),
        )

    assert (
        "vit-micro" in list_models() and get_spec("vit-micro").description == "2-layer 64-wide ViT at 32 px"
    )
    model = create_model(ModelConfig(model="vit-micro", embed_dim=16))
    assert model.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 16)


# --- poolings ------------------------------------------------------------------------------------


def test_poolings_are_a_registry_with_help_and_a_function_view() -> None:
    assert POOLING_REGISTRY.names() == ["auto", "cls", "last", "mean", "model"]
    assert all(POOLING_REGISTRY.help(name) for name in POOLING_REGISTRY.names())
    assert list(POOLING_CHOICES) == POOLING_REGISTRY.names()  # `lift embed --pooling` choices
    # POOLINGS: the functions by name; `auto` is resolved before encoding, so it has none
    assert sorted(POOLINGS) == ["cls", "last", "mean", "model"] and "auto" not in POOLINGS
    assert POOLINGS["model"] is None and POOLINGS["mean"] is POOLING_REGISTRY.get("mean")


def test_an_unknown_pooling_is_the_registry_error(tmp_path) -> None:
    with pytest.raises(
        LiftError, match=r"^--pooling must be one of auto, cls, last, mean, model, got 'max'$"
    ):
        resolve_pooling("max", tmp_path, object())


def test_a_plugin_pooling_is_a_choice_of_the_cli(scratch, capsys) -> None:
    scratch(POOLING_REGISTRY)

    @register_pooling("max")
    def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum over the non-padding tokens."""
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(1)

    assert POOLING_REGISTRY.help("max") == "Element-wise maximum over the non-padding tokens."
    assert POOLINGS["max"] is max_pool and "max" in POOLING_CHOICES
    assert resolve_pooling("max", Path("."), object()) == "max"
    assert "--pooling {auto,cls,last,max,mean,model}" in _help(capsys, "eval", "zeroshot")


def test_eval_refuses_an_unknown_pooling_before_any_work(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "zeroshot", "--checkpoint", "x.pt", "--images", "x", "--pooling", "last-token"])
    assert exit_.value.code == 2
    assert "--pooling: invalid choice: 'last-token'" in capsys.readouterr().err


# --- evaluators ----------------------------------------------------------------------------------


def test_eval_tasks_and_their_help_come_from_the_registry(capsys) -> None:
    text = " ".join(_help(capsys, "eval").split())  # argparse wraps the lines
    for name in EVALUATORS.names():
        assert EVALUATORS.help(name) and f"{name} {EVALUATORS.help(name)}" in text
        assert EVALUATORS.help(name) in " ".join(_help(capsys, "eval", name).split())


def test_an_unknown_evaluator_is_the_registry_error() -> None:
    known = ", ".join(EVALUATORS.names())
    assert {"retrieval", "sugarcrepe", "zeroshot", "sugarcrepe-pp", "long-retrieval"} <= set(EVALUATORS)
    with pytest.raises(LiftError) as e:
        run_evaluator("nope", StandIn(), {})
    assert str(e.value) == f"unknown evaluator 'nope'; known: {known}"


@dataclasses.dataclass
class _ColourConfig:
    images: str = ""
    colour: str = "red"


def test_a_plugin_evaluator_is_a_lift_eval_task(scratch, monkeypatch, capsys, tmp_path) -> None:
    scratch(EVALUATORS)

    @register("colour", _ColourConfig, help="share of images closest to a colour word")
    def colour(model, cfg: _ColourConfig, ctx: EvalContext):
        started = time.perf_counter()
        paths = sorted(Path(cfg.images).glob("*.png"))
        img, _ = ctx.images(model, paths, "colour images")
        text = ctx.texts(model, [cfg.colour, "green", "blue"])
        share = 100.0 * float(((img @ text.T).argmax(1) == 0).double().mean())
        return make_result(
            "colour",
            model,
            cfg,
            ctx,
            metrics={"share": share},
            counts={"images": {"n": len(paths)}},
            started=started,
        )

    assert "colour share of images closest to a colour word" in " ".join(_help(capsys, "eval").split())
    text = _help(capsys, "eval", "colour")  # its config's fields are its flags
    assert "--images IMAGES" in text and "--colour COLOUR" in text and "(default: red)" in text
    for i, c in enumerate(("red", "red", "blue", "green")):
        solid(tmp_path / "img" / f"{i}.png", c)
    monkeypatch.setattr("lift.load", lambda *a, **k: StandIn())
    argv = ["eval", "colour", "--checkpoint", "standin", "--no-cache", "--workers", "0", "--device", "cpu",
            "--no-progress", "--json", "--images", str(tmp_path / "img"), "--colour", "red"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "| standin standin | 50.0 |" in out and json.loads(out[-1])["metrics"] == {"share": 50.0}
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--size", "3"])
    assert exit_.value.code == 2 and "unrecognized arguments: --size 3" in capsys.readouterr().err


# --- export formats ------------------------------------------------------------------------------


def _clip_run(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(method="clip", model="vit-tiny", embed_dim=16)
    save_checkpoint(tmp_path / "run", 1, create_model(cfg).state_dict(), {"model": config_to_dict(cfg)})
    return tmp_path / "run"


def test_export_help_lists_every_format_from_the_registry(capsys) -> None:
    text = _help(capsys, "export")
    assert "formats (--format):" in text
    for name in FORMATS.names():
        assert f"  {name}: {FORMATS.help(name)}" in text


def test_an_unknown_export_format_is_the_registry_error(tmp_path) -> None:
    with pytest.raises(LiftError, match=r"^--format must be one of hf-clip-vision, open_clip, got 'onnx'$"):
        export_model(tmp_path, fmt="onnx", out=tmp_path / "x")


def test_a_plugin_export_format_is_a_choice_of_lift_export(scratch, capsys, tmp_path) -> None:
    scratch(FORMATS)

    @register_format("widths", "the tower's width as a text file (a test format)")
    def widths(model, folder: Path, *, out: Path) -> ExportReport:
        (folder / "width.txt").write_text(str(model.model.visual.transformer.width))
        return ExportReport("widths", out, ["width.txt"], "the tower's width", "open(width.txt)")

    assert "  widths: the tower's width as a text file (a test format)" in _help(capsys, "export")
    out = tmp_path / "exported"
    assert main(["export", str(_clip_run(tmp_path)), "--format", "widths", "--out", str(out)]) == 0
    assert (
        out / "width.txt"
    ).read_text() == "128" and "exported the tower's width" in capsys.readouterr().out
