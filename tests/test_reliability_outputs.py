"""Output folders of `lift synth` and `lift demo`: never written into or deleted unless lift made them."""

from __future__ import annotations

import errno
import json

import pytest

from lift.cli import main
from lift.outputs import MARKER, check_replaceable, check_writable, prepare_output_dir, write_marker
from mounts import lift_in_mount, needs_mounts

SYNTH = [
    "--train-size",
    "20",
    "--test-size",
    "8",
    "--shard-size",
    "10",
    "--image-size",
    "16",
    "--no-progress",
]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_synth_refuses_a_folder_it_did_not_make_even_with_force(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "train").mkdir(parents=True)
    (mine / "train" / "00000.tar").write_bytes(b"my own data")
    before = _listing(mine)
    for extra in ([], ["--force"]):
        assert main(["synth", str(mine), *SYNTH, *extra]) == 2
        assert "not a synthetic world lift made" in _error(capsys)
    assert _listing(mine) == before and (mine / "train" / "00000.tar").read_bytes() == b"my own data"


def test_synth_resumes_and_forces_its_own_world(tmp_path, capsys):
    world = tmp_path / "world"
    assert main(["synth", str(world), *SYNTH]) == 0
    assert json.loads((world / MARKER).read_text())["kind"] == "synthetic world"
    assert main(["synth", str(world), *SYNTH]) == 0  # a rerun reuses it
    assert main(["synth", str(world), *SYNTH, "--seed", "3", "--force"]) == 0
    capsys.readouterr()


def test_synth_and_demo_refuse_an_output_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "out.txt"
    target.write_text("x")
    assert main(["synth", str(target), *SYNTH]) == 2
    assert "is an existing file" in _error(capsys)
    assert main(["demo", "--quick", "--out", str(target)]) == 2
    assert "is an existing file" in _error(capsys) and target.read_text() == "x"


def test_demo_fresh_deletes_only_a_demo_folder(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for extra in ([], ["--fresh"]):
        assert main(["demo", "--quick", "--out", str(mine), *extra]) == 2
        assert "not a demo folder lift made" in _error(capsys)
    assert (mine / "thesis.tex").read_text() == "years of work"

    monkeypatch.chdir(tmp_path)
    here = tmp_path / "demo"
    here.mkdir()
    write_marker(here, "demo")
    monkeypatch.chdir(here)
    assert main(["demo", "--quick", "--out", ".", "--fresh"]) == 2
    assert "holds the working directory" in _error(capsys) and (here / MARKER).exists()


def test_replace_rules(tmp_path, monkeypatch):
    """Only a folder lift wrote as the same kind, holding neither a source nor the working directory."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a")
    with pytest.raises(Exception, match="pass --overwrite"):
        prepare_output_dir(out, kind="export")
    with pytest.raises(Exception, match="not written by lift"):
        prepare_output_dir(out, kind="export", overwrite=True)
    write_marker(out, "run")
    with pytest.raises(Exception, match="wrote it as a 'run' folder, not a 'export' one"):
        prepare_output_dir(out, kind="export", overwrite=True)
    write_marker(out, "export")
    assert prepare_output_dir(out, kind="export", overwrite=True) is True
    with pytest.raises(Exception, match="is the source"):
        check_replaceable(out, kind="export", sources=[out / "a"])
    with pytest.raises(Exception, match="holds the working directory"):
        check_replaceable(tmp_path, kind="export")
    assert prepare_output_dir(tmp_path / "new" / "deeper", kind="export") is False


def test_an_unwritable_location_is_named(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(
        Exception, match=rf"--out {tmp_path}/x/y: cannot write in {tmp_path} \(read-only file system\)"
    ):
        check_writable(tmp_path / "x" / "y")


@needs_mounts
def test_synth_on_a_read_only_disk_is_one_line(tmp_path):
    mount = tmp_path / "ro"
    done = lift_in_mount(mount, "ro,size=1m", ["synth", str(mount / "world"), *SYNTH])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"output folder {mount / 'world'}: cannot write in {mount} (read-only file system)" in done.stderr


@needs_mounts
def test_embed_on_a_full_disk_is_one_line_naming_the_device(tmp_path):
    captions = tmp_path / "captions.csv"
    captions.write_text("key,caption\n" + "".join(f"k{i},a red circle number {i}\n" for i in range(400)))
    mount = tmp_path / "small"
    done = lift_in_mount(
        mount, "size=64k", ["embed", str(captions), "--out", str(mount / "store"), "--no-progress"]
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [ln for ln in done.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and f"no space left on device {mount}" in errors[0]
