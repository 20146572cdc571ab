"""The embedding store: round trips, lookups, streaming, resume after a kill, refusals, verify, CLI."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lift.cli import main as lift_main
from lift.errors import LiftError
from lift.store import STORE_DTYPES, KeyNotInStore, StoreDamaged, StoreWriter, open_store
from lift.store.codecs import get_codec

IDENTITY = {"model": "tiny-encoder", "weights_sha256": "abc123", "pooling": "mean", "max_tokens": 77}
ROWS = (40, 0, 57)  # the empty shard is a real case: every caption of an input shard was skipped
NAMES = ["cap-00000", "cap-00001", "cap-00002"]


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def shard_data(i: int, rows: int, dim: int) -> tuple[list[str], np.ndarray]:
    # mixed keys: img2dataset-style digits and non-ASCII, so byte and character offsets differ
    keys = [f"{i:02d}{j:07d}" if j % 3 else f"bild-{i}-{j}-é" for j in range(rows)]
    return keys, unit_vectors(rows, dim, seed=100 + i)


def write_store(root: Path, *, dtype: str = "float16", dim: int = 32, rows=ROWS, finalize: bool = True, **kw):
    names = [f"cap-{i:05d}" for i in range(len(rows))]
    w = StoreWriter(root, identity=IDENTITY, dim=dim, dtype=dtype, shard_names=names, **kw)
    data = {}
    for i, n in enumerate(rows):
        keys, x = shard_data(i, n, dim)
        w.write_shard(i, keys, x, skipped=i)
        data.update(zip(keys, x))
    if finalize:
        w.finalize()
    return w, data


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of a folder by relative path: two stores are identical iff snapshots are equal."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def new_writer(root: Path, **changes) -> StoreWriter:
    kw = {"identity": IDENTITY, "dim": 32, "dtype": "float16", "shard_names": NAMES} | changes
    return StoreWriter(root, **kw)


# ---- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", STORE_DTYPES)
def test_round_trip_every_dtype(tmp_path, dtype):
    dim = 384
    _, data = write_store(tmp_path / "s", dtype=dtype, dim=dim)
    store = open_store(tmp_path / "s")
    keys = list(data)
    want = np.stack([data[k] for k in keys])

    assert len(store) == sum(ROWS) and store.dim == dim and store.dtype == dtype
    assert store.identity == IDENTITY and store.num_shards == 3 and store.shard_names == NAMES
    assert [store.shard_len(i) for i in range(3)] == list(ROWS)
    assert list(store.keys()) == keys
    assert store.manifest["skipped"] == 0 + 1 + 2

    got = np.stack([store[k] for k in keys])
    assert got.dtype == np.float32 and got.shape == (sum(ROWS), dim)
    if dtype == "float32":
        np.testing.assert_array_equal(got, want)
    elif dtype == "float16":
        np.testing.assert_allclose(got, want, atol=1e-3)
    elif dtype == "bfloat16":
        np.testing.assert_allclose(got, want, rtol=2**-8, atol=1e-6)
    else:
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1)
        assert cos.min() >= 0.999
        half_step = np.abs(want).max(1, keepdims=True) / 254  # rounding error of symmetric int8
        assert np.all(np.abs(got - want) <= half_step * (1 + 1e-5))

    # (shard, row), batched lookup (shuffled, repeated) and streaming all agree with store[key]
    np.testing.assert_array_equal(store.get(2, 5), store[shard_data(2, 57, dim)[0][5]])
    order = np.random.default_rng(0).permutation(len(keys)).tolist() + [0, 0]
    np.testing.assert_array_equal(store.get_many([keys[j] for j in order]), got[order])
    streamed = [b for _, b in store.iter_shard(2, batch_size=16)]
    assert [len(b) for b in streamed] == [16, 16, 16, 9]
    np.testing.assert_array_equal(np.concatenate(streamed), got[40:])
    assert store.shard_keys(0) == keys[:40] and store.shard_keys(1) == []
    assert list(store.iter_shard(1)) == []


def test_bfloat16_rounds_like_torch():
    torch = pytest.importorskip("torch")
    x = np.concatenate(
        [unit_vectors(64, 64, 1).ravel(), [1.0, -0.0, 1 + 2**-8, 1 + 3 * 2**-8, 3.3e38]]
    ).astype(np.float32)
    ours, _ = get_codec("bfloat16").encode(x[None])
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours[0], theirs)


def test_int8_keeps_zero_rows_and_scales(tmp_path):
    w = new_writer(tmp_path / "s", dtype="int8", shard_names=["a"])
    x = np.zeros((2, 32), np.float32)
    x[1, 3] = -0.5
    w.write_shard(0, ["zero", "one"], x)
    w.finalize()
    store = open_store(tmp_path / "s")
    np.testing.assert_array_equal(store["zero"], np.zeros(32, np.float32))
    np.testing.assert_allclose(store["one"], x[1], atol=1e-7)


def test_missing_key_is_a_lift_error_and_a_key_error(tmp_path):
    _, data = write_store(tmp_path / "s")
    store = open_store(tmp_path / "s")
    assert "nope" not in store and 5 not in store and next(iter(data)) in store
    with pytest.raises(KeyNotInStore, match="'nope' is not in the store") as e:
        store["nope"]
    assert isinstance(e.value, LiftError) and isinstance(e.value, KeyError)
    with pytest.raises(KeyNotInStore, match="nope"):
        store.get_many([next(iter(data)), "nope"])
    with pytest.raises(LiftError, match="out of range"):
        store.get(0, 40)
    with pytest.raises(LiftError, match="out of range"):
        store.get(3, 0)


# ---- resume: reruns and kills ----------------------------------------------------------------------


def test_resume_and_rerun_give_a_store_identical_to_a_clean_run(tmp_path):
    write_store(tmp_path / "clean")
    root = tmp_path / "resumed"
    w = new_writer(root)
    keys, x = shard_data(0, ROWS[0], 32)
    w.write_shard(0, keys, x, skipped=0)
    with pytest.raises(LiftError, match="2 of 3 shards are not written: cap-00001, cap-00002"):
        w.finalize()
    with pytest.raises(LiftError, match="incomplete .1 of 3 shards written"):
        open_store(root)

    w = new_writer(root)  # a rerun: shard 0 is done and skipped, the rest is written
    assert [w.is_done(i) for i in range(3)] == [True, False, False]
    for i in (1, 2):
        w.write_shard(i, *shard_data(i, ROWS[i], 32), skipped=i)
    w.finalize()
    assert snapshot(root) == snapshot(tmp_path / "clean")

    w = new_writer(root)  # rerunning a finished job changes nothing
    assert all(w.is_done(i, deep=True) for i in range(3))
    w.finalize()
    assert snapshot(root) == snapshot(tmp_path / "clean")


def test_writer_killed_mid_shard_rewrites_exactly_that_shard(tmp_path):
    write_store(tmp_path / "clean")
    root = tmp_path / "killed"
    write_store(root, finalize=False)
    # what a kill during shard 1 leaves: its files but no sidecar, plus a temp file mid-write
    (root / "shards" / "00001.json").unlink()
    (root / "shards" / ".00001.emb.k1ll3d.tmp").write_bytes(b"torn")
    shard2 = (root / "shards" / "00002.emb").stat().st_mtime_ns

    w = new_writer(root)
    assert [w.is_done(i) for i in range(3)] == [True, False, True]
    w.write_shard(1, *shard_data(1, ROWS[1], 32), skipped=1)
    w.finalize()
    assert snapshot(root) == snapshot(tmp_path / "clean")
    assert (root / "shards" / "00002.emb").stat().st_mtime_ns == shard2


def test_a_damaged_file_makes_the_shard_not_done(tmp_path):
    root = tmp_path / "s"
    write_store(root, finalize=False)
    with open(root / "shards" / "00002.koff", "ab") as f:
        f.write(b"\0")
    (root / "shards" / "00000.keys").write_bytes(b"x" + (root / "shards" / "00000.keys").read_bytes()[1:])
    w = new_writer(root)
    assert [w.is_done(i) for i in range(3)] == [True, True, False]  # size check only
    assert [w.is_done(i, deep=True) for i in range(3)] == [False, True, False]


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_store import ROWS, shard_data, new_writer
    from pathlib import Path
    real_replace, calls = os.replace, [0]
    def replace_then_die(src, dst):
        calls[0] += 1
        if calls[0] == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 just before this rename
        real_replace(src, dst)
    os.replace = replace_then_die
    w = new_writer(Path({root!r}))
    for i, n in enumerate(ROWS):
        w.write_shard(i, *shard_data(i, n, 32), skipped=i)
    w.finalize()
    """
)


