"""`lift embed`: captions -> store end to end, bad input, resume after kill -9, 2-process gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lift.cli import main
from lift.embed import embed_captions
from lift.errors import LiftError
from lift.store import open_store
from lift.text import TextEncoder

NUM_SHARDS, ROWS = 6, 40
VOCAB = "red green blue big small cube ball cylinder dog cat on under beside left of right two three a the"
WORDS = VOCAB.split()


def _caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(2, 30))))


def write_inputs(folder: Path) -> Path:
    """NUM_SHARDS parquet files of mixed-length captions, some repeated (as web alt-text is)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(NUM_SHARDS):
        caps = [_caption(rng) for _ in range(ROWS)]
        caps[5] = caps[3] = "a photo"
        keys = [f"{s:05d}{i:04d}" for i in range(ROWS)]
        pq.write_table(pa.table({"key": keys, "caption": caps}), folder / f"{s:05d}.parquet")
    return folder


def store_arrays(path: Path) -> list[tuple[list[str], np.ndarray]]:
    store = open_store(path)
    return [
        (sum((k for k, _ in store.iter_shard(i)), []), np.concatenate([e for _, e in store.iter_shard(i)]))
        for i in range(store.num_shards)
    ]


def assert_same_store(a: Path, b: Path) -> None:
    for (ka, ea), (kb, eb) in zip(store_arrays(a), store_arrays(b), strict=True):
        assert ka == kb
        np.testing.assert_array_equal(ea, eb)
    assert open_store(a).identity == open_store(b).identity


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lift-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same as the subprocesses, so stores are bit-identical
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return write_inputs(tmp_path_factory.mktemp("captions"))


