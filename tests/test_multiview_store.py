"""Issue 16 item 2, the store side: several named views (caption fields) per key, written by `lift embed
--caption-field a,b`, read back per key, per batch and per shard; old one-view stores still read."""

from __future__ import annotations

import csv
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
from lift.data.captions import CAPTION_SOURCES, Captions, ViewCaptions, read_captions, source_for
from lift.embed import embed_captions
from lift.errors import ErrorPolicy, LiftError
from lift.registry import Registry
from lift.store import STORE_DTYPES, StoreDamaged, StoreWriter, open_store
from lift.store import codecs as codecs_module
from lift.store.codecs import CODECS, Codec, get_codec
from lift.store.format import manifest_checksum
from lift.text import TextEncoder
from train_fixtures import write_tar

IDENTITY = {"model": "tiny-encoder", "weights_sha256": "abc123", "pooling": "mean", "max_tokens": 77}
VIEWS = ["short", "long", "prompt"]
ROWS = (13, 0, 21)  # an empty shard too: every row of an input file can be skipped


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lift-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocesses, so stores are bit-identical
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def enc() -> TextEncoder:
    return TextEncoder.from_pretrained("default")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def shard_data(i: int, rows: int, dim: int, views: int) -> tuple[list[str], np.ndarray]:
    keys = [f"{i:02d}{j:05d}" if j % 4 else f"bild-{i}-{j}-é" for j in range(rows)]
    x = np.random.default_rng(7 + i).standard_normal((rows, views, dim)).astype(np.float32)
    x[:, :, 0] *= 4  # rows of different ranges: per-physical-row int8 scales differ
    return keys, x


def write_views_store(root: Path, *, dtype: str, dim: int = 24, views=VIEWS, rows=ROWS, **kw):
    names = [f"cap-{i:05d}" for i in range(len(rows))]
    w = StoreWriter(root, identity=IDENTITY, dim=dim, dtype=dtype, shard_names=names, views=views, **kw)
    data: dict[str, np.ndarray] = {}
    for i, n in enumerate(rows):
        keys, x = shard_data(i, n, dim, len(views))
        w.write_shard(i, keys, x if len(views) > 1 else x[:, 0], skipped=i)
        data.update(zip(keys, x))
    w.finalize()
    return data


def numpy_reference(x: np.ndarray, dtype: str) -> np.ndarray:
    """What a store of `dtype` gives back for float32 `x` [..., dim], computed with numpy (torch for
    bfloat16 rounding), independently of lift's codecs."""
    if dtype == "float32":
        return x
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(x)).to(torch.bfloat16).float().numpy()
    scale = np.abs(x).max(-1, keepdims=True).astype(np.float32) / np.float32(127)
    codes = np.clip(np.rint(x / np.where(scale > 0, scale, 1)), -127, 127)
    return (codes * scale).astype(np.float32)


# ---- the reader API ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", STORE_DTYPES)
def test_multi_view_round_trip_every_codec(tmp_path, dtype):
    dim, root = 24, tmp_path / "s"
    data = write_views_store(root, dtype=dtype, dim=dim)
    store = open_store(root)
    keys = list(data)
    want = numpy_reference(np.stack([data[k] for k in keys]), dtype)  # [N, V, dim]
    tol = {"atol": 1e-6, "rtol": 1e-6}

    assert store.views == VIEWS and store.num_views == 3 and len(store) == sum(ROWS)
    assert [store.view_index(v) for v in VIEWS] == [0, 1, 2] and store.view_index(2) == 2
    for key, w in zip(keys, want):
        got = store[key]
        assert got.shape == (3, dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, w, **tol)
    np.testing.assert_allclose(store.get(2, 4), want[ROWS[0] + 4], **tol)

    order = np.random.default_rng(0).permutation(len(keys)).tolist() + [0, 0]  # shuffled, repeated
    picked = [keys[j] for j in order]
    assert store.get_many(picked).shape == (len(order), 3, dim)
    np.testing.assert_allclose(store.get_many(picked), want[order], **tol)
    for v, name in enumerate(VIEWS):
        np.testing.assert_allclose(store.get_many(picked, view=name), want[order, v], **tol)
        np.testing.assert_array_equal(store.get_many(picked, view=v), store.get_many(picked, view=name))

    batches = list(store.iter_shard(2, batch_size=8))
    assert [b.shape for _, b in batches] == [(8, 3, dim), (8, 3, dim), (5, 3, dim)]
    assert sum((k for k, _ in batches), []) == keys[ROWS[0] :]
    np.testing.assert_allclose(np.concatenate([b for _, b in batches]), want[ROWS[0] :], **tol)
    long = np.concatenate([b for _, b in store.iter_shard(0, batch_size=5, view="long")])
    assert long.shape == (ROWS[0], dim)
    np.testing.assert_allclose(long, want[: ROWS[0], 1], **tol)
    assert list(store.iter_shard(1)) == [] and list(store.iter_shard(1, view="prompt")) == []

    # on disk: fixed stride (rows * V, dim), view v of row r at physical row r * V + v
    codec = get_codec(dtype)
    raw = np.memmap(root / "shards" / "00002.emb", dtype=codec.storage, mode="r")
    assert raw.size == ROWS[2] * 3 * dim
    raw = raw.reshape(ROWS[2] * 3, dim)
    scale = np.fromfile(root / "shards" / "00002.scale", "<f4") if codec.has_scale else None
    r, v = 6, 2
    phys = codec.decode(raw[r * 3 + v], None if scale is None else scale[r * 3 + v])
    np.testing.assert_allclose(phys, want[ROWS[0] + r, v], **tol)
    assert open_store(root).verify() == []


