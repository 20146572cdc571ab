"""`python -m lift.demo.variants`: every variant trains and is measured, on a tiny profile."""

import json

import pytest

from lift import checkpoint as ckpt
from lift.demo import pipeline
from lift.demo.variants import VARIANTS, VariantsConfig, main, run_variants
from lift.errors import LiftError

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_profile(monkeypatch):
    profile = pipeline.DemoProfile(train_size=48, test_size=6, batch_size=16, epochs=1.0)
    monkeypatch.setitem(pipeline.PROFILES, "tiny", profile)
    return "tiny"


def test_every_lift_variant_trains_and_is_measured(tmp_path, tiny_profile):
    names = [v.name for v in VARIANTS if v.method == "lift"]
    summary = run_variants(VariantsConfig(out=str(tmp_path), profile=tiny_profile, seeds=[3], variants=names,
                                          device="cpu"))  # fmt: skip
    assert list(summary["variants"]) == names
    for name, v in summary["variants"].items():
        assert set(v["mean"]) == {"sugarcrepe", "zeroshot", "retrieval"}
        assert all(0 <= x <= 100 for x in v["mean"].values()), name
    runs = tmp_path / "seed-3" / "runs"
    config = {n: ckpt.load_config(ckpt.resolve_checkpoint(runs / n)) for n in names}
    assert config["lift-all"]["train"]["captions"] == "all"
    assert config["lift-all"]["store_views"] == ["org_caption", "re_caption"]
    assert config["lift-short-mlp"]["model"]["text_adapter"] == "mlp"
    assert config["lift-B"]["text_identity"]["pooling"] == "cls"
    assert config["lift-B-2x"]["step"] == 2 * config["lift-B"]["step"]
    assert config["lift-B-from-A"]["init_from"]["checkpoint"].endswith("lift-short/checkpoints/step-000003")
    table = (tmp_path / "variants.md").read_text()
    assert "| lift-B-from-A |" in table
    assert (
        "| lift-short | LIFT as in the paper, short captions |" in table
    )  # not the transforms set's wording
    assert json.loads((tmp_path / "variants.json").read_text())["config"]["seeds"] == [3]


def test_the_demos_own_seed_and_unknown_variants_are_refused(tmp_path, capsys):
    with pytest.raises(LiftError, match="seed 0"):
        run_variants(VariantsConfig(out=str(tmp_path), seeds=[0]))
    with pytest.raises(LiftError, match="unknown variant"):
        run_variants(VariantsConfig(out=str(tmp_path), seeds=[1], variants=["lift-huge"]))
    assert main(["--out", str(tmp_path), "--seeds", "0"]) == 2 and "seed 0" in capsys.readouterr().err


def test_the_transforms_set_trains_on_cut_down_stores_and_probes_them(tmp_path, monkeypatch):
    profile = pipeline.DemoProfile(train_size=64, test_size=6, batch_size=16, epochs=1.0)
    monkeypatch.setitem(pipeline.PROFILES, "tiny64", profile)
    names = ["lift-short", "lift-short-int8", "lift-short-pca48", "lift-short-trunc48", "lift-short-center"]
    summary = run_variants(VariantsConfig(out=str(tmp_path), profile="tiny64", seeds=[3], variants=names,
                                          set="transforms", device="cpu"))  # fmt: skip
    rows = summary["variants"]
    assert rows["lift-short"]["mean"]["bytes_per_row"] > rows["lift-short-pca48"]["mean"]["bytes_per_row"]
    assert rows["lift-short-int8"]["mean"]["bytes_per_row"] < rows["lift-short"]["mean"]["bytes_per_row"]
    assert all(0 <= v["mean"]["probe_close_pct"] <= 100 for v in rows.values())
    config = ckpt.load_config(ckpt.resolve_checkpoint(tmp_path / "seed-3" / "runs" / "lift-short-pca48"))
    assert config["store_dim"] == 48 and config["text_transform"]["chain"] == ["pca 48"]
    assert "bytes per row" in (tmp_path / "transforms.md").read_text()