@pytest.fixture(scope="module")
def clean_store(inputs, tmp_path_factory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("clean") / "store"
    summary = embed_captions(sources=[str(inputs / "*.parquet")], out=out, batch_size=8, progress=False)
    return out, summary


def test_store_holds_every_caption_embedding(inputs, clean_store):
    out, summary = clean_store
    assert summary["captions"] == NUM_SHARDS * ROWS == summary["rows_in_store"]
    assert summary["unique"] <= NUM_SHARDS * (ROWS - 1) and summary["skipped"] == 0
    store = open_store(out)
    enc = TextEncoder.from_pretrained("default")
    assert store.identity == enc.identity and store.dtype == "float16"
    assert store.shard_names == [f"{s:05d}" for s in range(NUM_SHARDS)]  # one per input file, named like it
    extra = store.manifest["extra"]
    assert extra["text_encoder_path"] == str(enc.path)
    table = pq.read_table(inputs / "00002.parquet").to_pylist()
    want = enc.encode([r["caption"] for r in table]).numpy()
    got = np.stack([store[r["key"]] for r in table])
    np.testing.assert_allclose(got, want, atol=2e-3)  # float16 storage


def test_cli_formats_summary_and_rerun(tmp_path, capsys):
    rows = [{"id": f"k{i}", "text": f"caption number {i}"} for i in range(5)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "store"
    args = ["embed", str(tmp_path / "a.jsonl"), "--out", str(out), "--key-field", "id", "--caption-field", "text",
            "--store-dtype", "float32", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("lift embed: 5 captions (5 unique, 0 skipped, 0 truncated at 77 tokens) in ")
    assert "captions/s" in line
    assert main(args) == 0
    assert "1 shard(s) already done" in capsys.readouterr().out
    enc = TextEncoder.from_pretrained("default")
    np.testing.assert_allclose(open_store(out)["k3"], enc.encode(["caption number 3"])[0].numpy(), atol=1e-6)
    assert main([*args, "--max-tokens", "16"]) == 2  # another encoder setting: refused, says which
    assert "max_length: 16 != 77" in capsys.readouterr().err


def _write(path: Path, caps: list) -> Path:
    pq.write_table(pa.table({"key": [f"{path.stem}-{i}" for i in range(len(caps))], "caption": caps}), path)
    return path


def test_bad_input_stops_keeps_done_shards_or_is_skipped_and_counted(tmp_path, capsys):
    _write(tmp_path / "s0.parquet", ["one", "two"])
    _write(tmp_path / "s1.parquet", ["three", "   ", "five"])
    out = tmp_path / "store"
    args = ["embed", str(tmp_path / "s{0,1}.parquet"), "--out", str(out), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"lift embed: error: {tmp_path / 's1.parquet'}: row 1 (key 's1-1'): empty caption\n"
    _write(tmp_path / "s1.parquet", ["three", "four", "five"])  # fixed: the rerun keeps shard 0
    summary = embed_captions(sources=str(tmp_path / "s{0,1}.parquet"), out=out, progress=False)
    assert summary["shards_already_done"] == 1 and summary["rows_in_store"] == 5

    _write(tmp_path / "s1.parquet", ["three", "", "five"])
    (tmp_path / "s2.parquet").write_bytes(b"PAR1 broken")
    skip_out = tmp_path / "skip"
    summary = embed_captions(
        sources=str(tmp_path / "s?.parquet"), out=skip_out, on_error="skip", progress=False
    )
    # skipped counts rows; the unreadable file is counted and named as lost, not as one skipped row
    assert (summary["captions"], summary["skipped"], summary["rows_in_store"]) == (4, 1, 4)
    assert summary["files_lost"] == 1 and "s2.parquet: cannot read parquet" in summary["lost_files"][0]
    store = open_store(skip_out)
    assert store.manifest["skipped"] == 1 and "s1-1" not in store and "s1-2" in store


def test_bad_encoder_folder_and_missing_column(tmp_path, inputs, capsys):
    (tmp_path / "not-a-model").mkdir()
    base = ["embed", str(inputs / "00000.parquet"), "--out", str(tmp_path / "s"), "--no-progress"]
    assert main([*base, "--encoder", str(tmp_path / "not-a-model")]) == 2
    assert "not a Hugging Face model folder" in capsys.readouterr().err
    assert main([*base, "--caption-field", "re_caption", "--on-error", "skip"]) == 2
    assert "no caption-field 're_caption'" in capsys.readouterr().err


def _lift(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


@pytest.mark.slow
def test_kill_9_mid_job_then_rerun_equals_clean_run(tmp_path, inputs, clean_store):
    out = tmp_path / "store"
    args = ["embed", str(inputs / "*.parquet"), "--out", str(out), "--batch-size", "8", "--no-progress"]
    proc = _lift("-m", "lift", *args)
    deadline = time.monotonic() + 120
    while not list((out / "shards").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "shards").glob("*.json")))
    assert 1 <= done < NUM_SHARDS and not (out / "manifest.json").exists(), proc.stderr.read()
    assert main(args) == 0
    assert_same_store(out, clean_store[0])


@pytest.mark.slow
def test_two_process_gloo_equals_one_process(tmp_path, inputs, clean_store):
    out = tmp_path / "store"
    proc = _lift("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lift", "embed",
                 str(inputs / "*.parquet"), "--out", str(out), "--batch-size", "8", "--no-progress")  # fmt: skip
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"lift embed: {NUM_SHARDS * ROWS} captions" in stdout and stdout.count("lift embed:") == 1
    assert_same_store(out, clean_store[0])


def test_encoder_settings_reach_the_store(tmp_path, inputs):
    out = tmp_path / "store"
    embed_captions(sources=str(inputs / "00001.parquet"), out=out, max_tokens=8, instruction="photo: ",
                   normalize=False, store_dtype="float32", progress=False)  # fmt: skip
    store = open_store(out)
    ident = store.identity
    assert (ident["max_length"], ident["instruction"], ident["normalize"]) == (8, "photo: ", False)
    enc = TextEncoder.from_identity(ident, store.manifest["extra"]["text_encoder_path"])
    row = pq.read_table(inputs / "00001.parquet").to_pylist()[7]
    np.testing.assert_allclose(store[row["key"]], enc.encode([row["caption"]])[0].numpy(), atol=1e-5)
    with pytest.raises(LiftError, match="normalize"):
        embed_captions(sources=str(inputs / "00001.parquet"), out=out, max_tokens=8, instruction="photo: ",
                       store_dtype="float32", progress=False)  # fmt: skip
