"""`lift eval` end to end on a real (random-weight) CLIP checkpoint loaded by `lift.load`, and `compare`."""

import json

import torch

from eval_standin import StandIn, solid
from lift.checkpoint import save_checkpoint
from lift.cli import main
from lift.config import config_to_dict
from lift.evaluate import EvalContext, run_evaluator
from lift.evaluate.results import SUGARCREPE_SUBSETS, write_result
from lift.models import ModelConfig, create_model


def _sugarcrepe(tmp_path):
    for c in ("red", "green", "blue"):
        solid(tmp_path / "img" / f"{c}.png", c, size=64)
    rows = [
        ("red.png", "a red thing", "a blue thing"),
        ("green.png", "green", "red"),
        ("blue.png", "blue", "green"),
    ]
    for s in SUGARCREPE_SUBSETS:
        data = {
            str(i): {"filename": f, "caption": p, "negative_caption": n} for i, (f, p, n) in enumerate(rows)
        }
        (tmp_path / "ann" / f"{s}.json").parent.mkdir(exist_ok=True)
        (tmp_path / "ann" / f"{s}.json").write_text(json.dumps(data))
    return tmp_path / "ann", tmp_path / "img"


def _clip_run(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(method="clip", model="vit-tiny", embed_dim=32)
    model = create_model(cfg)
    save_checkpoint(tmp_path / "run", 1, model.state_dict(), {"model": config_to_dict(cfg)})
    return tmp_path / "run"


def _eval(capsys, *argv):
    assert main(["eval", *argv]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return out, json.loads(out[-1])


def test_sugarcrepe_command_on_a_clip_checkpoint(tmp_path, capsys):
    ann, img = _sugarcrepe(tmp_path)
    run = _clip_run(tmp_path)
    argv = ["sugarcrepe", "--checkpoint", str(run), "--annotations", str(ann), "--images", str(img), "--json",
            "--workers", "0", "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    lines, first = _eval(capsys, *argv, "--out", str(tmp_path / "a.json"))
    assert first["task"] == "sugarcrepe" and first["checkpoint"] == str(run)
    assert set(first["metrics"]) == {*SUGARCREPE_SUBSETS, "mean"}
    assert all(first["counts"][s] == {"n": 3, "skipped": 0} for s in SUGARCREPE_SUBSETS)
    assert any(line.startswith("| clip run |") for line in lines)  # the markdown table for people
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["metrics"] == first["metrics"] and saved["notes"]["text_embedding"]["encoded"] == 5
    # Second run: every caption from the cache (keyed by the CLIP weights), same numbers.
    _, second = _eval(capsys, *argv, "--out", str(tmp_path / "b.json"))
    assert second["metrics"] == first["metrics"]
    stats = json.loads((tmp_path / "b.json").read_text())["notes"]["text_embedding"]
    assert stats["encoded"] == 0 and stats["cache_hits"] == 5


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    ann, img = _sugarcrepe(tmp_path)
    code = main(["eval", "sugarcrepe", "--checkpoint", str(tmp_path / "nope"), "--annotations", str(ann),
                 "--images", str(img), "--no-cache"])  # fmt: skip
    assert code == 2
    assert "nope: no such run or checkpoint folder" in capsys.readouterr().err


def test_compare_prints_both_runs_and_the_difference(tmp_path, capsys):
    ann, img = _sugarcrepe(tmp_path)
    cfg = {"annotations": str(ann), "images": str(img)}
    a = run_evaluator("sugarcrepe", StandIn(), cfg, ctx=EvalContext(progress=False))
    b = run_evaluator(
        "sugarcrepe", StandIn(), {**cfg, "subsets": ["add_obj"]}, ctx=EvalContext(progress=False)
    )
    b.metrics["add_obj"] = 50.0
    write_result(tmp_path / "a.json", a)
    write_result(tmp_path / "b.json", b)
    assert main(["eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "| AddO |" in out.replace("| model ", "")
    delta = next(line for line in out.splitlines() if line.startswith("| Δ |"))
    assert delta.split("|")[2].strip() == f"{50.0 - a.metrics['add_obj']:+.1f}"
    assert "different item counts" in out


def test_a_lift_checkpoint_whose_encoder_folder_is_gone(tmp_path, capsys):
    ann, img = _sugarcrepe(tmp_path)
    cfg = ModelConfig(method="lift", model="vit-tiny", embed_dim=384)
    gone = tmp_path / "encoders" / "all-MiniLM-L6-v2"
    meta = {
        "model": config_to_dict(cfg),
        "text_identity": {"name": gone.name},
        "text_encoder_path": str(gone),
    }
    save_checkpoint(tmp_path / "run", 1, create_model(cfg).state_dict(), meta)
    code = main(["eval", "sugarcrepe", "--checkpoint", str(tmp_path / "run"), "--annotations", str(ann),
                 "--images", str(img), "--no-cache", "--workers", "0", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"text encoder folder {gone} is missing" in err


def test_a_reference_lift_pt_is_evaluated_with_the_encoder_named_on_the_command_line(tmp_path, capsys):
    from interop_fixtures import reference_lift, save_reference
    from lift.text import TextEncoder

    ann, img = _sugarcrepe(tmp_path)
    encoder = TextEncoder.from_pretrained("default")
    pt = save_reference(reference_lift(hidden=encoder.dim, embed_dim=encoder.dim), tmp_path / "lift.pt")
    argv = ["sugarcrepe", "--checkpoint", str(pt), "--annotations", str(ann), "--images", str(img),
            "--no-cache", "--workers", "0", "--no-progress", "--json"]  # fmt: skip
    assert main(["eval", *argv]) == 2  # no head count, no encoder recorded in a reference .pt, none named
    err = capsys.readouterr().err
    assert "--vision-heads N" in err  # a 128-wide ViT: its head count is in no shape
    argv += ["--vision-heads", "2"]
    assert main(["eval", *argv]) == 2
    assert "--text-encoder FOLDER (lift eval) or text_encoder= (lift.load)" in capsys.readouterr().err
    _, result = _eval(capsys, *argv, "--text-encoder", str(encoder.path), "--max-tokens", "77")
    assert result["text_encoder"] == encoder.identity
    assert result["counts"]["add_obj"] == {"n": 3, "skipped": 0}
