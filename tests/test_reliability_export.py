"""Issue 15, `lift export` never deletes what it did not write (item 1) and checks its output before
loading anything (item 12): the run itself, a folder holding it, the working directory and a user's
folder are refused in one line with every file left as it was; an earlier lift export is replaced."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from interop_fixtures import our_checkpoint
from lift.cli import main
from lift.models import ModelConfig
from lift.outputs import MARKER, read_marker


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and modification time: what a refusal must not touch."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def run(tmp_path) -> Path:
    path = our_checkpoint(tmp_path / "runs" / "clip", ModelConfig(method="clip", embed_dim=32))
    (path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    return path


def _export(capsys, source: Path | str, out: Path | str, *extra: str) -> tuple[int, str]:
    code = main(["export", str(source), "--format", "hf-clip-vision", "--out", str(out), *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_out_equal_to_the_run_or_holding_it_is_refused_and_nothing_is_deleted(
    tmp_path, capsys, run, overwrite
):
    before = listing(tmp_path)
    for out in (run, run.parent, tmp_path):  # the run, runs/, the folder holding everything
        code, err = _export(capsys, run, out, *overwrite)
        assert code == 2 and err.count("\n") == 1, err
        assert f"--out {out}: is the source {run} or holds it" in err
        assert listing(tmp_path) == before
    checkpoint = next(run.glob("checkpoints/*"))  # a checkpoint folder as the source: its run holds it
    code, err = _export(capsys, checkpoint, run, *overwrite)
    assert code == 2 and "or holds it" in err and listing(tmp_path) == before


@pytest.mark.parametrize("files", [True, False])
def test_out_dot_is_refused_and_nothing_is_deleted(tmp_path, capsys, monkeypatch, run, files):
    here = tmp_path / "work"
    here.mkdir()
    if files:
        (here / "notes.txt").write_text("a week of notes")
        (here / "data").mkdir()
        (here / "data" / "x.csv").write_text("a,b\n")
    monkeypatch.chdir(here)
    before = listing(tmp_path)
    for out in (".", str(here), str(tmp_path)):
        code, err = _export(capsys, run, out, "--overwrite")
        assert code == 2 and err.count("\n") == 1, err
        assert "working directory" in err or "or holds it" in err
        assert listing(tmp_path) == before and here.is_dir() and Path.cwd() == here


def test_a_user_folder_without_the_marker_is_refused_even_with_overwrite(tmp_path, capsys, run):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("\\section{Results}")
    before = listing(tmp_path)
    code, err = _export(capsys, run, mine, "--overwrite")
    assert code == 2 and err.count("\n") == 1
    assert f"--out {mine}: exists and was not written by lift (no {MARKER})" in err
    assert listing(tmp_path) == before


def test_a_second_export_over_a_lift_export_with_overwrite(tmp_path, capsys, run):
    out = tmp_path / "exports" / "hf"
    assert _export(capsys, run, out)[0] == 0
    assert read_marker(out)["kind"] == "export" and (out / "model.safetensors").is_file()
    code, err = _export(capsys, run, out)
    assert code == 2 and "already exists and is not empty; pass --overwrite" in err
    (out / "stale.txt").write_text("from the first export")
    assert _export(capsys, run, out, "--overwrite")[0] == 0
    assert not (out / "stale.txt").exists() and read_marker(out)["kind"] == "export"
    assert sorted(p.name for p in out.parent.iterdir()) == ["hf"]  # no temp folder left beside it


def test_an_unwritable_out_is_refused_before_the_model_is_loaded(tmp_path, capsys, monkeypatch, run):
    import lift.api

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(lift.api, "load", no_load)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = _export(capsys, run, blocker / "hf")
    assert code == 2 and f"{blocker} is a file, not a folder" in err

    def read_only(*args, **kwargs):  # tests may run as root, which ignores permission bits
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("lift.outputs.tempfile.TemporaryFile", read_only)
    code, err = _export(capsys, run, tmp_path / "ro" / "hf")
    assert code == 2 and err.count("\n") == 1 and "read-only file system" in err
    assert not (tmp_path / "ro").exists()
