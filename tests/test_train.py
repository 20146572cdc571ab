"""The training stage end to end on tiny data: learning, kill -9 + resume, DDP equivalence, bad input, load."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import lift
from lift import checkpoint as ckpt
from lift.errors import LiftError
from lift.train import TrainConfig, train
from lift.train_config import train_config_from_dict
from train_fixtures import IDENTITY, corrupt_embedding, write_shards, write_store

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    keys = write_shards(root / "train", shards=2, per_shard=8)
    write_store(root / "store", keys)
    return root, keys


def _cfg(world, out, **kw) -> TrainConfig:
    root, _ = world
    base = {"train_data": str(root / "train"), "store": str(root / "store"), "out": str(out), "batch_size": 8,
            "samples": 32, "log_every": 1, "save_every": 2, "seed": 1}  # fmt: skip
    return train_config_from_dict({**base, **kw})


def _weights(run) -> dict[str, torch.Tensor]:
    return ckpt.load_weights(ckpt.resolve_checkpoint(run))


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "lift", "train", *args]


def _cfg_args(cfg: TrainConfig) -> list[str]:
    out = []
    given = {
        k: v
        for k, v in vars(cfg).items()
        if k != "options" and v != TrainConfig.__dataclass_fields__[k].default
    }
    for k, v in {**given, **cfg.options}.items():  # a method's options are flags too
        if v is not None and v is not False:
            out += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return out


def test_lift_overfits_a_fixed_batch(world, tmp_path):
    root, keys = world
    train(_cfg(world, tmp_path / "run", train_data=str(root / "train" / "00000.tar"), samples=8 * 25,
               weight_decay=0.0, warmup=2))  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 26))
    losses = [r["loss"] for r in rows]
    # well below chance (ln 8 for an 8-way InfoNCE) and far below where it started
    assert losses[-1] < 0.6 * math.log(8) and losses[-1] < 0.5 * losses[0], losses
    saved = json.loads((ckpt.resolve_checkpoint(tmp_path / "run") / "config.json").read_text())
    assert (
        saved["store_dim"] == 16 and saved["text_identity"] == IDENTITY and saved["model"]["embed_dim"] == 16
    )


@pytest.mark.slow
def test_kill9_then_resume_equals_an_uninterrupted_run(world, tmp_path):
    clean = _cfg(world, tmp_path / "clean", samples=8 * 24)
    train(clean)
    killed = _cfg(world, tmp_path / "killed", samples=8 * 24, resume="latest")
    proc = subprocess.Popen(_cli(_cfg_args(killed)), env=ENV, stderr=subprocess.DEVNULL)
    pointer = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.latest_checkpoint(tmp_path / "killed").name != "step-000024", "run finished before the kill"
    train(killed)  # the same command again
    a, b = _weights(tmp_path / "clean"), _weights(tmp_path / "killed")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    rows = [
        json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows == list(range(1, 25))  # no step logged twice, none lost


@pytest.mark.slow
def test_two_processes_give_the_weights_of_one(world, tmp_path):
    one = _cfg(world, tmp_path / "one", samples=8 * 3, save_every=100)
    train(one)
    two = _cfg(world, tmp_path / "two", samples=8 * 3, save_every=100, accum_steps=2)  # exact too
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lift",
           "train", *_cfg_args(two)]  # fmt: skip
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_resume_refuses_a_changed_config(world, tmp_path):
    train(_cfg(world, tmp_path / "run", samples=16))
    with pytest.raises(LiftError, match=r"config differs \(lr: 0.001 != 0.01; seed: 1 != 2\)"):
        train(_cfg(world, tmp_path / "run", samples=16, lr=0.01, seed=2, resume="latest"))
    train(_cfg(world, tmp_path / "run", samples=16, workers=1, resume="latest"))  # harmless keys may change


def test_bad_inputs_stop_with_the_key_or_skip_and_count(world, tmp_path):
    root, keys = world
    write_store(tmp_path / "partial", keys[1:])
    with pytest.raises(LiftError, match=f"sample '{keys[0]}' has no embedding"):
        train(_cfg(world, tmp_path / "a", store=str(tmp_path / "partial")))
    summary = train(_cfg(world, tmp_path / "b", store=str(tmp_path / "partial"), on_error="skip"))
    assert summary["skipped"] == 1

    write_store(tmp_path / "extra", [*keys, "orphan"])
    with pytest.raises(LiftError, match="'orphan' has an embedding but no image"):
        train(_cfg(world, tmp_path / "c", store=str(tmp_path / "extra")))

    write_store(tmp_path / "nan", keys)
    corrupt_embedding(tmp_path / "nan", keys[5])
    with pytest.raises(LiftError, match=f"{keys[5]}.*NaN or inf"):
        train(_cfg(world, tmp_path / "d", store=str(tmp_path / "nan"), samples=16 * 8))
    summary = train(_cfg(world, tmp_path / "e", store=str(tmp_path / "nan"), samples=16, on_error="skip"))
    assert summary["skipped"] == 1 and summary["skipped_per_epoch"] == {0: 1}

    with pytest.raises(LiftError, match="has dim 16 but --embed-dim.*32"):
        train(_cfg(world, tmp_path / "f", embed_dim=32))


def test_corrupt_image_is_named(world, tmp_path):
    import webdataset as wds

    from train_fixtures import png_bytes

    root, keys = world
    rng = np.random.default_rng(0)
    with wds.TarWriter(str(tmp_path / "00000.tar")) as w:
        for i, key in enumerate(keys[:8]):
            w.write({"__key__": key, "png": b"broken" if i == 3 else png_bytes(rng)})
    data = str(tmp_path / "00000.tar")
    with pytest.raises(LiftError, match=f"sample '{keys[3]}'.*corrupt image"):
        train(_cfg(world, tmp_path / "a", train_data=data, samples=8))


def test_non_finite_loss_names_step_and_keys(world, tmp_path):
    with pytest.raises(LiftError, match=r"non-finite loss .* at step \d+; batch keys: \d+"):
        train(_cfg(world, tmp_path / "run", lr=1e30, warmup=1, samples=8 * 6))


def test_clip_from_the_command_line_then_load(world, tmp_path):
    from lift.cli import main

    root, _ = world
    out = tmp_path / "clip"
    rc = main(["train", "--method", "clip", "--train-data", str(root / "train"), "--captions", "long",
               "--out", str(out), "--batch-size", "8", "--samples", "16", "--accum-steps", "2", "--workers", "2"])  # fmt: skip
    assert rc == 0
    model = lift.load(out)
    assert not model.training and model.config["train"]["captions"] == "long"
    text = model.encode_text(["a long caption", "another"])
    assert text.shape == (2, 512) and torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
    weights = _weights(out)
    assert set(model.state_dict()) == set(weights)
    assert all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)
    from PIL import Image

    image = torch.stack([model.preprocess(Image.new("RGB", (80, 70), c)) for c in ("red", "blue")])
    raw = model.encode_image(image, normalize=False)
    assert torch.allclose(model.encode_image(image), torch.nn.functional.normalize(raw, dim=-1), atol=1e-6)


def test_lift_load_encodes_images_like_the_trained_model(world, tmp_path):
    from lift.models import ModelConfig, create_model

    train(_cfg(world, tmp_path / "run", samples=8))
    model = lift.load(tmp_path / "run" / "checkpoints" / "step-000001")
    ref = create_model(ModelConfig(**model.config["model"]))
    ref.load_state_dict(_weights(tmp_path / "run"))
    images = torch.randn(3, 3, 64, 64)
    assert torch.allclose(model.encode_image(images), ref.eval().encode_image(images), atol=1e-6)
    assert model.text_identity == IDENTITY
    by_file = lift.load(tmp_path / "run" / "checkpoints" / "step-000001" / "model.safetensors")
    assert torch.equal(by_file.encode_image(images), model.encode_image(images))


def test_bench_reports_both_methods():
    import argparse

    from lift.bench import train as bench

    args = argparse.Namespace(
        model="vit-tiny", batch_size=4, tokens=77, embed_dim=16, steps=1, rounds=1, seed=0
    )
    out = bench.run(args)
    assert out["lift_img_per_s"] > 0 and out["clip_img_per_s"] > 0
    assert out["speedup"] == pytest.approx(out["lift_img_per_s"] / out["clip_img_per_s"], rel=1e-2)


def test_lift_with_the_default_encoder_end_to_end(world, tmp_path):
    """A store embedded by the packaged MiniLM: training records it, `lift.load` encodes text through it,
    and a store from another encoder than --text-encoder is refused."""
    from lift.store import StoreWriter
    from lift.text import TextEncoder
    from lift.text.default import default_encoder_path

    root, keys = world
    enc = TextEncoder.from_pretrained("default")
    w = StoreWriter(tmp_path / "store", identity=enc.identity, dim=enc.dim, dtype="float16", shard_names=["all"],
                    extra={"text_encoder_path": str(default_encoder_path())})  # fmt: skip
    w.write_shard(0, keys, enc.encode([f"short caption {k}" for k in keys]).numpy())
    w.finalize()
    train(_cfg(world, tmp_path / "run", store=str(tmp_path / "store"), text_encoder="default", samples=8))
    model = lift.load(tmp_path / "run")
    texts = ["a red circle", "two blue squares"]
    assert torch.allclose(
        model.encode_text(texts), torch.nn.functional.normalize(enc.encode(texts)), atol=1e-5
    )
    assert model.text_identity == enc.identity and model.encode_text(texts).shape == (2, enc.dim)

    with pytest.raises(LiftError, match="text encoder mismatch.*name"):
        train(_cfg(world, tmp_path / "other", text_encoder="default", samples=8))  # the world store: IDENTITY


@pytest.mark.parametrize("loss", ["siglip", "cosine"])
def test_other_losses_and_grad_checkpointing_train(world, tmp_path, loss):
    summary = train(
        _cfg(world, tmp_path / "run", loss=loss, grad_checkpointing=True, samples=16, save_every=1)
    )
    first, last = (ckpt.load_weights(tmp_path / "run" / "checkpoints" / f"step-00000{i}") for i in (1, 2))
    assert summary["steps"] == 2 and ("logit_bias" in last) == (loss == "siglip")
    assert any(not torch.equal(first[k], last[k]) for k in last)
    saved = ckpt.load_config(ckpt.resolve_checkpoint(tmp_path / "run"))
    assert saved["model"]["loss"] == loss and saved["model"]["grad_checkpointing"] is True


def test_accumulation_gives_the_full_batch_gradient(world, tmp_path):
    train(_cfg(world, tmp_path / "full", samples=16, save_every=100))
    train(_cfg(world, tmp_path / "accum", samples=16, save_every=100, accum_steps=4))
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "accum")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