# renames: 1 store.json, 2-6 shard 0 (emb keys koff khash sidecar), 7-11 shard 1, 12-16 shard 2,
# 17-18 the index, 19 the manifest
@pytest.mark.parametrize("kill_at", [4, 9, 18, 19])
def test_kill_9_then_rerun_equals_a_clean_run(tmp_path, kill_at):
    write_store(tmp_path / "clean")
    root = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), kill_at=kill_at, root=str(root))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not (root / "manifest.json").exists()

    w = new_writer(root)  # the rerun: same command, skips finished shards
    for i, n in enumerate(ROWS):
        if not w.is_done(i):
            w.write_shard(i, *shard_data(i, n, 32), skipped=i)
    w.finalize()
    assert snapshot(root) == snapshot(tmp_path / "clean")


def test_ranks_write_disjoint_shards_then_one_finalizes(tmp_path):
    write_store(tmp_path / "clean")
    root = tmp_path / "ranks"
    rank0, rank1 = new_writer(root), new_writer(root)  # as two torchrun ranks would
    for i in (0, 2):
        rank0.write_shard(i, *shard_data(i, ROWS[i], 32), skipped=i)
    rank1.write_shard(1, *shard_data(1, ROWS[1], 32), skipped=1)
    rank0.finalize()
    assert snapshot(root) == snapshot(tmp_path / "clean")


