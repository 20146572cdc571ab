"""Evaluation during training: the suite's numbers at step N equal `lift eval suite` on the step-N
checkpoint, and a resumed run neither repeats nor loses an evaluation row."""

from __future__ import annotations

import json
import shutil

import pytest

from lift.data.synth import SynthConfig, generate_world
from lift.embed import embed_captions
from lift.errors import LiftError
from lift.evaluate.suite import evaluate_suite, load_suite
from lift.train import train
from lift.train_config import train_config_from_dict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalworld")
    generate_world(root / "world", SynthConfig(train_size=48, test_size=6, shard_size=48, image_size=32),
                   progress=False, splits=("train", "sugarcrepe", "retrieval"))  # fmt: skip
    embed_captions(sources=str(root / "world" / "train"), out=root / "store", fmt="parquet", key_field="key",
                   caption_field="org_caption", progress=False)  # fmt: skip
    suite = root / "suite.yaml"
    suite.write_text(
        "- task: sugarcrepe\n  annotations: world/sugarcrepe\n  images: world/sugarcrepe/images\n"
        "- task: retrieval\n  annotations: world/retrieval/captions.json\n  images: world/retrieval/images\n"
    )
    return root


def _train(world, out, **kw):
    cfg = {"train_data": str(world / "world" / "train"), "store": str(world / "store"), "out": str(out),
           "batch_size": 16, "samples": 64, "save_every": 2, "log_every": 1, "eval_suite": str(world / "suite.yaml"),
           "eval_every": 2, **kw}  # fmt: skip
    return train(train_config_from_dict(cfg))


def _eval_rows(run) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval" in r]


def test_logged_evaluations_equal_lift_eval_on_the_checkpoints(world, tmp_path):
    run = tmp_path / "run"
    _train(world, run)
    rows = _eval_rows(run)
    assert [r["step"] for r in rows] == [2, 4]
    assert {"sugarcrepe/mean", "retrieval/i2t_R@1"} <= set(rows[0]["eval"])
    for row in rows:
        again = evaluate_suite(
            run / "checkpoints" / f"step-{row['step']:06d}", load_suite(world / "suite.yaml")
        )
        assert row["eval"] == pytest.approx(again.flat_metrics(), abs=1e-9)


def test_a_resumed_run_neither_repeats_nor_loses_an_evaluation(world, tmp_path):
    run = tmp_path / "run"
    _train(world, run)
    before = _eval_rows(run)
    shutil.rmtree(run / "checkpoints" / "step-000004")  # killed after step 4's evaluation row
    _train(world, run, resume="latest")
    after = _eval_rows(run)
    assert [r["step"] for r in after] == [2, 4]
    assert after[0] == before[0] and after[1]["eval"] == pytest.approx(before[1]["eval"], abs=1e-9)


def test_eval_every_needs_a_suite_and_a_bad_suite_stops_before_training(world, tmp_path):
    with pytest.raises(LiftError, match="--eval-every needs --eval-suite"):
        _train(world, tmp_path / "a", eval_suite=None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- task: sugarcrepe\n  annotations: nowhere\n  images: nowhere\n")
    with pytest.raises(LiftError, match="nowhere"):
        _train(world, tmp_path / "b", eval_suite=str(bad))
    assert not (tmp_path / "b").exists()
