"""Checkpoint I/O: safetensors + JSON + weights-only state, atomic `latest`, stale temp cleanup."""

from __future__ import annotations

import pytest
import torch

from lift import checkpoint as ckpt
from lift.errors import LiftError


def _weights():
    torch.manual_seed(0)
    w = torch.randn(4, 3)
    return {"a.weight": w, "b.weight": w, "scale": torch.tensor(2.0)}  # a and b share storage


def test_roundtrip_and_latest(tmp_path):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.1, betas=(0.9, 0.98))
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 5, "rng_cpu": torch.get_rng_state()}
    first = ckpt.save_checkpoint(tmp_path, 5, _weights(), {"model": {"method": "lift"}}, state)
    second = ckpt.save_checkpoint(tmp_path, 10, _weights(), {"model": {"method": "lift"}}, state)
    assert first.name == "step-000005" and second.name == "step-000010"
    assert ckpt.latest_checkpoint(tmp_path) == second
    assert ckpt.resolve_checkpoint(tmp_path) == second and ckpt.resolve_checkpoint(first) == first
    loaded = ckpt.load_weights(second)
    assert torch.equal(loaded["a.weight"], _weights()["a.weight"]) and set(loaded) == set(_weights())
    assert ckpt.load_config(second) == {"model": {"method": "lift"}, "step": 10}
    back = ckpt.load_state(second)
    assert back["step"] == 5 and torch.equal(back["rng_cpu"], state["rng_cpu"])
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.param_groups[0]["betas"] == (0.9, 0.98)


def test_stale_temp_folder_is_ignored_and_cleaned(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, _weights(), {})
    stale = tmp_path / "checkpoints" / ".step-000002.tmp-999"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half written")
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000001"
    ckpt.clean_stale_temps(tmp_path)
    assert not stale.exists()


def test_state_with_arbitrary_objects_is_refused(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 1, _weights(), {}, {"step": 1})
    torch.save({"step": 1, "evil": ckpt.checkpoint_name}, folder / ckpt.STATE)
    with pytest.raises(LiftError, match="state.pt: holds pickled Python objects") as info:
        ckpt.load_state(folder)
    assert "weights_only" not in str(info.value)  # never torch's advice to unpickle


def test_clear_errors_for_missing_things(tmp_path):
    with pytest.raises(LiftError, match="no such run"):
        ckpt.resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(LiftError, match="neither a checkpoint"):
        ckpt.resolve_checkpoint(tmp_path)
    folder = ckpt.save_checkpoint(tmp_path, 3, _weights(), {})
    with pytest.raises(LiftError, match="cannot be resumed"):
        ckpt.load_state(folder)
    (folder / ckpt.WEIGHTS).write_bytes(b"torn")
    with pytest.raises(LiftError, match="cannot read weights"):
        ckpt.load_weights(folder)
