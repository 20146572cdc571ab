"""`lift train` under misuse: existing run folders, flags set to 0, YAML vs flags, out-of-range values,
a store rebuilt under a resumed run, damaged metrics, leftover temp files, read-only and full disks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lift import checkpoint as ckpt
from lift.cli import main
from lift.outputs import MARKER
from mounts import lift_in_mount, needs_mounts
from train_fixtures import IDENTITY, write_shards, write_store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    keys = write_shards(root / "train", shards=2, per_shard=8)
    write_store(root / "store", keys)
    return root, keys


def _args(world, out, *extra: str) -> list[str]:
    root, _ = world
    return ["train", "--train-data", str(root / "train"), "--store", str(root / "store"), "--out", str(out),
            "--batch-size", "8", "--samples", "16", "--log-every", "1", "--save-every", "1", *extra]  # fmt: skip


def _train(world, out, *extra: str, capsys=None) -> tuple[int, str]:
    rc = main(_args(world, out, *extra))
    err = capsys.readouterr().err if capsys else ""
    return rc, err


def _error_line(err: str) -> str:
    """The one error line (progress bars may precede it); fails on a traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- item 2: an existing run is never mixed with a new one ------------------------------------------------


def test_existing_run_without_resume_is_refused_and_untouched(world, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(world, run, capsys=capsys)[0] == 0
    before = _snapshot(run)
    rc, err = _train(world, run, "--lr", "0.01", capsys=capsys)
    assert rc == 2
    line = _error_line(err)
    assert f"--out {run}: already holds a run" in line and "--resume latest" in line and "--overwrite" in line
    assert _snapshot(run) == before


def test_overwrite_starts_clean_but_only_on_lift_runs(world, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(world, run, "--samples", "24", capsys=capsys)[0] == 0
    assert (run / "checkpoints" / "step-000003").is_dir()
    assert _train(world, run, "--overwrite", capsys=capsys)[0] == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-000001", "step-000002"]
    rows = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2] and json.loads((run / MARKER).read_text())["kind"] == "run"

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, err = _train(world, mine, "--overwrite", capsys=capsys)
    assert rc == 2 and "not written by lift" in _error_line(err)
    assert (mine / "notes.txt").read_text() == "keep me"
    rc, err = _train(world, mine, capsys=capsys)
    assert rc == 2 and "exists and is not empty" in _error_line(err)


def test_overwrite_refuses_a_run_that_holds_the_training_data(world, tmp_path, capsys):
    root, keys = world
    run = tmp_path / "run"
    data = run / "data"
    write_shards(data, shards=1, per_shard=8)
    write_store(run / "store", keys[:8])
    shutil.copy(root / "train" / "00000.tar", data / "00000.tar")
    args = ["train", "--train-data", str(data), "--store", str(run / "store"), "--out", str(run),
            "--batch-size", "8", "--samples", "8"]  # fmt: skip
    (run / MARKER).write_text(json.dumps({"kind": "run"}))  # even a folder marked as a run
    assert main([*args, "--overwrite"]) == 2
    assert "holds it" in _error_line(capsys.readouterr().err) and (data / "00000.tar").exists()


def test_resume_latest_without_the_pointer_finds_the_newest_checkpoint(world, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(world, run, "--samples", "24", "--save-every", "2", capsys=capsys)[0] == 0
    shutil.rmtree(run / "checkpoints" / "step-000003")  # as if killed before the last checkpoint
    (run / "checkpoints" / "latest").unlink()
    stale = run / "checkpoints" / ".latest.abc123.tmp"
    stale.write_text("step-000002\n")  # a torn pointer write
    assert (
        _train(world, run, "--samples", "24", "--save-every", "2", "--resume", "latest", capsys=capsys)[0]
        == 0
    )
    rows = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3]  # resumed at step 2: steps 1-2 were not trained again
    assert not stale.exists()
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000003"


def test_resume_of_a_folder_that_is_not_a_run_is_refused(world, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    rc, err = _train(world, other, "--resume", "latest", capsys=capsys)
    assert rc == 2 and "not a lift run folder" in _error_line(err)


# ---- item 3: flags are honoured, 0 included, and beat the YAML; out-of-range values are refused ----------


def test_zero_flags_reach_the_saved_config(world, tmp_path, capsys):
    run = tmp_path / "run"
    rc, _ = _train(world, run, "--weight-decay", "0", "--warmup", "0", "--seed", "0", capsys=capsys)
    assert rc == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["weight_decay"] == 0 and saved["warmup"] == 0 and saved["seed"] == 0


def test_command_line_flags_beat_the_yaml(world, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("seed: 5\nweight_decay: 0.1\nlr: 1e-3\ngrad_checkpointing: true\nbatch_size: 4\n")
    run = tmp_path / "run"
    rc, _ = _train(world, run, "--config", str(cfg), "--seed", "0", "--weight-decay", "0",
                   "--no-grad-checkpointing", capsys=capsys)  # fmt: skip
    assert rc == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["seed"], saved["weight_decay"], saved["grad_checkpointing"]) == (0, 0.0, False)
    assert saved["lr"] == 1e-3 and saved["batch_size"] == 8  # YAML's 1e-3 is a float; the flag beats 4


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--lr", "0", "--lr must be > 0, got 0.0"),
        ("--lr", "nan", "--lr must be > 0, got nan"),
        ("--batch-size", "0", "--batch-size must be >= 1, got 0"),
        ("--accum-steps", "0", "--accum-steps must be >= 1, got 0"),
        ("--workers", "-1", "--workers must be >= 0, got -1"),
        ("--head-depth", "0", "--head-depth must be >= 1, got 0"),
        ("--init-temperature", "0", "--init-temperature must be in [0.01, 1], got 0.0"),
        ("--save-every", "0", "--save-every must be >= 1, got 0"),
        ("--beta2", "1", "--beta2 must be in [0, 1), got 1.0"),
        ("--samples", "0", "--samples must be >= 1, got 0"),
    ],
)
def test_out_of_range_flags_are_refused_before_anything_is_written(
    world, tmp_path, capsys, flag, value, expected
):
    run = tmp_path / "run"
    rc, err = _train(world, run, flag, value, capsys=capsys)
    assert rc == 2 and _error_line(err).endswith(expected)
    assert not run.exists()


