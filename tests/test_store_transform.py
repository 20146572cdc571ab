"""Issue 17 item 1: `lift store transform` (centre, whiten, PCA, truncate, re-quantise), checked against
numpy on small random stores of one and two views; chains, info, verify, kill -9, torchrun, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lift.cli import main
from lift.errors import LiftError
from lift.store import StoreDamaged, StoreWriter, open_store
from lift.store.fit import sample_rows
from lift.store.transform import StoreTransform, load_step

IDENTITY = {"model": "tiny-encoder", "weights_sha256": "abc123", "pooling": "mean", "max_tokens": 77}
DIM = 16
ROWS = (120, 0, 180)  # an empty shard too
SCALES = np.geomspace(3.0, 0.05, DIM)  # distinct variances: principal axes are well defined


def shard_vectors(i: int, n: int, views: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(50 + i)
    basis = np.linalg.qr(np.random.default_rng(9).standard_normal((dim, dim)))[0]  # axes off the coordinates
    x = (rng.standard_normal((n, views, dim)) * SCALES[:dim]) @ basis.T + np.linspace(-1, 2, dim)
    return x.astype(np.float32)


def write_source(
    root: Path, *, views: int = 1, dtype: str = "float32", rows=ROWS, make=shard_vectors
) -> np.ndarray:
    """A store of random anisotropic vectors; returns them in store order, (N, V, dim) float32."""
    names = [f"cap-{i:05d}" for i in range(len(rows))]
    view_names = ["org_caption", "re_caption"][:views] if views > 1 else ["caption"]
    w = StoreWriter(root, identity=IDENTITY, dim=DIM, dtype=dtype, shard_names=names, views=view_names)
    parts = []
    for i, n in enumerate(rows):
        x = make(i, n, views)
        with np.errstate(over="ignore"):  # a value float16 cannot hold is stored as inf, on purpose
            w.write_shard(i, [f"{i:02d}-{j:05d}" for j in range(n)], x, skipped=i)
        parts.append(x)
    w.finalize()
    return np.concatenate(parts)


def vectors(path: Path) -> np.ndarray:
    """Every vector of a store in store order, (N, V, dim) float32."""
    s = open_store(path)
    parts = [x.reshape(len(k), s.num_views, s.dim) for i in range(s.num_shards) for k, x in s.iter_shard(i)]
    return np.concatenate(parts) if parts else np.empty((0, s.num_views, s.dim), np.float32)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def transform(src: Path, out: Path, *flags: str) -> None:
    rc = main(["store", "transform", str(src), "--out", str(out), "--no-progress", *flags])
    assert rc == 0


def pooled(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1]).astype(np.float64)


def fixed_sign(v: np.ndarray) -> np.ndarray:
    """Columns of v with their largest-magnitude component positive (the rule the fit uses)."""
    big = np.argmax(np.abs(v), axis=0)
    return v * np.where(v[big, np.arange(v.shape[1])] < 0, -1.0, 1.0)


@pytest.fixture(params=[1, 2], ids=["one-view", "two-views"])
def source(request, tmp_path) -> tuple[Path, np.ndarray]:
    root = tmp_path / "src"
    return root, write_source(root, views=request.param)


# ---- against numpy -----------------------------------------------------------------------------------


def test_pca_equals_an_svd_of_the_fit_sample(source, tmp_path):
    src, x = source
    transform(src, tmp_path / "pca", "--pca", "6")
    t = open_store(tmp_path / "pca").transform
    xs = pooled(x)  # every row in the sample (fit rows >= rows), every view one vector
    mean = xs.mean(axis=0)
    _, s, vt = np.linalg.svd(xs - mean, full_matrices=False)
    want = fixed_sign(vt[:6].T)
    np.testing.assert_allclose(t.matrix, want, atol=1e-9)
    np.testing.assert_allclose(np.abs(t.matrix), np.abs(vt[:6].T), atol=1e-9)  # up to sign, whatever the rule
    np.testing.assert_allclose(t.bias, -mean @ want, atol=1e-9)
    (op,) = t.chain
    assert op["op"] == "pca" and op["k"] == 6 and op["fit_rows"] == sum(ROWS) and op["seed"] == 0
    assert op["explained_variance"] == pytest.approx((s[:6] ** 2).sum() / (s**2).sum(), rel=1e-9)
    assert (
        op["fit_vectors"] == len(xs)
        and op["source_manifest_checksum"] == open_store(src).manifest["manifest_checksum"]
    )
    np.testing.assert_allclose(vectors(tmp_path / "pca"), (x - mean) @ want, atol=1e-4)


def test_a_smaller_fit_sample_is_the_seeded_sample(tmp_path):
    src = tmp_path / "src"
    x = write_source(src)
    transform(src, tmp_path / "pca", "--pca", "4", "--fit-rows", "70", "--seed", "3")
    rows = sample_rows(len(x), fit_rows=70, seed=3)
    assert len(rows) == 70 and len(set(rows.tolist())) == 70 and not np.array_equal(rows, np.arange(70))
    xs = pooled(x[rows])
    _, _, vt = np.linalg.svd(xs - xs.mean(axis=0), full_matrices=False)
    t = open_store(tmp_path / "pca").transform
    np.testing.assert_allclose(t.matrix, fixed_sign(vt[:4].T), atol=1e-9)
    assert t.chain[0]["fit_rows"] == 70 and t.chain[0]["seed"] == 3 and t.chain[0]["fit_rows_requested"] == 70


@pytest.mark.parametrize(
    "flags,k", [(["--whiten"], DIM), (["--whiten", "--pca", "5"], 5)], ids=["zca", "pca-whiten"]
)
def test_whitening_gives_identity_covariance_on_the_fit_sample(source, tmp_path, flags, k):
    src, x = source
    transform(src, tmp_path / "w", *flags)
    y = pooled(vectors(tmp_path / "w"))
    assert y.shape[1] == k
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(k), atol=1e-5)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    t = open_store(tmp_path / "w").transform
    if k == DIM:  # ZCA keeps the axes: a symmetric matrix, the one of numpy's eigh
        xs = pooled(x)
        w, v = np.linalg.eigh(np.cov(xs.T, bias=True))
        np.testing.assert_allclose(t.matrix, (v / np.sqrt(w)) @ v.T, atol=1e-8)
        assert t.chain[0]["op"] == "zca" and t.chain[0]["regularised"] == 0
    else:
        assert t.chain[0] | {"whiten": True} == t.chain[0] and t.identity["chain"] == ["pca 5 whitened"]


def test_a_singular_covariance_is_regularised_and_said(tmp_path, capsys):
    def flat(i, n, views):  # the last 3 coordinates are constant: a singular covariance
        x = shard_vectors(i, n, views)
        x[..., -3:] = 0.5
        return x

    write_source(tmp_path / "src", make=flat)
    assert main(["store", "transform", str(tmp_path / "src"), "--out", str(tmp_path / "w"), "--whiten"]) == 0
    out = capsys.readouterr().out
    assert "note: 3 covariance eigenvalue(s) were below 1e-06 x the largest" in out, out
    t = open_store(tmp_path / "w").transform
    assert t.chain[0]["regularised"] == 3
    y = pooled(vectors(tmp_path / "w"))
    assert np.isfinite(y).all()
    cov = np.cov(y.T, bias=True)
    assert np.linalg.matrix_rank(cov, tol=1e-3) == DIM - 3 and np.allclose(
        np.sort(np.linalg.eigvalsh(cov))[3:], 1, atol=1e-4
    )


@pytest.mark.parametrize("center", [False, True])
def test_truncation_is_a_slice_after_optional_centring(source, tmp_path, center):
    src, x = source
    transform(src, tmp_path / "t", "--truncate", "5", *(["--center"] if center else []))
    y = vectors(tmp_path / "t")
    mean = pooled(x).mean(axis=0) if center else np.zeros(DIM)
    if center:
        np.testing.assert_allclose(y, x[..., :5] - mean[:5], atol=1e-5)
    else:
        np.testing.assert_array_equal(y, x[..., :5])  # exact
    t = open_store(tmp_path / "t").transform
    assert [op["op"] for op in t.chain] == (["center", "truncate"] if center else ["truncate"])
    np.testing.assert_array_equal(t.matrix, np.eye(DIM)[:, :5])


def test_centring_subtracts_the_sample_mean(source, tmp_path):
    src, x = source
    transform(src, tmp_path / "c", "--center")
    mean = pooled(x).mean(axis=0)
    t = open_store(tmp_path / "c").transform
    np.testing.assert_allclose(t.bias, -mean, atol=1e-12)
    np.testing.assert_allclose(vectors(tmp_path / "c"), x - mean, atol=1e-5)


def test_a_chain_is_one_composed_map_equal_to_the_sequence(source, tmp_path):
    src, x = source
    transform(src, tmp_path / "a", "--pca", "8")
    transform(tmp_path / "a", tmp_path / "b", "--whiten")
    a, b = open_store(tmp_path / "a"), open_store(tmp_path / "b")
    # the second fit, by numpy, on the first store's vectors
    ya = pooled(vectors(tmp_path / "a"))
    w, v = np.linalg.eigh(np.cov(ya.T, bias=True))
    zca = (v / np.sqrt(w)) @ v.T
    step = StoreTransform(zca, -ya.mean(axis=0) @ zca)
    t = b.transform
    assert [op["op"] for op in t.chain] == ["pca", "zca"] and t.identity["chain"] == ["pca 8", "zca-whiten"]
    assert t.in_dim == DIM and t.out_dim == 8 and b.dim == 8
    np.testing.assert_allclose(t.matrix, a.transform.matrix @ zca, atol=1e-8)
    np.testing.assert_allclose(t.apply(x), step.apply(a.transform.apply(x)), atol=1e-4)  # raw -> b in one map
    np.testing.assert_allclose(vectors(tmp_path / "b"), t.apply(x), atol=1e-4)
    assert t.chain[0] == a.transform.chain[0]  # the first op as the first store recorded it
    assert load_step(tmp_path / "b" / "transform.safetensors").chain == t.chain[1:]
    assert b.identity == IDENTITY and b.manifest["extra"]["source_store"] == os.path.abspath(tmp_path / "a")

    # a dtype change of a transformed store keeps its transform (and identity)
    transform(tmp_path / "b", tmp_path / "c", "--dtype", "int8")
    c = open_store(tmp_path / "c")
    assert c.transform == b.transform and c.transform.identity == b.transform.identity and c.dtype == "int8"


@pytest.mark.parametrize(
    "dtype,atol", [("float32", 1e-5), ("float16", 5e-3), ("bfloat16", 4e-2), ("int8", 3e-2)]
)
def test_the_output_store_holds_transform_apply_of_the_input(tmp_path, dtype, atol):
    src = tmp_path / "src"
    x = write_source(src, views=2)
    transform(src, tmp_path / "o", "--pca", "7", "--dtype", dtype)
    out = open_store(tmp_path / "o")
    assert (
        out.dtype == dtype
        and out.views == ["org_caption", "re_caption"]
        and out.shard_names == open_store(src).shard_names
    )
    assert list(out.keys()) == list(open_store(src).keys()) and out.manifest["skipped"] == 0 + 1 + 2
    y = out.transform.apply(x)
    assert y.dtype == np.float32 and y.shape == (len(x), 2, 7)
    np.testing.assert_allclose(vectors(tmp_path / "o"), y, atol=atol * np.abs(y).max())


def test_a_dtype_change_alone_keeps_the_store_untransformed(tmp_path):
    src = tmp_path / "src"
    x = write_source(src)
    transform(src, tmp_path / "q", "--dtype", "float16")
    q = open_store(tmp_path / "q")
    assert q.transform is None and q.dtype == "float16" and q.manifest["version"] == 1
    np.testing.assert_array_equal(vectors(tmp_path / "q"), x.astype(np.float16).astype(np.float32))


# ---- info, verify --------------------------------------------------------------------------------------


def test_info_shows_the_chain_and_verify_passes_then_catches_a_damaged_transform(tmp_path, capsys):
    src = tmp_path / "src"
    write_source(src, views=2)
    transform(src, tmp_path / "a", "--pca", "8", "--dtype", "float16")
    transform(tmp_path / "a", tmp_path / "b", "--truncate", "4", "--center", "--dtype", "int8")
    capsys.readouterr()
    assert main(["store", "info", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "transform  16-d encoder output -> 4-d stored vectors, 3 op(s)" in out, out
    assert "1. pca 8, explained variance" in out and "2. center, fit on 300 rows (600 vectors), seed 0" in out
    assert "3. truncate 4" in out and "(16 bytes per row)" in out  # 2 views x (4 int8 + a float32 scale)
    assert main(["store", "info", str(tmp_path / "b"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["transform"]["chain"] == ["pca 8", "center", "truncate 4"] and info["bytes_per_row"] == 16
    assert [op["op"] for op in info["transform"]["ops"]] == ["pca", "center", "truncate"]
    assert info["transform"]["in_dim"] == 16 and info["transform"]["out_dim"] == 4

    assert main(["store", "verify", str(tmp_path / "b")]) == 0
    path = tmp_path / "b" / "transform.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # one bit of a value
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["store", "verify", str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED: transform: transform.safetensors checksum mismatch" in out, out
    with pytest.raises(StoreDamaged, match="transform.safetensors: checksum mismatch"):
        _ = open_store(tmp_path / "b").transform
    path.write_bytes(bytes(data[:-8]))  # truncated: refused on open
    with pytest.raises(StoreDamaged, match="transform.safetensors has"):
        open_store(tmp_path / "b")


def test_transform_file_round_trip_and_identity(tmp_path):
    rng = np.random.default_rng(0)
    t = StoreTransform(
        rng.standard_normal((5, 3)), rng.standard_normal(3), [{"op": "pca", "k": 3, "source_store": "/a"}]
    )
    t.save(tmp_path / "t.safetensors")
    back = StoreTransform.load(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(back.matrix, t.matrix)
    assert back.chain == t.chain and back.identity == t.identity and json.dumps(t.identity)
    moved = StoreTransform(t.matrix, t.bias, [{"op": "pca", "k": 3, "source_store": "/b"}])
    assert moved.identity == t.identity  # provenance is not identity
    m = t.matrix.copy()
    m[0, 0] = np.nextafter(m[0, 0], np.inf)
    nudged = StoreTransform(m, t.bias, t.chain)
    assert nudged.identity["sha256"] != t.identity["sha256"]  # the exact bytes are
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    assert t.apply(x).shape == (2, 4, 3) and t.apply(x).dtype == np.float32
    with pytest.raises(LiftError, match="maps 5-d vectors"):
        t.apply(np.zeros((2, 4)))
    with pytest.raises(LiftError, match="cannot chain"):
        t.then(t)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(LiftError, match="not a readable store transform"):
        StoreTransform.load(tmp_path / "bad.safetensors")


# ---- resume, kill -9, torchrun ------------------------------------------------------------------------------


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from lift.cli import main
    from lift.store.transform import StoreTransform
    from lift.store.writer import StoreWriter
    where = {where!r}
    if where == "after_transform":  # kill -9 once the transform is saved, before the store's header
        real_save = StoreTransform.save
        def save(self, *a, **k):
            real_save(self, *a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        StoreTransform.save = save
    else:  # a slow job: the test kills it once the first shard's sidecar is there
        real_write = StoreWriter.write_shard
        def write_shard(self, *a, **k):
            real_write(self, *a, **k)
            time.sleep(60)
        StoreWriter.write_shard = write_shard
    sys.exit(main({argv!r}))
    """
)