# ---- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"identity": IDENTITY | {"pooling": "cls"}}, "this job and store .* \\(pooling: 'cls' != 'mean'\\)"),
        ({"dim": 64}, "dim=32 but this job writes dim=64"),
        ({"dtype": "int8"}, "dtype='float16' but this job writes dtype='int8'"),
        ({"shard_names": NAMES[:2]}, "3 shards in the store, 2 in this job"),
        ({"shard_names": [*NAMES[:2], "other"]}, "shard 2 is 'cap-00002' in the store and 'other'"),
    ],
)
def test_refuses_a_store_of_another_encoder_dim_dtype_or_shards(tmp_path, change, message):
    write_store(tmp_path / "s")
    with pytest.raises(LiftError, match=message):
        new_writer(tmp_path / "s", **change)


def test_refuses_a_folder_that_is_not_a_store(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(LiftError, match="not empty and is not a lift embedding store"):
        new_writer(tmp_path / "photos")
    with pytest.raises(LiftError, match="not a lift embedding store"):
        open_store(tmp_path / "photos")
    with pytest.raises(LiftError, match="no such store folder"):
        open_store(tmp_path / "absent")


def test_duplicate_keys_are_refused_naming_the_key(tmp_path):
    w = new_writer(tmp_path / "s")
    with pytest.raises(LiftError, match="duplicate key 'k1'"):
        w.write_shard(0, ["k0", "k1", "k1"], unit_vectors(3, 32, 0))
    w.write_shard(0, ["k0", "k1"], unit_vectors(2, 32, 0))
    w.write_shard(1, ["k2"], unit_vectors(1, 32, 1))
    w.write_shard(2, ["k3", "k1"], unit_vectors(2, 32, 2))
    with pytest.raises(LiftError, match=r"duplicate key 'k1' in shard 0 .* row 1 and shard 2 .* row 1"):
        w.finalize()


@pytest.mark.parametrize(
    ("keys", "emb", "message"),
    [
        (["a", "b"], np.zeros((2, 16), np.float32), r"shape \(2, 16\), expected \(N, 32\)"),
        (["a"], np.zeros((2, 32), np.float32), "1 keys but 2 embeddings"),
        (["a", "b"], np.array([[0.0] * 32, [np.nan] * 32], np.float32), "key 'b' .row 1. is not finite"),
        (["a", ""], np.zeros((2, 32), np.float32), "row 1: key '' is not a non-empty string"),
        (["a", "\ud800"], np.zeros((2, 32), np.float32), "row 1: key .* is not valid unicode"),
    ],
)
def test_bad_shard_input_is_refused(tmp_path, keys, emb, message):
    w = new_writer(tmp_path / "s")
    with pytest.raises(LiftError, match=message):
        w.write_shard(0, keys, emb)
    assert not w.is_done(0)
    with pytest.raises(LiftError, match="out of range"):
        w.write_shard(3, ["a"], np.zeros((1, 32), np.float32))


# ---- integrity -------------------------------------------------------------------------------------


def test_verify_names_the_corrupted_shard(tmp_path):
    root = tmp_path / "s"
    write_store(root)
    assert open_store(root).verify() == []
    emb = root / "shards" / "00002.emb"
    raw = bytearray(emb.read_bytes())
    raw[100] ^= 0x40
    emb.write_bytes(bytes(raw))
    problems = open_store(root).verify()
    assert problems == ["shard 2 (cap-00002): 00002.emb checksum mismatch (the file is corrupted)"]


def test_open_refuses_truncated_files_and_damaged_or_unknown_manifests(tmp_path):
    root = tmp_path / "s"
    write_store(root)
    manifest = json.loads((root / "manifest.json").read_text())

    keys = root / "shards" / "00000.keys"
    keys.write_bytes(keys.read_bytes()[:-1])
    with pytest.raises(StoreDamaged, match=r"shard 0 \(cap-00000\): 00000.keys has \d+ bytes, expected"):
        open_store(root)

    (root / "manifest.json").write_text(json.dumps(manifest | {"rows": 7}))
    with pytest.raises(StoreDamaged, match="manifest is damaged"):
        open_store(root)

    from lift.store.format import manifest_checksum

    future = manifest | {"version": 99}
    future["manifest_checksum"] = manifest_checksum(future)
    (root / "manifest.json").write_text(json.dumps(future))
    with pytest.raises(LiftError, match="version 99 is not supported"):
        open_store(root)


def test_bucketed_index_build_equals_the_in_memory_one(tmp_path):
    write_store(tmp_path / "one")
    w, data = write_store(tmp_path / "many", finalize=False)
    w.finalize(max_sort_rows=8)  # 97 keys in 16 hash buckets
    assert snapshot(tmp_path / "many") == snapshot(tmp_path / "one")
    store = open_store(tmp_path / "many")
    np.testing.assert_array_equal(store.get_many(list(data)), np.stack([store[k] for k in data]))


# ---- command line and benchmark ---------------------------------------------------------------------


def test_cli_info_and_verify(tmp_path, capsys):
    root = tmp_path / "s"
    write_store(root, dtype="int8")
    assert lift_main(["store", "info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "97 in 3 shards (3 input rows skipped, 0 truncated)" in out
    assert "32-d int8" in out and "pooling=mean" in out
    assert lift_main(["store", "info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 97 and info["bytes"] == sum(
        p.stat().st_size for p in root.rglob("*") if p.is_file()
    )

    assert lift_main(["store", "verify", str(root)]) == 0
    assert "ok (97 rows in 3 shards" in capsys.readouterr().out
    scale = root / "shards" / "00000.scale"
    scale.write_bytes(b"\xff" + scale.read_bytes()[1:])
    assert lift_main(["store", "verify", str(root)]) == 1
    assert "DAMAGED: shard 0 (cap-00000): 00000.scale checksum mismatch" in capsys.readouterr().out
    os.truncate(scale, 3)
    assert lift_main(["store", "verify", str(root)]) == 1
    assert "00000.scale has 3 bytes" in capsys.readouterr().out
    assert lift_main(["store", "info", str(tmp_path / "absent")]) == 2


def test_bench_store_runs_small_and_reports_every_field():
    from lift.bench import store as bench

    args = argparse.Namespace(rows=1200, dim=64, dtype="int8", shard_rows=500, lookups=20, seed=0)
    result = bench.run(args)
    for field in (
        "ours_random_per_s",
        "parquet_random_per_s",
        "random_speedup",
        "ours_seq_per_s",
        "parquet_seq_per_s",
        "seq_speedup",
        "bytes_ratio",
        "int8_min_cosine",
    ):
        assert result[field] > 0, field
    assert result["int8_min_cosine"] >= 0.99 and result["bytes_ratio"] < 1
