"""lift.data.captions: every source format parsed from files the test writes, and every bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lift.data.captions import CAPTION_SOURCES, read_captions, source_files, source_for
from lift.errors import ErrorPolicy, LiftError
from train_fixtures import write_tar

KEYS = ["000000001", "000000002", "000000003"]
CAPS = ["a red cube", 'two dogs, one "big"\nand one small', "a café at night"]


def write_parquet(path: Path, keys=KEYS, caps=CAPS, key="key", caption="caption") -> Path:
    pq.write_table(
        pa.table({key: keys, caption: caps, "other": list(range(len(keys)))}), path, row_group_size=2
    )
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_delimited(path: Path, rows: list[dict], delimiter: str) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


def _wds_members(keys=KEYS, caps=CAPS) -> dict[str, bytes]:
    members = {}
    for k, c in zip(keys, caps):
        members[f"{k}.jpg"] = b"\xff\xd8 not read"
        members[f"{k}.txt"] = c.encode()
        members[f"{k}.json"] = b"{}"
    return members


def test_every_format_reads_the_same_captions(tmp_path):
    rows = [{"key": k, "caption": c} for k, c in zip(KEYS, CAPS)]
    files = [
        write_parquet(tmp_path / "a.parquet"),
        write_jsonl(tmp_path / "b.jsonl", rows),
        write_delimited(tmp_path / "c.csv", rows, ","),
        write_delimited(tmp_path / "d.tsv", rows, "\t"),
        write_tar(tmp_path / "e.tar", _wds_members()),
    ]
    assert [source_for(str(f)).name for f in files] == ["parquet", "jsonl", "csv", "tsv", "wds"]
    for f in files:
        assert read_captions(str(f)) == (KEYS, CAPS, 0, None), f.name


def test_configurable_fields_and_format_override(tmp_path):
    f = write_parquet(tmp_path / "recap.parquet", keys=[1, 2, 3], key="uid", caption="re_caption")
    got = read_captions(str(f), key_field="uid", caption_field="re_caption")
    assert got == (["1", "2", "3"], CAPS, 0, None)
    odd = write_jsonl(tmp_path / "captions.txt", [{"id": "x", "text": "hello"}])
    got = read_captions(str(odd), fmt="jsonl", key_field="id", caption_field="text")
    assert got == (["x"], ["hello"], 0, None)
    tar = write_tar(
        tmp_path / "s.tar", {"sub/k1.caption": b"one", "sub/k1.txt": b"ignored", "k2.caption": b"two"}
    )
    assert read_captions(str(tar), caption_field="caption") == (["sub/k1", "k2"], ["one", "two"], 0, None)


def test_globs_braces_and_folders_keep_order(tmp_path):
    for i in (2, 0, 1):
        write_parquet(tmp_path / f"shard-{i:05d}.parquet")
    (tmp_path / "notes.md").write_text("not captions")
    want = [str(tmp_path / f"shard-{i:05d}.parquet") for i in range(3)]
    assert source_files(str(tmp_path)) == want
    assert source_files(str(tmp_path / "shard-*.parquet")) == want
    assert source_files(str(tmp_path / "shard-{00000..00002}.parquet")) == want
    with pytest.raises(LiftError, match="no such file"):
        source_files(str(tmp_path / "shard-{00000..00003}.parquet"))


BAD_ROWS = [
    ("empty caption", {"key": "k2", "caption": ""}),
    ("empty caption", {"key": "k2", "caption": "  \n\t"}),
    ("missing caption", {"key": "k2", "caption": None}),
    ("missing key", {"key": None, "caption": "fine"}),
    ("appears twice", {"key": "k1", "caption": "fine"}),
    ("caption is int", {"key": "k2", "caption": 7}),
    ("no field 'caption'", {"key": "k2", "text": "x"}),
]


@pytest.mark.parametrize(("problem", "row"), BAD_ROWS)
def test_bad_rows_stop_with_file_and_row_or_are_skipped_and_counted(tmp_path, problem, row):
    f = write_jsonl(
        tmp_path / "c.jsonl", [{"key": "k1", "caption": "ok"}, row, {"key": "k3", "caption": "ok 3"}]
    )
    with pytest.raises(LiftError, match=problem) as e:
        read_captions(str(f))
    assert str(e.value).startswith(f"{f}: row 1") and "\n" not in str(e.value)
    policy = ErrorPolicy("skip")
    assert read_captions(str(f), policy=policy) == (["k1", "k3"], ["ok", "ok 3"], 1, None)
    assert policy.skipped == 1 and problem in policy.examples[0]


def test_bad_parquet_rows_name_the_key(tmp_path):
    f = write_parquet(tmp_path / "p.parquet", keys=["a", "b", "c", "d"], caps=["x", "y", "   ", "z"])
    with pytest.raises(LiftError, match=r"p.parquet: row 2 \(key 'c'\): empty caption"):
        read_captions(str(f))


def test_missing_columns_are_errors_even_under_skip(tmp_path):
    f = write_parquet(tmp_path / "p.parquet")
    with pytest.raises(LiftError, match="no caption-field 're_caption' \\(found: key, caption, other\\)"):
        read_captions(str(f), caption_field="re_caption", policy=ErrorPolicy("skip"))
    c = write_delimited(tmp_path / "c.csv", [{"id": "1", "caption": "x"}], ",")
    with pytest.raises(LiftError, match="no key-field 'key'"):
        read_captions(str(c), policy=ErrorPolicy("skip"))
    with pytest.raises(LiftError, match="__key__"):
        read_captions(str(write_tar(tmp_path / "t.tar", _wds_members())), key_field="key")


def test_unreadable_files(tmp_path):
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(LiftError, match="bad.parquet: cannot read parquet"):
        read_captions(str(bad_parquet))
    keys, caps, skipped, lost = read_captions(str(bad_parquet), policy=ErrorPolicy("skip"))
    assert (keys, caps, skipped) == ([], [], 0)  # rows are counted, not files: the file is reported lost
    assert "bad.parquet: cannot read parquet" in lost

    good = write_tar(tmp_path / "good.tar", _wds_members()).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good[: len(good) // 2 + 100])  # damaged part-way through the members
    with pytest.raises(LiftError, match="cut.tar: (cannot read tar|tar shard is truncated)"):
        read_captions(str(cut))
    keys, caps, skipped, lost = read_captions(str(cut), policy=ErrorPolicy("skip"))
    assert skipped == 0 and f"{cut}: " in lost
    assert keys == KEYS[: len(keys)] and 0 < len(keys) < 3  # rows before the damage kept

    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x00not a tar at all" * 50)
    with pytest.raises(LiftError, match="garbage.tar: cannot read tar"):
        read_captions(str(garbage))
    with pytest.raises(LiftError, match="unknown caption file type"):
        read_captions(str(tmp_path / "x.docx"))


def test_registry_lists_every_format():
    assert set(CAPTION_SOURCES) == {"parquet", "jsonl", "csv", "tsv", "wds"}
    with pytest.raises(LiftError, match="--format must be"):
        source_for("a.parquet", "xml")