@pytest.mark.parametrize("where", ["after_transform", "after_first_shard"])
def test_kill_9_mid_transform_then_rerun_is_byte_identical(tmp_path, where):
    src = tmp_path / "src"
    write_source(src, views=2, rows=(40, 0, 60, 50))
    flags = ["--pca", "6", "--whiten", "--dtype", "int8", "--fit-rows", "90", "--seed", "5", "--no-progress"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    transform(src, clean, *flags)
    argv = ["store", "transform", str(src), "--out", str(killed), *flags]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(where=where, argv=argv)], env=env)
    try:
        if where == "after_first_shard":
            deadline = time.monotonic() + 60
            while (
                not list((killed / "shards").glob("*.json"))
                and time.monotonic() < deadline
                and proc.poll() is None
            ):
                time.sleep(0.02)
            assert list((killed / "shards").glob("*.json")), "the first shard never appeared"
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (killed / "transform.safetensors").exists() and not (killed / "manifest.json").exists()
    transform(src, killed, *flags)  # the same command again
    assert snapshot(killed) == snapshot(clean)


def test_a_rerun_reuses_the_saved_transform_and_skips_finished_shards(tmp_path, capsys, monkeypatch):
    src = tmp_path / "src"
    write_source(src)
    transform(src, tmp_path / "o", "--pca", "4")
    before = snapshot(tmp_path / "o")
    import lift.store.transform_job as job

    def no_fit(*a, **k):
        raise AssertionError("fitted again")

    monkeypatch.setattr(job, "fit_step", no_fit)
    capsys.readouterr()
    transform(
        src, tmp_path / "o", "--pca", "4", "--seed", "0", "--fit-rows", "100000"
    )  # the defaults, spelt out
    assert "3 shard(s) already done, the saved transform reused" in capsys.readouterr().out
    assert snapshot(tmp_path / "o") == before


