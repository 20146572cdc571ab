"""`python -m lift.demo.tune`: the sweep that picks each demo run's settings, on a tiny profile."""

import json

import pytest

from lift.demo import pipeline
from lift.demo.tune import TuneConfig, main, tune
from lift.errors import LiftError

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_profile(monkeypatch):
    profile = pipeline.DemoProfile(train_size=48, test_size=6, batch_size=16, epochs=1.0)
    monkeypatch.setitem(pipeline.PROFILES, "tiny", profile)
    return "tiny"


def test_sweep_scores_every_point_picks_the_best_and_reuses_finished_points(tmp_path, tiny_profile):
    cfg = TuneConfig(out=str(tmp_path), profile=tiny_profile, seeds=[3], lrs={"lift": [1e-3, 2e-3], "clip": [5e-4]},
                     temperatures=[0.07], regimes=["short"], device="cpu")  # fmt: skip
    summary = tune(cfg)
    assert set(summary) == {"lift-short", "clip-short"}
    lift = summary["lift-short"]
    assert [p["settings"]["lr"] for p in lift["points"]] == [1e-3, 2e-3]  # LIFT's own grid
    assert [p["settings"]["lr"] for p in summary["clip-short"]["points"]] == [5e-4]  # CLIP's own grid
    assert lift["best"] == max(lift["points"], key=lambda p: p["score"])["settings"]
    assert all(0 < p["score"] < 1 and set(p["per_seed"]) == {3} for p in lift["points"])
    saved = json.loads((tmp_path / "tuning.json").read_text())
    assert saved["runs"]["lift-short"]["best"] == lift["best"]
    assert "**(chosen)**" in (tmp_path / "tuning.md").read_text()

    ckpts = sorted(tmp_path.glob("seed-3/runs/*/checkpoints/step-*/model.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in ckpts]
    assert len(ckpts) == 3
    assert tune(cfg) == summary  # a rerun trains and evaluates nothing again
    assert [p.stat().st_mtime_ns for p in ckpts] == stamps


def test_the_demos_own_seed_is_refused(tmp_path, capsys):
    with pytest.raises(LiftError, match="seed 0"):
        tune(TuneConfig(out=str(tmp_path), seeds=[0, 1]))
    assert main(["--out", str(tmp_path), "--seeds", "0"]) == 2
    assert "seed 0" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "none"), "--seeds", "1", "--methods"]) == 2
    assert "nothing to tune" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_variants_join_the_sweep_on_their_methods_grid(tmp_path, tiny_profile):
    cfg = TuneConfig(out=str(tmp_path), profile=tiny_profile, seeds=[3], lrs={"lift": [1e-3, 2e-3], "clip": [5e-4]},
                     temperatures=[0.07], methods=[], regimes=["short"], variants=["lift-all"],
                     device="cpu")  # fmt: skip
    summary = tune(cfg)
    assert list(summary) == ["lift-all"]  # no paper run asked for: only the variant
    assert [p["settings"]["lr"] for p in summary["lift-all"]["points"]] == [1e-3, 2e-3]
    run = tmp_path / "seed-3" / "runs" / "lift-all-lr0.001-t0.07"
    assert json.loads((run / "config.json").read_text())["captions"] == "all"
    with pytest.raises(LiftError, match="lift-B-from-A starts from another run"):
        tune(TuneConfig(out=str(tmp_path), seeds=[3], variants=["lift-B-from-A"]))