def test_a_bad_yaml_value_names_the_key(world, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("lr: fast\n")
    rc, err = _train(world, tmp_path / "run", "--config", str(cfg), capsys=capsys)
    assert rc == 2 and "lr must be float, got 'fast'" in _error_line(err)


# ---- item 5: a resumed run checks the store it reads against its checkpoint -------------------------------


def test_resume_refuses_a_store_rebuilt_with_other_settings(world, tmp_path, capsys):
    root, keys = world
    store = tmp_path / "store"
    write_store(store, keys)
    run = tmp_path / "run"
    args = ["--store", str(store), "--samples", "24", "--save-every", "2"]  # the last flag wins
    assert main([*_args(world, run), *args]) == 0
    shutil.rmtree(run / "checkpoints" / "step-000003")
    shutil.rmtree(store)
    write_store(store, keys, identity={**IDENTITY, "max_length": 16})
    assert main([*_args(world, run, "--resume", "latest"), *args]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "text encoder mismatch" in line and "max_length: None != 16" in line


# ---- item 12: outputs that cannot be written, damaged metrics ---------------------------------------------


def test_out_that_is_a_file_is_refused(world, tmp_path, capsys):
    target = tmp_path / "run.txt"
    target.write_text("not a folder")
    rc, err = _train(world, target, capsys=capsys)
    assert rc == 2 and "is an existing file" in _error_line(err) and target.read_text() == "not a folder"


def test_a_torn_last_metrics_line_is_dropped_on_resume(world, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(world, run, "--samples", "24", "--save-every", "2", capsys=capsys)[0] == 0
    shutil.rmtree(run / "checkpoints" / "step-000003")
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 4, "lo')  # killed mid-write
    assert (
        _train(world, run, "--samples", "24", "--save-every", "2", "--resume", "latest", capsys=capsys)[0]
        == 0
    )
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [1, 2, 3]

    metrics.write_text('{"step": 1}\nGARBAGE\n{"step": 2}\n')
    rc, err = _train(world, run, "--samples", "24", "--save-every", "2", "--resume", "latest", capsys=capsys)
    assert rc == 2 and "metrics.jsonl: line 2 is not a metrics row" in _error_line(err)


@needs_mounts
def test_read_only_output_is_refused_before_training(world, tmp_path):
    mount = tmp_path / "ro"
    done = lift_in_mount(mount, "ro,size=1m", _args(world, mount / "run"))
    assert done.returncode == 2
    line = _error_line(done.stderr)
    assert f"--out {mount / 'run'}: cannot write in {mount} (read-only file system)" in line


@needs_mounts
def test_full_disk_during_a_checkpoint_is_one_line(world, tmp_path):
    mount = tmp_path / "small"
    done = lift_in_mount(mount, "size=256k", _args(world, mount / "run"))
    assert done.returncode == 2
    line = _error_line(done.stderr)
    assert f"no space left on device {mount}" in line and "free some space or write elsewhere" in line


def test_full_disk_reported_by_a_library_is_translated(world, tmp_path, capsys, monkeypatch):
    """torch and safetensors report a full disk in their own words; the checkpoint writer says ENOSPC."""
    import safetensors.torch

    def full(*args, **kwargs):
        raise safetensors.SafetensorError(
            "Error while serializing: IoError(Os { code: 28, kind: StorageFull })"
        )

    monkeypatch.setattr(ckpt, "save_file", full)
    rc, err = _train(world, tmp_path / "run", capsys=capsys)
    assert rc == 2 and "no space left on device" in _error_line(err)
