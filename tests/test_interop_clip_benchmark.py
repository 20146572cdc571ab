"""clip_benchmark evaluates lift models through our loader, and agrees with lift's own zero-shot evaluator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clip_benchmark.metrics.zeroshot_classification import zero_shot_classifier
from PIL import Image

from interop_fixtures import images, our_checkpoint
from lift.evaluate import EvalContext, run_evaluator
from lift.interop import clip_benchmark as cb
from lift.models import ModelConfig
from lift.text import TextEncoder

CLASSES = ["red circle", "blue square", "green triangle", "yellow star", "black cross", "white ring"]
TEMPLATES = ["a photo of a {c}.", "a drawing of a {c}."]


@pytest.fixture(scope="module")
def lift_run(tmp_path_factory):
    """A random vit-tiny LIFT model paired with the packaged MiniLM (as `lift train` records it)."""
    encoder = TextEncoder.from_pretrained("default", device="cpu")
    config = ModelConfig(method="lift", model="vit-tiny", embed_dim=encoder.dim)
    root = tmp_path_factory.mktemp("run")
    return our_checkpoint(root, config, text_identity=encoder.identity, text_encoder_path=str(encoder.path))


def _dataset(root):
    """imagenet1k-unverified's layout (ROOT/val/CLASS/*.png) with our own class names and prompts."""
    rng = np.random.default_rng(0)
    for i, _ in enumerate(CLASSES):
        folder = root / "val" / f"c{i}"
        folder.mkdir(parents=True)
        for j in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{j}.png")
    (root / "classnames.json").write_text(json.dumps({"imagenet1k-unverified": CLASSES}))
    (root / "templates.json").write_text(json.dumps({"imagenet1k-unverified": TEMPLATES}))
    (root / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def test_clip_benchmark_eval_equals_our_zero_shot(lift_run, tmp_path):
    data = _dataset(tmp_path / "data")
    out = tmp_path / "result.json"
    cb.main(["eval", "--model_type", "lift", "--model", "lift", "--pretrained", str(lift_run),
             "--dataset", "imagenet1k-unverified", "--dataset_root", str(data), "--task", "zeroshot_classification",
             "--custom_classname_file", str(data / "classnames.json"),
             "--custom_template_file", str(data / "templates.json"),
             "--output", str(out), "--num_workers", "0", "--batch_size", "5", "--no_amp", "--quiet"])  # fmt: skip
    metrics = json.loads(out.read_text())["metrics"]
    assert set(metrics) == {"acc1", "acc5", "mean_per_class_recall"}

    model, _, _ = cb.load_lift(model_name="lift", pretrained=str(lift_run), device="cpu")
    ctx = EvalContext(progress=False)
    ours = run_evaluator("zeroshot", model, {"images": str(data / "val"), "classnames": str(data / "classnames.txt"),
                                             "templates": TEMPLATES}, ctx=ctx)  # fmt: skip
    assert ours.counts["images"]["n"] == 12
    assert metrics["acc1"] * 100 == pytest.approx(ours.metrics["top1"])
    assert metrics["acc5"] * 100 == pytest.approx(ours.metrics["top5"])
    assert metrics["mean_per_class_recall"] * 100 == pytest.approx(ours.metrics["mean_recall"])


def test_loader_contract_and_zero_shot_classifier(lift_run):
    model, transform, tokenizer = cb.load_lift(model_name="lift", pretrained=str(lift_run), device="cpu")
    texts = ["a red circle", "two blue squares"]
    batch = tokenizer(texts).to("cpu")
    torch.testing.assert_close(model.encode_text(batch), model.encode_text(texts))
    assert model.encode_image(images(2, model.model.image_size)).shape == (2, 384)
    assert transform is model.preprocess
    theirs = zero_shot_classifier(model, tokenizer, CLASSES, TEMPLATES, "cpu", amp=False)  # [D, C]
    torch.testing.assert_close(model.zero_shot_classifier(CLASSES, TEMPLATES), theirs, atol=1e-5, rtol=0)


def test_register_makes_the_model_type_known():
    from clip_benchmark import models

    cb.register()
    assert "lift" in models.MODEL_TYPES and models.TYPE2FUNC["lift"] is cb.load_lift
    cb.register(trust_remote_code=True)
    assert models.TYPE2FUNC["lift"].keywords == {"trust_remote_code": True}
    cb.register()
