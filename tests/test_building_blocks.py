"""Shared building blocks: strict configs, atomic writes, shard specs, the error policy."""

import dataclasses
import json
import os

import pytest

from lift.atomic import atomic_write, write_json
from lift.config import apply_overrides, config_from_dict, load_config, save_config
from lift.data.paths import expand_paths
from lift.distributed import DistInfo, shards_for_rank
from lift.errors import ErrorPolicy, LiftError


@dataclasses.dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple = (0.9, 0.98)


@dataclasses.dataclass
class Cfg:
    name: str = "run"
    steps: int = 10
    amp: bool = False
    warmup: int | None = None
    optim: Optim = dataclasses.field(default_factory=Optim)


def test_unknown_keys_are_rejected_with_their_names():
    with pytest.raises(LiftError, match=r"unknown key\(s\) \['stpes'\]"):
        config_from_dict(Cfg, {"stpes": 3})
    with pytest.raises(LiftError, match=r"cfg.optim: unknown key\(s\) \['lrr'\]"):
        config_from_dict(Cfg, {"optim": {"lrr": 1.0}}, where="cfg")


def test_overrides_are_typed_by_the_field_and_nested():
    cfg = apply_overrides(Cfg, Cfg(), ["steps=20", "amp=true", "optim.lr=0.5", "warmup=none", "name=x=y"])
    assert cfg == Cfg(name="x=y", steps=20, amp=True, warmup=None, optim=Optim(lr=0.5))
    assert apply_overrides(Cfg, Cfg(), ["warmup=7"]).warmup == 7
    with pytest.raises(LiftError, match="unknown key 'nope'"):
        apply_overrides(Cfg, Cfg(), ["optim.nope=1"])
    with pytest.raises(LiftError, match="not a boolean"):
        apply_overrides(Cfg, Cfg(), ["amp=maybe"])
    with pytest.raises(LiftError, match="not key=value"):
        apply_overrides(Cfg, Cfg(), ["steps"])


def test_config_file_round_trip(tmp_path):
    (tmp_path / "c.yaml").write_text("steps: 5\noptim:\n  lr: 0.1\n")
    cfg = load_config(Cfg, tmp_path / "c.yaml", ["name=b"])
    assert cfg == Cfg(name="b", steps=5, optim=Optim(lr=0.1))
    save_config(cfg, tmp_path / "saved.json")
    assert config_from_dict(Cfg, json.loads((tmp_path / "saved.json").read_text())) == Cfg(
        name="b", steps=5, optim=Optim(lr=0.1, betas=[0.9, 0.98])
    )


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]  # no temp file left behind
    write_json(target, {"k": 1})
    assert json.loads(target.read_text()) == {"k": 1}


def test_expand_paths_understands_folders_globs_braces_and_urls(tmp_path):
    for i in range(3):
        (tmp_path / f"shard-{i:05d}.tar").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    tars = [str(tmp_path / f"shard-{i:05d}.tar") for i in range(3)]
    assert expand_paths(tmp_path, suffixes=(".tar",)) == tars
    assert expand_paths(str(tmp_path / "*.tar")) == tars
    assert expand_paths(str(tmp_path / "shard-{00000..00002}.tar")) == tars
    assert expand_paths([tars[2], tars[0]]) == [tars[2], tars[0]]  # an explicit list keeps its order
    assert expand_paths("pipe:curl -s http://x/shard-{0..1}.tar") == [
        "pipe:curl -s http://x/shard-0.tar",
        "pipe:curl -s http://x/shard-1.tar",
    ]
    with pytest.raises(LiftError, match="no such file"):
        expand_paths(str(tmp_path / "shard-{00000..00003}.tar"))
    with pytest.raises(LiftError, match="glob matches no files"):
        expand_paths(str(tmp_path / "*.parquet"))


def test_shards_split_between_ranks_cover_everything_once():
    items = [f"s{i}" for i in range(7)]
    owned = [shards_for_rank(items, DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for part in owned for i, _ in part) == list(range(7))
    assert owned[1] == [(1, "s1"), (4, "s4")]


def test_error_policy_stops_or_counts():
    with pytest.raises(LiftError, match="row 2"):
        ErrorPolicy("stop").fail("row 2: empty caption")
    policy = ErrorPolicy("skip", max_examples=1)
    policy.fail("row 2: empty caption")
    policy.fail("row 9: empty caption")
    assert policy.skipped == 2 and policy.examples == ["row 2: empty caption"]
    with pytest.raises(LiftError, match="--on-error"):
        ErrorPolicy("ignore")
