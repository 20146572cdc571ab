"""Issue 15, caption reading: strict CSV, BOMs and bad bytes counted per row, lost files named,
webdataset keys with several dots, the shared caption rule, literal paths and img2dataset folders."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lift.data import captions as captions_module
from lift.data.captions import read_captions, source_files
from lift.data.samples import caption_problem
from lift.errors import ErrorPolicy, LiftError
from train_fixtures import write_tar

# ---- item 6: CSV parsed strictly, per row --------------------------------------------------------


def test_csv_unclosed_quote_is_one_bad_row_named_by_line_not_a_merged_caption(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text('key,caption\nk0,fine\nk1,"an open quote\nk2,second\nk3,"third"\n')
    with pytest.raises(LiftError, match=r"c\.csv: row 1: line 3: malformed CSV") as e:
        read_captions(str(f))
    assert "\n" not in str(e.value)
    keys, caps, skipped, lost = read_captions(str(f), policy=ErrorPolicy("skip"))
    assert (keys, caps, skipped, lost) == (["k0", "k2", "k3"], ["fine", "second", "third"], 1, None)


def test_csv_rows_with_extra_or_missing_columns_are_bad_rows(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("key,caption\nk0,fine\nk1,a caption,an extra column\nk2\nk3,last\n")
    with pytest.raises(LiftError, match=r"row 1 \(key 'k1'\): line 3: 3 fields where the header has 2"):
        read_captions(str(f))
    policy = ErrorPolicy("skip")
    assert read_captions(str(f), policy=policy) == (["k0", "k3"], ["fine", "last"], 2, None)
    assert "row 2 (key 'k2'): line 4: 1 fields where the header has 2" in policy.examples[1]


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path):
    f = tmp_path / "c.csv"
    f.write_bytes("key,caption\r\nk0,café\r\n".encode("utf-8-sig"))
    assert read_captions(str(f)) == (["k0"], ["café"], 0, None)
    j = tmp_path / "c.jsonl"
    j.write_bytes('{"key": "k0", "caption": "café"}\n'.encode("utf-8-sig"))
    assert read_captions(str(j)) == (["k0"], ["café"], 0, None)


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl"])
def test_one_bad_byte_skips_one_row_not_the_file(tmp_path, suffix):
    sep = "\t" if suffix == "tsv" else ","
    rows = [("k0", b"zero"), ("k1", b"one \xff broken"), ("k2", b"two")]
    if suffix == "jsonl":
        data = b"".join(b'{"key": "%s", "caption": "%s"}\n' % (k.encode(), c) for k, c in rows)
    else:
        data = f"key{sep}caption\n".encode() + b"".join(
            k.encode() + sep.encode() + c + b"\n" for k, c in rows
        )
    f = tmp_path / f"c.{suffix}"
    f.write_bytes(data)
    with pytest.raises(LiftError, match=rf"c\.{suffix}: row 1 \(key 'k1'\): caption is not valid UTF-8"):
        read_captions(str(f))
    assert read_captions(str(f), policy=ErrorPolicy("skip")) == (["k0", "k2"], ["zero", "two"], 1, None)


def test_a_lost_file_is_named_and_not_counted_as_a_skipped_row(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(50)], "caption": ["x"] * 50}), good)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:-30])  # a download cut short: the footer is gone
    with pytest.raises(LiftError, match="cut.parquet: cannot read parquet"):
        read_captions(str(cut))
    keys, caps, skipped, lost = read_captions(str(cut), policy=ErrorPolicy("skip"))
    assert (keys, skipped) == ([], 0) and lost.startswith(f"{cut}: cannot read parquet")


# ---- item 8: one caption rule ----------------------------------------------------------------------


@pytest.mark.parametrize("caption", ["ok", "", " \t\n", None, 7, "\u3000"])
def test_embed_keeps_exactly_the_captions_the_shared_rule_accepts(tmp_path, caption):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"key": "k", "caption": caption}) + "\n")
    policy = ErrorPolicy("skip")
    keys, _, skipped, _ = read_captions(str(f), policy=policy)
    assert (keys == ["k"]) == (caption_problem(caption) is None) and skipped == len(policy.examples)
    if skipped:
        assert caption_problem(caption) in policy.examples[0]


def test_the_caption_rule_is_the_shared_one(tmp_path, monkeypatch):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"key": "k", "caption": "a caption"}) + "\n")
    monkeypatch.setattr(captions_module, "caption_problem", lambda c: "refused by the shared rule")
    with pytest.raises(LiftError, match="refused by the shared rule"):
        read_captions(str(f))


# ---- item 11: webdataset keys with several dots ----------------------------------------------------


def test_tar_members_follow_webdatasets_key_convention(tmp_path):
    members = {
        "a.jpg": b"img", "a.txt": b"plain",
        "b.v2.jpg": b"img", "b.v2.txt": b"second version",  # key b, its txt caption
        "dir/c.d.TXT": b"upper case ext",
        "e.txt": b"one", "e.v2.txt": b"two",  # two captions for one key: a bad row
        "f.txt.gz": b"not a caption", ".hidden.txt": b"not a sample",
    }  # fmt: skip
    f = write_tar(tmp_path / "s.tar", members)
    policy = ErrorPolicy("skip")
    keys, caps, skipped, lost = read_captions(str(f), policy=policy)
    assert keys == ["a", "b", "dir/c"] and caps == ["plain", "second version", "upper case ext"]
    assert (skipped, lost) == (1, None)
    assert "row 3 (key 'e'): 2 caption members (e.txt, e.v2.txt)" in policy.examples[0]
    with pytest.raises(LiftError, match="2 caption members"):
        read_captions(str(f))
    # an exact extension picks only those members
    assert read_captions(str(f), caption_field="v2.txt", policy=ErrorPolicy("skip"))[:2] == (
        ["b", "e"],
        ["second version", "two"],
    )


# ---- item 13: literal paths and img2dataset folders ------------------------------------------------


def test_existing_paths_with_pattern_characters_are_used_as_they_are(tmp_path):
    from lift.data.paths import expand_paths

    for name in ("caps[1].jsonl", "caps{a,b}.jsonl", "caps1.jsonl"):
        (tmp_path / name).write_text('{"key": "k", "caption": "x"}\n')
    assert source_files(str(tmp_path / "caps[1].jsonl")) == [str(tmp_path / "caps[1].jsonl")]
    assert source_files(str(tmp_path / "caps{a,b}.jsonl")) == [str(tmp_path / "caps{a,b}.jsonl")]
    assert expand_paths([str(tmp_path / "caps[1].jsonl")]) == [str(tmp_path / "caps[1].jsonl")]
    # a pattern that is no existing path is still a pattern
    assert source_files(str(tmp_path / "caps[0-9].jsonl")) == [str(tmp_path / "caps1.jsonl")]
    odd = tmp_path / "data[1]"
    odd.mkdir()
    (odd / "00000.jsonl").write_text('{"key": "k", "caption": "x"}\n')
    assert source_files(str(odd)) == [str(odd / "00000.jsonl")]


def test_img2dataset_folder_gives_one_file_per_shard(tmp_path):
    for s in range(2):
        write_tar(tmp_path / f"{s:05d}.tar", {f"{s:05d}0001.txt": b"a caption"})
        pq.write_table(pa.table({"key": [f"{s:05d}0001"], "caption": ["x"]}), tmp_path / f"{s:05d}.parquet")
        (tmp_path / f"{s:05d}_stats.json").write_text('{"count": 1, "successes": 1}')
    tars = [str(tmp_path / f"{s:05d}.tar") for s in range(2)]
    assert source_files(str(tmp_path)) == tars
    assert source_files(str(tmp_path), "parquet") == [t.replace(".tar", ".parquet") for t in tars]
    assert source_files([str(tmp_path)], "wds") == tars
    (tmp_path / "00000.jsonl").write_text("{}\n")
    (tmp_path / "00000.json").write_text("{}\n")
    with pytest.raises(LiftError, match="00000.json and 00000.jsonl are both shard '00000'"):
        source_files(str(tmp_path), "jsonl")


def test_a_caption_field_no_tar_member_has_is_refused_before_the_store_exists(tmp_path, capsys):
    from lift.cli import main

    write_tar(tmp_path / "data" / "00000.tar", {"k1.png": b"x", "k1.txt": "a caption", "k1.json": "{}"})
    assert (
        main(
            ["embed", str(tmp_path / "data"), "--caption-field", "org_caption", "--out", str(tmp_path / "s")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "00000.tar: no member ends in .org_caption (found: .json, .png, .txt)" in err
        and "--format parquet" in err
    )
    assert not (tmp_path / "s").exists()