def test_views_are_recorded_everywhere_and_unknown_views_are_refused(tmp_path):
    root = tmp_path / "s"
    write_views_store(root, dtype="float16")
    header = json.loads((root / "store.json").read_text())
    manifest = json.loads((root / "manifest.json").read_text())
    side = json.loads((root / "shards" / "00000.json").read_text())
    assert header["views"] == manifest["views"] == side["views"] == VIEWS
    assert header["version"] == manifest["version"] == side["version"] == 2  # an older lift refuses it
    store = open_store(root)
    for bad in ("medium", 3, -1):
        with pytest.raises(LiftError, match="short, long, prompt") as e:
            store.get_many(store.shard_keys(0)[:2], view=bad)
        assert "\n" not in str(e.value)
    with pytest.raises(LiftError, match="no view 'medium'; the store's views: short, long, prompt"):
        store.view_index("medium")
    with pytest.raises(LiftError, match="no view 'medium'"):
        store.iter_shard(0, view="medium")
    with pytest.raises(LiftError, match=r"expected \(N, 3, 24\) \(3 views: short, long, prompt\)"):
        StoreWriter(tmp_path / "t", identity=IDENTITY, dim=24, shard_names=["a"], views=VIEWS).write_shard(
            0, ["k"], np.zeros((1, 24), np.float32)
        )
    with pytest.raises(LiftError, match="view 'a' is named twice"):
        StoreWriter(tmp_path / "u", identity=IDENTITY, dim=24, shard_names=["a"], views=["a", "a"])


def test_one_view_store_reads_as_before_and_stays_version_1(tmp_path):
    data = write_views_store(tmp_path / "s", dtype="float32", views=["caption"])
    store = open_store(tmp_path / "s")
    keys = list(data)
    assert store.views == ["caption"] and store.num_views == 1
    assert (
        store.manifest["version"] == 1
        and json.loads((tmp_path / "s" / "store.json").read_text())["version"] == 1
    )
    assert store[keys[0]].shape == (24,) and store.get(0, 0).shape == (24,)
    want = np.stack([data[k][0] for k in keys])
    np.testing.assert_array_equal(store.get_many(keys), want)
    np.testing.assert_array_equal(store.get_many(keys, view="caption"), want)
    np.testing.assert_array_equal(np.concatenate([b for _, b in store.iter_shard(0, 4)]), want[: ROWS[0]])


def test_a_view_list_change_is_refused_by_the_writer(tmp_path):
    write_views_store(tmp_path / "s", dtype="float16")
    names = [f"cap-{i:05d}" for i in range(3)]
    with pytest.raises(LiftError, match=r"the store has views=\['short', 'long', 'prompt'\] but this job writes views=\['short', 'long'\]"):  # fmt: skip
        StoreWriter(tmp_path / "s", identity=IDENTITY, dim=24, shard_names=names, views=VIEWS[:2])


# ---- stores written before views existed -------------------------------------------------------------