def test_a_removed_transform_is_fitted_again_only_when_it_is_the_same(tmp_path, capsys):
    src = tmp_path / "src"
    write_source(src, views=2)
    transform(src, tmp_path / "o", "--whiten", "--fit-rows", "100")
    before = snapshot(tmp_path / "o")
    (
        tmp_path / "o" / "transform.safetensors"
    ).unlink()  # e.g. removed after `lift store verify` found it damaged
    err = _refused(
        capsys, [str(src), "--out", str(tmp_path / "o"), "--whiten", "--fit-rows", "100", "--seed", "1"]
    )
    assert "the store was begun with transform zca-whiten (its transform.safetensors is gone)" in err, err
    assert not (tmp_path / "o" / "transform.safetensors").exists()
    transform(src, tmp_path / "o", "--whiten", "--fit-rows", "100")
    assert snapshot(tmp_path / "o") == before


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--pca", "3"], "operations pca 4 then, pca 3 now"),
        (["--pca", "4", "--seed", "1"], "--seed 0 then, 1 now"),
        (["--pca", "4", "--fit-rows", "50"], "--fit-rows 100000 then, 50 now"),
        (["--pca", "4", "--dtype", "int8"], "--dtype float32 then, int8 now"),
        (["--pca", "4", "--whiten"], "--whiten False then, True now"),
        (["--whiten"], "operations pca 4 then, zca-whiten now"),
        (["--dtype", "float16"], "operations pca 4 then, none now"),
    ],
)
def test_a_rerun_with_other_options_is_refused_naming_what_differs(tmp_path, capsys, flags, message):
    src = tmp_path / "src"
    write_source(src)
    transform(src, tmp_path / "o", "--pca", "4")
    before = snapshot(tmp_path / "o")
    capsys.readouterr()
    assert main(["store", "transform", str(src), "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err
    assert (
        message in err
        and "holds a store transform of another job" in err
        and len(err.strip().splitlines()) == 1
    ), err
    assert snapshot(tmp_path / "o") == before


def test_a_rerun_after_the_input_store_changed_is_refused(tmp_path, capsys):
    src = tmp_path / "src"
    write_source(src)
    transform(src, tmp_path / "o", "--truncate", "4")
    write_source(tmp_path / "src2", make=lambda i, n, v: shard_vectors(i, n, v) + 1)
    os.rename(src, tmp_path / "old")
    os.rename(tmp_path / "src2", src)
    capsys.readouterr()
    assert main(["store", "transform", str(src), "--out", str(tmp_path / "o"), "--truncate", "4"]) == 2
    assert f"the input store {src} changed since" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_ranks_write_their_shards_and_equal_one_process(tmp_path):
    pytest.importorskip("torch.distributed")
    src = tmp_path / "src"
    write_source(src, views=2, rows=(30, 20, 0, 25))
    flags = ["--pca", "5", "--dtype", "float16", "--no-progress"]
    transform(src, tmp_path / "one", *flags)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "PYTHONPATH": os.pathsep.join(sys.path), "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
        argv = ["-m", "lift", "store", "transform", str(src), "--out", str(tmp_path / "two"), *flags]
        procs.append(
            subprocess.Popen(
                [sys.executable, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "lift store transform: 75 rows" in outs[0][0] and outs[1][0] == ""  # rank 0 reports
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one")


# ---- bad input: one line, exit 2, nothing written ------------------------------------------------------------


def _refused(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(["store", "transform", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lift store: error: "), err
    return err


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--pca", "17"], "--pca 17: larger than the store's dim 16; choose 1..16"),
        (["--pca", "0"], "--pca must be an integer >= 1, got 0"),
        (["--truncate", "20"], "--truncate 20: larger than the store's dim 16"),
        (["--truncate", "-1"], "--truncate must be an integer >= 1"),
        (
            ["--whiten", "--fit-rows", "10"],
            "needs at least 17 vectors (17 rows) to whiten 16-d vectors (--whiten); --fit-rows 10 gives 10",
        ),
        (
            ["--pca", "8", "--whiten", "--fit-rows", "5"],
            "needs at least 9 vectors (9 rows) to find 8 principal axes",
        ),
        (
            ["--dtype", "float8"],
            "--dtype 'float8': unknown store dtype; choose one of bfloat16, float16, float32, int8",
        ),
        (["--pca", "4", "--truncate", "2"], "--pca and --truncate together"),
        (["--whiten", "--truncate", "2"], "--whiten and --truncate together"),
        (["--center", "--whiten-eps", "0.01"], "--whiten-eps applies only with --whiten"),
        (["--whiten", "--whiten-eps", "0"], "--whiten-eps must be a number > 0 and < 1"),
        (["--whiten", "--whiten-eps", "nan"], "--whiten-eps must be a number > 0 and < 1"),
        (["--truncate", "4", "--fit-rows", "100"], "--fit-rows applies only when a transform is fitted"),
        (["--truncate", "4", "--seed", "0"], "--seed applies only when a transform is fitted"),
        (["--center", "--fit-rows", "0"], "--fit-rows must be an integer >= 1, got 0"),
        ([], "nothing to do"),
        (["--dtype", "float32"], "nothing to do"),
    ],
)
def test_bad_flags_are_one_line_before_any_work(tmp_path, capsys, flags, message):
    src = tmp_path / "src"
    write_source(src)
    err = _refused(capsys, [str(src), "--out", str(tmp_path / "o"), *flags])
    assert message in err, err
    assert not (tmp_path / "o").exists()


def test_a_small_multi_view_fit_sample_says_how_many_rows_are_needed(tmp_path, capsys):
    write_source(tmp_path / "src", views=2)
    err = _refused(
        capsys, [str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--whiten", "--fit-rows", "6"]
    )
    assert (
        "needs at least 17 vectors (9 rows of 2 views)" in err
        and "--fit-rows 6 gives 12; raise --fit-rows" in err
    )
    write_source(tmp_path / "tiny", rows=(5,))
    err = _refused(capsys, [str(tmp_path / "tiny"), "--out", str(tmp_path / "o"), "--whiten"])
    assert "the store has only 5 rows (5 vectors)" in err


def _with_an_inf(i, n, views):  # float16 cannot hold 1e6: the stored vector is inf
    x = shard_vectors(i, n, views)
    if i == 2:
        x[7, views - 1, 3] = 1e6
    return x


def test_nan_or_inf_rows_are_named_or_left_out_and_counted(tmp_path, capsys):
    src = tmp_path / "src"
    x = write_source(src, views=2, dtype="float16", make=_with_an_inf)
    err = _refused(capsys, [str(src), "--out", str(tmp_path / "o"), "--center"])
    assert "shard 2 (cap-00002) row 7: the vector of key '02-00007' view 're_caption' is NaN or inf" in err, (
        err
    )
    assert (
        "--on-error skip" in err and not (tmp_path / "o").exists()
    )  # found in the fit sample: nothing written
    # nothing fitted: found when its shard comes (the shards before it are written, and kept for the rerun)
    err = _refused(capsys, [str(src), "--out", str(tmp_path / "t"), "--truncate", "3"])
    assert "key '02-00007'" in err

    capsys.readouterr()
    argv = ["store", "transform", str(src), "--out", str(tmp_path / "o"), "--center", "--on-error", "skip"]
    assert main([*argv, "--dtype", "float32", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "left out: 1 row(s) holding NaN or inf" in out, out
    o = open_store(tmp_path / "o")
    assert len(o) == sum(ROWS) - 1 and "02-00007" not in o and o.manifest["skipped"] == 0 + 1 + 2 + 1
    assert o.transform.chain[0]["fit_rows"] == sum(ROWS) - 1 and o.transform.chain[0]["fit_skipped"] == 1
    with np.errstate(over="ignore"):
        finite = np.delete(x.astype(np.float16).astype(np.float32), ROWS[0] + ROWS[1] + 7, axis=0)
    np.testing.assert_allclose(vectors(tmp_path / "o"), finite - pooled(finite).mean(axis=0), atol=1e-5)


def test_output_folders_that_would_touch_the_input_or_others_files_are_refused(tmp_path, capsys):
    src = tmp_path / "src"
    write_source(src)
    before = snapshot(tmp_path)
    assert "is the input store" in _refused(capsys, [str(src), "--out", str(src), "--center"])
    assert "lies inside the input store" in _refused(
        capsys, [str(src), "--out", str(src / "sub"), "--center"]
    )
    assert "holds the input store" in _refused(capsys, [str(src), "--out", str(tmp_path), "--center"])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    err = _refused(capsys, [str(src), "--out", str(tmp_path / "notes"), "--center"])
    assert "is not empty and is not a transform of" in err
    (tmp_path / "file").write_text("x")
    assert "is an existing file" in _refused(capsys, [str(src), "--out", str(tmp_path / "file"), "--center"])
    assert snapshot(tmp_path) == {**before, "notes/a.txt": b"mine", "file": b"x"}
    write_source(tmp_path / "other")  # another store (as `lift embed` writes it) is not this job's output
    err = _refused(capsys, [str(src), "--out", str(tmp_path / "other"), "--center"])
    assert "operations none then, center now" in err, err
