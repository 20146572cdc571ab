"""The GPU path's options on CPU: `--compile` leaves the loss unchanged, and the towers' attention runs
through scaled_dot_product_attention (the fused kernels on a GPU)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lift import checkpoint as ckpt
from lift.bench import flop_formulas as flops
from lift.models import ModelConfig, create_model
from lift.train import train
from lift.train_config import train_config_from_dict
from train_fixtures import write_shards, write_store


@pytest.mark.parametrize("method", ["lift", "clip"])
def test_the_towers_attend_through_scaled_dot_product_attention(method):
    model = create_model(ModelConfig(method=method, model="vit-tiny", embed_dim=16, text_context_length=8))
    images, tokens = torch.randn(2, 3, 64, 64), torch.randint(1, 100, (2, 8))
    flops.register_fused_attention_formulas()  # the counter lists an op only when it has a formula
    with FlopCounterMode(display=False) as counter:
        model.encode_image(images)
        if method == "clip":
            model.encode_text(tokens)
    ops = {str(op) for op in counter.get_flop_counts()["Global"]}
    assert any("scaled_dot_product" in op for op in ops), ops


@pytest.mark.slow
def test_compile_leaves_the_loss_unchanged(tmp_path):
    keys = write_shards(tmp_path / "train", shards=1, per_shard=16)
    write_store(tmp_path / "store", keys)
    losses, weights = {}, {}
    for compiled in (False, True):
        out = tmp_path / f"run-{compiled}"
        train(train_config_from_dict({"train_data": str(tmp_path / "train"), "store": str(tmp_path / "store"),
                                      "out": str(out), "batch_size": 8, "samples": 16, "log_every": 1,
                                      "compile": compiled, "seed": 3}))  # fmt: skip
        losses[compiled] = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
        weights[compiled] = ckpt.load_weights(ckpt.resolve_checkpoint(out))
    assert losses[True] == pytest.approx(losses[False], abs=1e-4)
    assert max(float((weights[True][k] - weights[False][k]).abs().max()) for k in weights[False]) < 1e-4
