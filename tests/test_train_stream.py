"""`lift train --data-order stream`: trains from URLs (a loopback HTTP server standing in for object
storage), resumes after kill -9 to the weights of an uninterrupted run, and records the data wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from lift import checkpoint as ckpt
from lift.bench.data import SlowServer
from lift.cli import main
from lift.errors import LiftError
from lift.train import train
from lift.train_config import train_config_from_dict
from train_fixtures import write_shards, write_store

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("streamworld")
    keys = write_shards(root / "train", shards=4, per_shard=8)
    write_store(root / "store", keys)
    return root


def _args(world, out, data: str, *extra: str) -> list[str]:
    return ["train", "--train-data", data, "--store", str(world / "store"), "--out", str(out), "--batch-size", "8",
            "--samples", "48", "--save-every", "1", "--log-every", "1", "--seed", "1", *extra]  # fmt: skip


def _weights(run) -> dict[str, torch.Tensor]:
    return ckpt.load_weights(ckpt.resolve_checkpoint(run))


def test_urls_train_in_the_stream_order_with_the_data_wait_logged(world, tmp_path, capsys):
    with SlowServer(world / "train", latency=0.01) as server:
        urls = server.url + "/{00000..00003}.tar"
        assert main(_args(world, tmp_path / "run", urls)) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data_order"] is None  # the default: chosen from the URLs
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and all(0 <= r["data_wait"] <= 1 for r in rows)
    state = ckpt.load_state(ckpt.resolve_checkpoint(tmp_path / "run"))
    assert "stream" in state  # every worker's position travels with the checkpoint
    assert "trained lift for 6 steps" in capsys.readouterr().err


@pytest.mark.slow
def test_kill9_then_resume_in_the_stream_order_equals_an_uninterrupted_run(world, tmp_path):
    data = f"pipe:cat {world / 'train'}/{{00000..00003}}.tar"
    clean = tmp_path / "clean"
    assert main(_args(world, clean, data, "--workers", "2")) == 0
    killed = tmp_path / "killed"
    args = _args(world, killed, data, "--workers", "2", "--resume", "latest")
    proc = subprocess.Popen([sys.executable, "-m", "lift", *args], env=ENV, stderr=subprocess.DEVNULL)
    target = killed / "checkpoints" / "step-000003"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / "step-000006").exists(), "finished before the kill"
    assert main(args) == 0  # the same command again
    a, b = _weights(clean), _weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_epochs_in_the_stream_order_need_a_known_size(world, tmp_path):
    cfg = {"train_data": "pipe:cat /nowhere/{0..3}.tar", "method": "clip", "out": str(tmp_path / "r"),
           "batch_size": 8, "epochs": 1.0, "data_order": "stream"}  # fmt: skip
    with pytest.raises(LiftError, match="--epochs with --data-order stream needs the samples per epoch"):
        train(train_config_from_dict(cfg))
    with pytest.raises(LiftError, match="--data-order must be one of exact, stream"):
        train(train_config_from_dict({**cfg, "data_order": "random"}))
