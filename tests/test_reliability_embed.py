"""Issue 15, `lift embed`: reruns refused when inputs or settings changed, lost files and truncated
captions reported, outputs and --max-tokens checked before any work, remote-code and path messages,
img2dataset folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lift.cli import main
from lift.embed import embed_captions
from lift.errors import ErrorPolicy, LiftError
from lift.store import open_store
from lift.store.format import manifest_checksum
from lift.text import TextEncoder


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lift-cache"))


@pytest.fixture(scope="module")
def enc() -> TextEncoder:
    return TextEncoder.from_pretrained("default")


def _parquet(path: Path, n: int = 4, tag: str = "") -> Path:
    keys = [f"{path.stem}-{i}" for i in range(n)]
    table = {"key": keys, "caption": [f"a red cube {i}{tag}" for i in range(n)],
             "re_caption": [f"a long description of the blue ball number {i}{tag}" for i in range(n)]}  # fmt: skip
    pq.write_table(pa.table(table), path)
    return path


def _embed(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["embed", *args, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _vectors(store_path: Path) -> dict[str, np.ndarray]:
    store = open_store(store_path)
    return {k: store[k] for k in store}


# ---- item 4: a rerun is "done" only for the same inputs and settings -------------------------------


def test_rerun_with_another_caption_field_is_refused_and_keeps_the_store(tmp_path, capsys):
    src = _parquet(tmp_path / "00000.parquet")
    out = tmp_path / "store"
    assert _embed(capsys, str(src), "--out", str(out))[0] == 0
    before = _vectors(out)
    manifest = json.loads((out / "manifest.json").read_text())
    code, stdout, err = _embed(capsys, str(src), "--out", str(out), "--caption-field", "re_caption")
    assert code == 2 and "already done" not in stdout
    assert err.count("\n") == 1 and "--caption-field 'caption' then, 're_caption' now" in err
    assert "new --out" in err and "holds the views of" in err  # the views are in the store's header
    after = _vectors(out)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert json.loads((out / "manifest.json").read_text()) == manifest  # still describes the first job
    # the same job again is done, and says so
    code, stdout, _ = _embed(capsys, str(src), "--out", str(out))
    assert code == 0 and "1 shard(s) already done" in stdout


def test_rerun_after_the_input_file_changed_is_refused(tmp_path, capsys):
    src = _parquet(tmp_path / "00000.parquet")
    out = tmp_path / "store"
    assert _embed(capsys, str(src), "--out", str(out))[0] == 0
    _parquet(src, tag=" (edited)")  # another file under the same name: other size
    code, _, err = _embed(capsys, str(src), "--out", str(out))
    assert code == 2 and f"{src} changed since (bytes " in err and "new --out" in err
    # an edit of the same size still changes the modification time
    _parquet(src)
    st = src.stat()
    assert _embed(capsys, str(src), "--out", str(tmp_path / "s2"))[0] == 0
    data = src.read_bytes()
    src.write_bytes(data)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    code, _, err = _embed(capsys, str(src), "--out", str(tmp_path / "s2"))
    assert code == 2 and "mtime_ns" in err and "bytes" not in err.split("changed since", 1)[1]


def test_rerun_with_other_files_of_the_same_names_is_refused(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _parquet(a / "00000.parquet"), _parquet(b / "00000.parquet")
    out = tmp_path / "store"
    assert _embed(capsys, str(a / "00000.parquet"), "--out", str(out))[0] == 0
    code, _, err = _embed(capsys, str(b / "00000.parquet"), "--out", str(out))
    assert code == 2 and f"input file {a / '00000.parquet'} then, {b / '00000.parquet'} now" in err


def _make_legacy(store: Path) -> None:
    """Rewrite a store as lift wrote it before shards recorded their inputs and truncation counts."""
    old = ("inputs", "truncated")
    for side in (store / "shards").glob("*.json"):
        data = json.loads(side.read_text())
        data["shard"] = {k: v for k, v in data["shard"].items() if k not in old}
        side.write_text(json.dumps(data))
    m = json.loads((store / "manifest.json").read_text())
    m.pop("truncated")
    m["shards"] = [{k: v for k, v in e.items() if k not in old} for e in m["shards"]]
    m["manifest_checksum"] = manifest_checksum(m)
    (store / "manifest.json").write_text(json.dumps(m))


def test_stores_without_fingerprints_still_open_and_reruns_are_checked_where_possible(tmp_path, capsys, enc):
    src = _parquet(tmp_path / "00000.parquet")
    out = tmp_path / "store"
    assert _embed(capsys, str(src), "--out", str(out))[0] == 0
    _make_legacy(out)
    store = open_store(out)
    assert store.verify() == [] and store["00000-1"].shape == (enc.dim,)
    code, stdout, _ = _embed(capsys, str(src), "--out", str(out))
    assert code == 0 and "1 shard(s) already done" in stdout and "recorded no input fingerprint" in stdout
    # the old manifest still tells the read settings: a changed field is refused
    code, _, err = _embed(capsys, str(src), "--out", str(out), "--caption-field", "re_caption")
    assert code == 2 and "--caption-field 'caption' then, 're_caption' now" in err


# ---- item 6: rows counted, lost files named --------------------------------------------------------


def test_a_lost_file_is_named_and_counted_apart_from_skipped_rows(tmp_path, capsys):
    _parquet(tmp_path / "00000.parquet")
    (tmp_path / "00001.csv").write_bytes(b"key,caption\nk0,fine\nk1,bad \xff byte\nk2,also fine\n")
    good = _parquet(tmp_path / "x.parquet").read_bytes()
    (tmp_path / "00002.parquet").write_bytes(good[: len(good) // 2])  # truncated download
    out = tmp_path / "store"
    code, stdout, _ = _embed(capsys, str(tmp_path / "0000?.*"), "--out", str(out), "--on-error", "skip")
    assert code == 0
    line = stdout.splitlines()[0]
    assert "6 captions" in line and "1 skipped" in line and "1 file(s) lost entirely" in line
    assert f"  lost: {tmp_path / '00002.parquet'}: cannot read parquet" in stdout
    assert "00001.csv: row 1 (key 'k1'): caption is not valid UTF-8 text" in stdout
    assert open_store(out).manifest["skipped"] == 1
    # the same job again: nothing to redo; once the lost file is repaired, its shard is embedded again
    args = [str(tmp_path / "0000?.*"), "--out", str(out), "--on-error", "skip"]
    code, stdout, _ = _embed(capsys, *args)
    assert code == 0 and "3 shard(s) already done" in stdout
    (tmp_path / "00002.parquet").write_bytes(good)
    code, stdout, _ = _embed(capsys, *args)
    assert code == 0 and "2 shard(s) already done" in stdout and "lost entirely" not in stdout
    assert open_store(out)["x-3"].shape == (384,) and open_store(out).manifest["rows"] == 10


# ---- item 11: truncated captions counted -----------------------------------------------------------


def test_captions_cut_at_max_tokens_are_counted_in_summary_and_manifest(tmp_path, capsys, enc):
    caps = ["a cube", "a very long caption about a red cube on a blue ball beside a dog", "two dogs"]
    caps += [caps[1], "short", "one two three four five six seven eight nine"]
    rows = [{"key": f"k{i}", "caption": c} for i, c in enumerate(caps)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    want = sum(len(enc.tokenizer(c)["input_ids"]) > 8 for c in caps)  # rows, duplicates included
    assert want == 3
    out = tmp_path / "store"
    code, stdout, _ = _embed(capsys, str(tmp_path / "c.jsonl"), "--out", str(out), "--max-tokens", "8")
    assert code == 0 and "(5 unique, 0 skipped, 3 truncated at 8 tokens)" in stdout
    store = open_store(out)
    assert store.manifest["truncated"] == 3 and store.manifest["shards"][0]["truncated"] == 3
    summary = embed_captions(sources=str(tmp_path / "c.jsonl"), out=tmp_path / "s2", progress=False)
    assert summary["truncated"] == 0 and summary["max_tokens"] == 77
    assert main(["store", "info", str(out)]) == 0
    assert "3 truncated at 8 tokens" in capsys.readouterr().out


def test_encode_reports_truncation_per_text(enc):
    long = "a red cube " * 200
    vectors, cut = enc.encode(["a dog", long, "a dog", long], return_truncated=True)
    assert cut.tolist() == [False, True, False, True] and vectors.shape == (4, enc.dim)
    ids, cut = enc.tokenize_and_count(["a dog", long])
    assert len(ids[1]) == enc.max_tokens and cut.tolist() == [False, True]


# ---- item 12: bad outputs and --max-tokens before any work -----------------------------------------


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the text encoder was loaded before the output was checked")

    monkeypatch.setattr(TextEncoder, "from_pretrained", refuse)


def test_max_tokens_beyond_the_model_is_refused_before_any_folder(tmp_path, capsys):
    _parquet(tmp_path / "00000.parquet")
    out = tmp_path / "new" / "store"
    code, _, err = _embed(capsys, str(tmp_path / "00000.parquet"), "--out", str(out), "--max-tokens", "1000")
    assert code == 2 and err.count("\n") == 1
    assert (
        "--max-tokens 1000 is beyond this model's limit of 512 tokens" in err
        and not (tmp_path / "new").exists()
    )


def test_token_limit_ignores_the_unknown_limit_sentinel():
    from types import SimpleNamespace as NS

    from lift.text.encoder import token_limit

    huge = NS(model_max_length=int(1e30))  # transformers' "no limit known"
    assert token_limit(NS(max_position_embeddings=4096), huge) == (
        4096,
        "the config's max_position_embeddings",
    )
    assert token_limit(NS(n_positions=128), huge) == (128, "the config's n_positions")  # GPT-2
    assert token_limit(NS(max_position_embeddings=514), NS(model_max_length=512))[0] == 512  # RoBERTa
    assert token_limit(NS(), huge) is None


def test_out_that_is_a_file_is_refused_before_the_model_loads(tmp_path, capsys, no_model_load):
    src = str(_parquet(tmp_path / "00000.parquet"))
    (tmp_path / "taken").write_text("mine")
    code, _, err = _embed(capsys, src, "--out", str(tmp_path / "taken"))
    assert code == 2 and "--out" in err and "is an existing file" in err
    code, _, err = _embed(capsys, src, "--out", str(tmp_path / "taken" / "store"))
    assert code == 2 and "is a file, not a folder" in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_unwritable_out_is_refused_before_the_model_loads(tmp_path, capsys, no_model_load, monkeypatch):
    import errno

    from lift import outputs

    src = str(_parquet(tmp_path / "00000.parquet"))
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
    else:  # root writes through permission bits: make the probe meet a read-only file system

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(ro))

        monkeypatch.setattr(outputs.tempfile, "TemporaryFile", read_only)
    try:
        code, _, err = _embed(capsys, src, "--out", str(ro / "store"))
    finally:
        ro.chmod(0o755)
    assert code == 2 and err.count("\n") == 1 and f"--out {ro / 'store'}: cannot write in {ro}" in err


# ---- item 13: remote code, literal paths, img2dataset folders --------------------------------------


def test_remote_code_folder_names_the_flag(tmp_path, capsys):
    folder = tmp_path / "custom-embedder"
    folder.mkdir()
    auto_map = {"AutoConfig": "modeling_x.XConfig", "AutoModel": "modeling_x.XModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "x-embedder", "auto_map": auto_map}))
    (folder / "modeling_x.py").write_text("raise RuntimeError('must not run')\n")
    src = str(_parquet(tmp_path / "00000.parquet"))
    code, _, err = _embed(capsys, src, "--out", str(tmp_path / "s"), "--encoder", str(folder))
    assert code == 2 and err.count("\n") == 1 and "pass --trust-remote-code" in err
    assert not (tmp_path / "s").exists()


def test_existing_paths_with_brackets_and_braces_are_embedded(tmp_path, capsys):
    for name in ("caps[1].jsonl", "caps{a,b}.jsonl"):
        (tmp_path / name).write_text(json.dumps({"key": name, "caption": "a cube"}) + "\n")
    out = tmp_path / "store"
    code, _, err = _embed(
        capsys, str(tmp_path / "caps[1].jsonl"), str(tmp_path / "caps{a,b}.jsonl"), "--out", str(out)
    )
    assert code == 0, err
    assert open_store(out).shard_names == ["caps[1]", "caps{a,b}"]


def test_img2dataset_folder_embeds_from_the_tars_and_lines_up_with_training(tmp_path, capsys, enc):
    from lift.data.imagetext import build_index, join_store
    from train_fixtures import write_shards

    data = tmp_path / "data"
    keys = write_shards(data, shards=2, per_shard=3)  # 0000N.tar + 0000N.parquet
    for s in range(2):
        (data / f"{s:05d}_stats.json").write_text(json.dumps({"count": 3, "successes": 3}))
    out = tmp_path / "store"
    code, stdout, err = _embed(capsys, str(data), "--out", str(out))
    assert code == 0, err
    store = open_store(out)
    assert store.shard_names == ["00000", "00001"] and sorted(store.keys()) == sorted(keys)
    np.testing.assert_allclose(store[keys[4]], enc.encode([f"short caption {keys[4]}"])[0].numpy(), atol=2e-3)
    samples = build_index(str(data))
    assert len(join_store(samples, store, ErrorPolicy())) == len(keys)  # stop policy: nothing left over
    # --format parquet reads the parquets beside the tars instead
    code, _, err = _embed(capsys, str(data), "--out", str(tmp_path / "long"), "--format", "parquet",
                          "--caption-field", "re_caption")  # fmt: skip
    assert code == 0, err
    long = open_store(tmp_path / "long")
    assert long.shard_names == ["00000", "00001"]
    want = enc.encode([f"a long caption describing sample {keys[4]} in detail"])[0].numpy()
    np.testing.assert_allclose(long[keys[4]], want, atol=2e-3)


def test_library_call_refuses_a_changed_job_too(tmp_path):
    src = _parquet(tmp_path / "00000.parquet")
    embed_captions(sources=str(src), out=tmp_path / "s", progress=False)
    with pytest.raises(LiftError, match="--format 'parquet' then, 'jsonl' now"):
        embed_captions(sources=str(src), out=tmp_path / "s", fmt="jsonl", progress=False)