def _strip_views(root: Path) -> None:
    """Rewrite a one-view store as lift wrote it before views existed: no "views" anywhere."""
    for path in [root / "store.json", *(root / "shards").glob("*.json")]:
        data = json.loads(path.read_text())
        data.pop("views")
        path.write_text(json.dumps(data))
    if (root / "manifest.json").exists():
        m = json.loads((root / "manifest.json").read_text())
        m.pop("views")
        m["manifest_checksum"] = manifest_checksum(m)
        (root / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize(
    ("extra", "sources", "view"),
    [
        ({"caption_field": "re_caption", "fmt": "auto"}, ["d/00000.parquet"], "re_caption"),
        ({"caption_field": None, "fmt": "auto"}, ["d/00000.tar"], "txt"),  # the source's default
        ({"caption_field": None, "fmt": "parquet"}, ["d/00000.data"], "caption"),
        ({}, [], "default"),
    ],
)
def test_a_version_1_store_without_views_opens_as_one_named_view(tmp_path, capsys, extra, sources, view):
    root = tmp_path / "old"
    data = write_views_store(root, dtype="int8", views=["x"], extra=extra, sources=sources)
    _strip_views(root)
    store = open_store(root)
    assert "views" not in store.manifest and store.manifest["version"] == 1
    assert store.views == [view] and store.view_index(view) == 0
    key = next(iter(data))
    assert store[key].shape == (24,)
    np.testing.assert_allclose(store[key], numpy_reference(data[key][0], "int8"), atol=1e-6)
    assert store.verify() == []
    assert main(["store", "verify", str(root)]) == 0
    assert main(["store", "info", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["views"] == [view]


def test_an_unfinished_store_begun_before_views_is_finished_in_its_own_layout(tmp_path):
    root, names = tmp_path / "old", ["a", "b"]
    w = StoreWriter(root, identity=IDENTITY, dim=8, shard_names=names, views=["caption"])
    w.write_shard(0, ["k0"], np.ones((1, 8), np.float32))
    _strip_views(root)  # the killed job of an older lift
    with pytest.raises(LiftError, match="begun by a lift without views"):
        StoreWriter(root, identity=IDENTITY, dim=8, shard_names=names, views=["caption", "long"])
    w = StoreWriter(root, identity=IDENTITY, dim=8, shard_names=names, views=["caption"])
    assert w.is_done(0) and not w.is_done(1)
    w.write_shard(1, ["k1"], np.zeros((1, 8), np.float32))
    w.finalize()
    store = open_store(root)
    assert "views" not in store.manifest and store.views == ["default"] and store.verify() == []


# ---- integrity ---------------------------------------------------------------------------------------


def test_verify_and_open_account_for_the_views(tmp_path, capsys):
    root = tmp_path / "s"
    write_views_store(root, dtype="int8")
    assert main(["store", "verify", str(root)]) == 0
    capsys.readouterr()
    emb = root / "shards" / "00002.emb"
    raw = bytearray(emb.read_bytes())
    raw[len(raw) - 5] ^= 0x21  # the last view of the last row
    emb.write_bytes(bytes(raw))
    assert main(["store", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED: shard 2 (cap-00002): 00002.emb checksum mismatch" in out

    # a one-view-sized .emb in a three-view store is damage, caught on open
    emb.write_bytes(bytes(raw[: len(raw) // 3]))
    with pytest.raises(StoreDamaged, match=r"00002.emb has \d+ bytes, expected 1512"):
        open_store(root)
    # a manifest whose views disagree with its version is refused
    m = json.loads((root / "manifest.json").read_text())
    m["views"] = ["short"]
    m["manifest_checksum"] = manifest_checksum(m)
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreDamaged, match="1 view.s. in a version-2 store"):
        open_store(root)


# ---- registries --------------------------------------------------------------------------------------


class Float64Codec(Codec):
    """float64 (a codec registered from outside lift)"""

    name = "float64"
    storage = np.dtype("<f8")


def test_store_dtypes_and_caption_formats_are_registries(tmp_path, monkeypatch, capsys):
    assert isinstance(CODECS, Registry) and CODECS.flag == "--store-dtype"
    assert set(STORE_DTYPES) == set(CODECS.names()) == {"float32", "float16", "bfloat16", "int8"}
    assert isinstance(CAPTION_SOURCES, Registry) and CAPTION_SOURCES.flag == "--format"
    assert source_for("x.tsv").name == "tsv" and CAPTION_SOURCES.get("wds").caption_field == "txt"
    with pytest.raises(LiftError, match="unknown store dtype 'float8'; choose one of bfloat16, float16"):
        get_codec("float8")

    # a codec registered from outside: a StoreWriter dtype and a `lift embed --store-dtype` choice
    more = Registry("store dtype", flag="--store-dtype")
    for name, codec in CODECS.items():
        more.add(name, codec, help=CODECS.help(name))
    more.add("float64", Float64Codec(), help="float64")
    monkeypatch.setattr(codecs_module, "CODECS", more)
    data = write_views_store(tmp_path / "s", dtype="float64", views=["a", "b"])
    key = next(iter(data))
    np.testing.assert_array_equal(open_store(tmp_path / "s")[key], data[key])
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    assert "float64" in capsys.readouterr().out


# ---- reading several caption fields ------------------------------------------------------------------


def test_read_captions_gives_one_list_per_view(tmp_path):
    pq.write_table(
        pa.table({"key": ["a", "b", "c"], "org": ["one", "two", "three"], "re": ["uno", "", "tres"]}),
        tmp_path / "t.parquet",
    )
    path = str(tmp_path / "t.parquet")
    assert read_captions(path, caption_field="org") == Captions(["a", "b", "c"], ["one", "two", "three"], 0)
    with pytest.raises(LiftError, match=r"row 1 \(key 'b'\): re: empty caption"):
        read_captions(path, caption_field=["org", "re"])
    got = read_captions(path, caption_field="org,re", policy=ErrorPolicy("skip"))
    assert isinstance(got, ViewCaptions) and got.views == ["org", "re"]
    assert got == (["a", "c"], [["one", "three"], ["uno", "tres"]], 1, None, ["org", "re"])
    assert got.of("re") == ["uno", "tres"]
    one = read_captions(path, caption_field=["re", "org"], policy=ErrorPolicy("skip"))
    assert one.captions == [["uno", "tres"], ["one", "three"]]  # in the order asked for
    with pytest.raises(LiftError, match="names 'org' twice"):
        read_captions(path, caption_field="org,org")
    with pytest.raises(LiftError, match="a caption field name is empty"):
        read_captions(path, caption_field="org,")
    with pytest.raises(LiftError, match="no caption-field 'long'"):
        read_captions(path, caption_field=["org", "long"], policy=ErrorPolicy("skip"))

    # tars: a field is a member extension; an exact one (v2.txt) wins over the kind (txt)
    tar = write_tar(tmp_path / "s.tar", {"k1.txt": "short 1", "k1.v2.txt": "long 1", "k1.jpg": b"x",
                                          "k2.txt": "short 2", "k3.v2.txt": "long 3"})  # fmt: skip
    got = read_captions(str(tar), caption_field=["txt", "v2.txt"], policy=ErrorPolicy("skip"))
    assert got[:3] == (["k1"], [["short 1"], ["long 1"]], 2)
    with pytest.raises(LiftError, match=r"row 1 \(key 'k2'\): v2.txt: missing caption"):
        read_captions(str(tar), caption_field=["txt", "v2.txt"])
    # jsonl: a row without one of the fields is bad in that view
    (tmp_path / "j.jsonl").write_text('{"key": "a", "x": "1", "y": "2"}\n{"key": "b", "x": "3"}\n')
    got = read_captions(str(tmp_path / "j.jsonl"), caption_field="x,y", policy=ErrorPolicy("skip"))
    assert got[:3] == (["a"], [["1"], ["2"]], 1)


# ---- `lift embed` with several caption fields --------------------------------------------------------

LONG = "a very long caption about the small red cube that sits on the left of two big blue balls today"


def _inputs(folder: Path) -> tuple[Path, Path]:
    """A parquet and a csv file of the same two caption columns; row 1 of each lacks one caption."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"key": [f"p-{i}" for i in range(5)],
                  "org_caption": ["a red cube", "a dog", "a photo", LONG, "two cats"],
                  "re_caption": [LONG, "", "a photo", LONG + " again", "two cats on a mat"]}),
        folder / "00000.parquet",
    )  # fmt: skip
    with open(folder / "00001.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "re_caption", "org_caption"])  # other column order: names decide
        w.writerows([["c-0", "a green ball", "a ball"], ["c-1", "a blue cube", "  "], ["c-2", LONG, "a cat"]])
    return folder / "00000.parquet", folder / "00001.csv"


def test_cli_embeds_two_caption_fields_as_views(tmp_path, capsys, enc):
    pqf, csvf = _inputs(tmp_path / "in")
    out = tmp_path / "store"
    args = ["embed", str(pqf), str(csvf), "--out", str(out), "--caption-field", "org_caption,re_caption",
            "--store-dtype", "float32", "--max-tokens", "12", "--no-progress"]  # fmt: skip
    assert main(args) == 2  # stop: the first bad row is named, with its view
    err = capsys.readouterr().err
    assert err == f"lift embed: error: {pqf}: row 1 (key 'p-1'): re_caption: empty caption\n"

    assert main([*args, "--on-error", "skip"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    kept = {"p-0": 0, "p-2": 2, "p-3": 3, "p-4": 4, "c-0": 0, "c-2": 2}
    enc12 = TextEncoder.from_pretrained("default", max_tokens=12)
    table = pq.read_table(pqf).to_pylist()
    with open(csvf, newline="") as f:
        rows = list(csv.DictReader(f))
    texts = {f"p-{i}": (r["org_caption"], r["re_caption"]) for i, r in enumerate(table)}
    texts |= {r["key"]: (r["org_caption"], r["re_caption"]) for r in rows}
    captions = [t for k in kept for t in texts[k]]
    truncated = int(enc12.tokenize_and_count(captions)[1].sum())
    assert truncated >= 4  # LONG appears in both views; every copy counts
    unique = sum(len({t for k in kept if k[0] == f for t in texts[k]}) for f in "pc")  # per shard
    assert unique < len(captions)
    assert line.startswith(
        f"lift embed: 12 captions of 6 rows in 2 views (org_caption, re_caption) ({unique} unique, "
        f"2 skipped, {truncated} truncated at 12 tokens)"
    )

    store = open_store(out)
    assert store.views == ["org_caption", "re_caption"] and store.manifest["views"] == store.views
    assert store.manifest["skipped"] == 2 and store.manifest["truncated"] == truncated
    assert sorted(store) == sorted(kept)
    for v, field in enumerate(store.views):
        want = enc12.encode([texts[k][v] for k in kept]).numpy()
        np.testing.assert_allclose(store.get_many(list(kept), view=field), want, atol=1e-5)
        np.testing.assert_allclose(np.stack([store[k][v] for k in kept]), want, atol=1e-5)

    assert main(["store", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "views      2: org_caption, re_caption (3,072 bytes per row)" in info
    assert main(["store", "info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["views"] == ["org_caption", "re_caption"] and summary["bytes_per_row"] == 2 * 384 * 4


def test_rerun_with_another_view_list_is_refused_in_one_line(tmp_path, capsys):
    pqf, _ = _inputs(tmp_path / "in")
    out = tmp_path / "store"
    base = ["embed", str(pqf), "--out", str(out), "--on-error", "skip", "--no-progress"]
    assert main([*base, "--caption-field", "org_caption,re_caption"]) == 0
    capsys.readouterr()
    before = snapshot(out)
    for other in ("re_caption,org_caption", "org_caption", "org_caption,re_caption,key"):
        assert main([*base, "--caption-field", other]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert f"--caption-field 'org_caption,re_caption' then, '{other}' now" in err and "new --out" in err
    assert snapshot(out) == before
    # the library call the same way, with the fields as a list
    with pytest.raises(LiftError, match="'org_caption,re_caption' then, 're_caption' now"):
        embed_captions(
            sources=str(pqf), out=out, caption_field=["re_caption"], on_error="skip", progress=False
        )
    summary = embed_captions(
        sources=str(pqf),
        out=out,
        caption_field=["org_caption", "re_caption"],
        on_error="skip",
        progress=False,
    )
    assert summary["shards_already_done"] == 1 and summary["views"] == ["org_caption", "re_caption"]


NUM_SHARDS, SHARD_ROWS = 6, 30
VOCAB = "red green blue big small cube ball cylinder dog cat on under beside left of right two three a the"
WORDS = VOCAB.split(" ")


def _many_inputs(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(NUM_SHARDS):
        short = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))) for _ in range(SHARD_ROWS)]
        long = [" ".join(rng.choice(WORDS, size=int(rng.integers(10, 40)))) for _ in range(SHARD_ROWS)]
        long[4] = short[4]  # the same text in both views: embedded once
        pq.write_table(
            pa.table({"key": [f"{s:05d}{i:04d}" for i in range(SHARD_ROWS)], "org_caption": short,
                      "re_caption": long}),
            folder / f"{s:05d}.parquet",
        )  # fmt: skip
    return folder


@pytest.mark.slow
def test_kill_9_mid_multi_view_embed_then_rerun_is_byte_identical(tmp_path):
    inputs = _many_inputs(tmp_path / "in")

    def args(out: Path) -> list[str]:
        return ["embed", str(inputs / "*.parquet"), "--out", str(out), "--caption-field", "org_caption,re_caption",
                "--batch-size", "8", "--no-progress"]  # fmt: skip

    clean = tmp_path / "clean"
    assert main(args(clean)) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "lift", *args(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((out / "shards").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "shards").glob("*.json")))
    assert 1 <= done < NUM_SHARDS and not (out / "manifest.json").exists(), proc.stderr.read()
    assert main(args(out)) == 0
    assert snapshot(out) == snapshot(clean)
    store = open_store(out)
    assert store.num_views == 2 and len(store) == NUM_SHARDS * SHARD_ROWS
    key = f"{2:05d}{4:04d}"
    np.testing.assert_array_equal(store[key][0], store[key][1])  # one text, one vector, in both views
