"""Methods as plugins: every registered method trains, resumes after kill -9 to identical weights and
loads; views (fixed / random / all), the text adapter, `--init-from`, options of another method, and
checkpoints written before methods were plugins."""

from __future__ import annotations

import json
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
from lift.cli import main
from lift.errors import LiftError
from lift.methods import METHODS
from lift.train import train
from lift.train_config import train_config_from_dict
from train_fixtures import IDENTITY, write_shards, write_store

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
VIEWS = ["org_caption", "re_caption"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    keys = write_shards(root / "train", shards=2, per_shard=8)
    write_store(root / "store", keys)
    write_store(root / "views", keys, views=VIEWS, seed=1)
    return root, keys


def _options(method: str, root) -> dict:
    """What each registered method needs besides the shared fields (a new method adds its line)."""
    return {"lift": {"store": str(root / "store")}, "clip": {"text_context_length": 16}}[method]


def _cfg(world, out, method: str = "lift", **kw):
    root, _ = world
    base = {"method": method, "train_data": str(root / "train"), "out": str(out), "batch_size": 8,
            "samples": 24, "log_every": 1, "save_every": 1, "seed": 2, **_options(method, root)}  # fmt: skip
    return train_config_from_dict({**base, **kw})


def _args(cfg) -> list[str]:
    flat = {**{k: v for k, v in vars(cfg).items() if k != "options"}, **cfg.options}
    out = []
    for k, v in flat.items():
        if v is not None and v is not False and k not in ("overwrite", "grad_checkpointing"):
            out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _weights(run) -> dict[str, torch.Tensor]:
    return ckpt.load_weights(ckpt.resolve_checkpoint(run))


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_resumes_after_kill9_and_loads(world, tmp_path, method):
    clean = _cfg(world, tmp_path / "clean", method)
    train(clean)
    killed = _cfg(world, tmp_path / "killed", method, resume="latest")
    proc = subprocess.Popen([sys.executable, "-m", "lift", "train", *_args(killed)], env=ENV,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    first = tmp_path / "killed" / "checkpoints" / "step-000001"
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "checkpoints" / "step-000003").exists(), "finished before the kill"
    train(killed)  # the same command again
    assert _same(_weights(tmp_path / "clean"), _weights(tmp_path / "killed"))
    model = lift.load(tmp_path / "killed")
    assert model.method == method and model.config["train"]["method"] == method
    images = torch.randn(2, 3, model.model.image_size, model.model.image_size)
    assert model.encode_image(images).shape[0] == 2
    if not METHODS.get(method).uses_text_encoder:  # frozen-encoder methods need their encoder folder
        assert model.encode_text(["a red circle"]).shape[0] == 1


def test_an_option_of_another_method_is_refused_naming_it(world, tmp_path, capsys):
    root, _ = world
    base = ["train", "--train-data", str(root / "train"), "--out", str(tmp_path / "run"), "--samples", "8",
            "--batch-size", "8"]  # fmt: skip
    assert main([*base, "--method", "clip", "--store", str(root / "store")]) == 2
    assert "--store is an option of --method lift, not of --method clip" in capsys.readouterr().err
    assert (
        main([*base, "--method", "lift", "--store", str(root / "store"), "--text-context-length", "8"]) == 2
    )
    assert (
        "--text-context-length is an option of --method clip, not of --method lift" in capsys.readouterr().err
    )
    assert main([*base, "--caption-field", "long", "--store", str(root / "store")]) == 2
    assert "in `lift train` choose the captions with --captions" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_views_fixed_random_and_all(world, tmp_path):
    from lift.methods.lift import StoreText
    from lift.store import open_store

    root, keys = world
    store = open_store(root / "views")
    sample = type("S", (), {"key": keys[3]})()
    both = store[keys[3]]  # [2, D]
    rng = np.random.default_rng(0)
    assert (StoreText(store, "fixed", [1])(sample, rng) == both[1]).all()
    assert (StoreText(store, "all", [0, 1])(sample, rng) == both).all()
    drawn = {int((StoreText(store, "random", [0, 1])(sample, np.random.default_rng(s)) == both[1]).all())
             for s in range(20)}  # fmt: skip
    assert drawn == {0, 1}
    summary = train(_cfg(world, tmp_path / "all", store=str(root / "views"), captions="all", samples=16))
    saved = ckpt.load_config(ckpt.resolve_checkpoint(tmp_path / "all"))
    assert summary["steps"] == 2 and saved["store_views"] == VIEWS and saved["train"]["captions"] == "all"
    with pytest.raises(LiftError, match="holds 2 views .*choose with --captions"):
        train(_cfg(world, tmp_path / "none", store=str(root / "views")))
    with pytest.raises(LiftError, match="--captions long: .* re_caption"):
        train(_cfg(world, tmp_path / "x", store=str(root / "store"), captions="long"))
    train(_cfg(world, tmp_path / "long", store=str(root / "views"), captions="long", samples=8))
    assert ckpt.load_config(ckpt.resolve_checkpoint(tmp_path / "long"))["store_views"] == ["re_caption"]


def test_clip_all_views_trains_on_every_caption(world, tmp_path):
    summary = train(_cfg(world, tmp_path / "clip", "clip", captions="all", samples=16))
    assert summary["steps"] == 2
    assert ckpt.load_config(ckpt.resolve_checkpoint(tmp_path / "clip"))["views"] == ["short", "long"]


@pytest.mark.slow
def test_two_processes_equal_one_with_random_views(world, tmp_path):
    root, _ = world
    one = _cfg(
        world, tmp_path / "one", store=str(root / "views"), captions="random", samples=24, save_every=100
    )
    train(one)
    two = _cfg(
        world, tmp_path / "two", store=str(root / "views"), captions="random", samples=24, save_every=100
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lift",
           "train", *_args(two)]  # fmt: skip
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


@pytest.mark.parametrize("adapter", ["linear", "mlp"])
def test_the_text_adapter_is_trained_saved_and_used_by_encode_text(world, tmp_path, adapter):
    import torch.nn.functional as F

    train(_cfg(world, tmp_path / "run", text_adapter=adapter, samples=24, lr=1e-2, weight_decay=0.0))
    weights = _weights(tmp_path / "run")
    assert any(k.startswith("text_adapter.") for k in weights)
    last = max(k for k in weights if k.startswith("text_adapter.") and k.endswith(".weight"))
    assert weights[last].abs().sum() > 0  # it starts at zero: training moved it
    model = lift.load(tmp_path / "run")
    vectors = F.normalize(torch.randn(3, 16), dim=-1)
    through = model.model.encode_text(vectors)
    assert not torch.allclose(through, vectors, atol=1e-4)  # the adapter is applied

    class Frozen:  # the run's frozen encoder, as encode_text would open it
        def encode(self, texts):
            return vectors[: len(texts)]

    model._text_encoder = Frozen()
    assert torch.allclose(model.encode_text(["a", "b", "c"]), through, atol=1e-6)
    # the evaluation cache keys on the adapter too: a run without one must not reuse these vectors
    from lift.methods import identity_key

    model.text_identity = {**IDENTITY, "weights_sha256": "ab" * 32}  # as a real encoder's identity
    assert model.text_cache_key.startswith(identity_key(model.text_identity) + "-weights-")


def test_init_from_copies_the_tower_exactly_and_refuses_another(world, tmp_path):
    root, keys = world
    train(_cfg(world, tmp_path / "a", samples=16))
    write_store(tmp_path / "b", keys, dim=24, seed=7, identity={**IDENTITY, "pooling": "cls", "dim": 24})
    cfg = _cfg(world, tmp_path / "up", store=str(tmp_path / "b"), init_from=str(tmp_path / "a"), samples=8,
               save_every=100, lr=1e-9)  # fmt: skip
    from lift.models import create_model
    from lift.warm_start import warm_start

    old = _weights(tmp_path / "a")
    fresh = create_model(_model_config(cfg))
    prov = warm_start(fresh, fresh.config, str(tmp_path / "a"))
    state = fresh.state_dict()
    assert all(torch.equal(state[k], old[k]) for k in old if k.startswith("visual."))
    assert (
        prov["copied"] == ["visual"] and prov["text_identity"] == IDENTITY
    )  # the 16-d head does not fit 24-d
    train(cfg)
    saved = ckpt.load_config(ckpt.resolve_checkpoint(tmp_path / "up"))
    assert saved["init_from"]["method"] == "lift" and saved["text_identity"]["pooling"] == "cls"
    same_dim = _cfg(world, tmp_path / "same", init_from=str(tmp_path / "a"), samples=8)
    fresh = create_model(_model_config(same_dim))
    assert warm_start(fresh, fresh.config, str(tmp_path / "a"))["copied"] == ["head", "visual"]
    other = _cfg(world, tmp_path / "other", model="vit-small", init_from=str(tmp_path / "a"), samples=8)
    with pytest.raises(LiftError, match="--init-from .*its vision tower .* is not this run's"):
        train(other)
    assert not (tmp_path / "other").exists()


def _model_config(cfg):
    from lift.methods import get_method

    method = get_method(cfg.method)(cfg)
    method.open()
    return method.model_config()


def test_checkpoints_from_before_methods_were_plugins_load_and_resume(world, tmp_path):
    run = tmp_path / "run"
    train(_cfg(world, run, samples=24, save_every=2))
    for path in [run / "config.json", *(run / "checkpoints").glob("step-*/config.json")]:
        data = json.loads(path.read_text())
        train_cfg = data.get("train", data)
        flat = {k: v for k, v in train_cfg.items() if k not in ("options", "captions", "init_from")}
        flat.update(train_cfg["options"])
        flat.update(caption_field="short", text_context_length=77)  # what the old flat layout held
        flat.pop("text_adapter")
        if "train" in data:
            data["train"] = flat
            data["model"].pop("text_adapter", None)
        path.write_text(json.dumps(data if "train" in data else flat))
    model = lift.load(run)
    assert (
        model.config["train"]["options"]["store"].endswith("store")
        and model.config["train"]["captions"] is None
    )
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-000003")
    train(_cfg(world, run, samples=24, save_every=2, resume="latest"))  # continues the old run
    assert (run / "checkpoints" / "step-000003").is_dir()
