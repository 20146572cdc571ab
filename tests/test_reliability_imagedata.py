"""Issue 15, the image side of training and evaluation: damaged tar shards (item 7), one caption rule for
embed and both training methods (8), every image mode decoded right (9), webdataset keys and nothing
dropped without a count (11)."""

from __future__ import annotations

import functools
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lift.cli import main
from lift.data import imagetext
from lift.data.captions import read_captions
from lift.data.images import BACKGROUND, load_rgb
from lift.data.views import caption_of
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate.images import ImageFiles
from lift.methods.clip import CaptionText
from train_fixtures import png_bytes, write_shards, write_store, write_tar


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lift-cache"))


def cut_at_header(path: Path, member: int) -> int:
    """Truncate a tar right before the header of its `member`-th member (a 512-byte boundary)."""
    with tarfile.open(path) as tar:
        offset = tar.getmembers()[member].offset
    assert offset % 512 == 0
    with open(path, "r+b") as f:
        f.truncate(offset)
    return offset


def train_cli(capsys, tmp_path: Path, method: str, data: Path, *extra: str) -> tuple[int, str, Path]:
    out = tmp_path / f"run-{method}-{len(list(tmp_path.glob('run-*')))}"  # always a fresh folder
    args = ["train", "--method", method, "--train-data", str(data), "--out", str(out), "--batch-size", "4",
            "--log-every", "100", *extra]  # fmt: skip
    capsys.readouterr()
    rc = main(args)
    return rc, capsys.readouterr().err, out


def skipped_in(err: str) -> int:
    m = re.search(r"skipped (\d+) bad samples", err)
    return int(m.group(1)) if m else 0


# ---- item 7: a tar shard cut at a header boundary -------------------------------------------------


@pytest.mark.parametrize("method", ["lift", "clip"])
def test_truncated_tar_shard_stops_both_methods_before_training_naming_the_shard(tmp_path, capsys, method):
    keys = write_shards(tmp_path / "data", shards=2, per_shard=8, sidecar=False)
    write_store(tmp_path / "store", keys)  # embedded from the intact shards
    shard = tmp_path / "data" / "00001.tar"
    at = cut_at_header(shard, 12)  # 3 members a sample: the shard now ends after its 4th sample
    extra = ["--store", str(tmp_path / "store")] if method == "lift" else []
    rc, err, out = train_cli(capsys, tmp_path, method, tmp_path / "data", "--samples", "8", *extra)
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{shard}: tar shard is truncated at byte {at}" in err
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()
    # the same words as `lift embed` on the same shard (one shared check)
    with pytest.raises(LiftError) as embed_error:
        list(read_captions(str(shard)))
    assert str(embed_error.value) in err


def test_truncated_tar_shard_under_skip_is_one_bad_item_and_keeps_what_came_before(tmp_path, capsys):
    write_shards(tmp_path / "data", shards=2, per_shard=8, sidecar=False)
    cut_at_header(tmp_path / "data" / "00001.tar", 12)
    index = imagetext.index_data(str(tmp_path / "data"))
    assert len(index.damaged) == 1 and "00001.tar" in index.damaged[0]
    assert len(index.samples) == 8 + 4  # the samples before the cut, as `lift embed --on-error skip` keeps
    rc, err, _ = train_cli(
        capsys, tmp_path, "clip", tmp_path / "data", "--samples", "8", "--on-error", "skip"
    )
    assert rc == 0 and skipped_in(err) == 1


def test_garbage_after_the_last_member_is_damage_too(tmp_path):
    path = write_tar(tmp_path / "00000.tar", [("a.png", png_bytes(np.random.default_rng(0))), ("a.txt", "x")])
    with tarfile.open(path) as tar:
        end = tar.getmembers()[-1].offset_data + 512  # where the end-of-archive marker belongs
    path.write_bytes(path.read_bytes()[:end] + b"\x01" * 512)
    with pytest.raises(LiftError, match=r"00000\.tar: tar shard is truncated"):
        imagetext.build_index(str(path))


# ---- item 8: one caption rule for embed, LIFT and CLIP -------------------------------------------


def _shards_with_empty_captions(root: Path) -> tuple[list[str], list[str]]:
    """2 shards x 8 samples (KEY.png + KEY.txt); 3 captions are empty or white space."""
    rng = np.random.default_rng(0)
    keys, bad = [], []
    for s in range(2):
        members = []
        for i in range(8):
            key = f"{s:05d}{i:04d}"
            caption = {(0, 2): "", (0, 5): "  \n", (1, 3): ""}.get((s, i), f"caption {key}")
            members += [(f"{key}.png", png_bytes(rng, 32)), (f"{key}.txt", caption)]
            keys.append(key)
            if not caption.strip():
                bad.append(key)
        write_tar(root / f"{s:05d}.tar", members)
    return keys, bad


def test_empty_captions_are_skipped_alike_by_embed_lift_and_clip(tmp_path, capsys):
    keys, bad = _shards_with_empty_captions(tmp_path / "data")
    capsys.readouterr()
    rc = main(["embed", str(tmp_path / "data"), "--out", str(tmp_path / "store"), "--on-error", "skip",
               "--no-progress", "--store-dtype", "float32"])  # fmt: skip
    assert rc == 0
    embed_skipped = int(re.search(r"(\d+) skipped", capsys.readouterr().out).group(1))
    assert embed_skipped == len(bad) == 3

    # two epochs: a bad sample is counted once, before training, not once per visit
    budget = ["--epochs", "2", "--on-error", "skip"]
    rc, err, _ = train_cli(
        capsys, tmp_path, "lift", tmp_path / "data", "--store", str(tmp_path / "store"), *budget
    )
    assert rc == 0 and skipped_in(err) == embed_skipped
    rc, err, _ = train_cli(capsys, tmp_path, "clip", tmp_path / "data", *budget)
    assert rc == 0 and skipped_in(err) == embed_skipped

    # under stop both refuse, naming the shard and the key
    rc, err, out = train_cli(capsys, tmp_path, "clip", tmp_path / "data", "--epochs", "1")
    assert rc == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'data' / '00000.tar'}: sample '{bad[0]}': empty caption" in err
    assert not (out / "checkpoints").exists()
    rc, err, _ = train_cli(capsys, tmp_path, "lift", tmp_path / "data", "--store", str(tmp_path / "store"),
                           "--epochs", "1")  # fmt: skip
    assert rc == 2 and err.count("\n") == 1 and "00000.tar" in err and f"'{bad[0]}'" in err


def test_clip_caption_rule_covers_parquet_and_json_captions(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    members = []
    for i, meta in enumerate([{"caption": "fine"}, {"caption": 7}, {"caption": "  "}, {"other": "x"}, None]):
        members.append((f"k{i}.jpg", png_bytes(rng)))
        if meta is not None:
            members.append((f"k{i}.json", json.dumps(meta)))
    members.append(("k5.jpg", png_bytes(rng)))
    members.append(("k5.json", "{not json"))
    write_tar(tmp_path / "00000.tar", members)
    pq.write_table(pa.Table.from_pylist([{"key": "k0", "re_caption": ""}]), tmp_path / "meta.parquet")
    index = imagetext.index_data(str(tmp_path / "00000.tar"), metadata=str(tmp_path / "meta.parquet"))

    policy = ErrorPolicy("skip", max_examples=10)
    kept = imagetext.select_samples(index, views=["short"], policy=policy)
    assert [s.key for s in kept] == ["k0"] and policy.skipped == 5
    reasons = " | ".join(policy.examples)
    for words in ("'k1': caption is int, not text", "'k2': empty caption", "'k3': no short caption",
                  "'k4': no short caption (found: none)"):  # fmt: skip
        assert words in reasons
    assert "'k5': k5.json is not valid JSON" in reasons
    # the parquet's empty long caption is a bad caption, not "absent": --captions long refuses k0
    with pytest.raises(LiftError, match=r"'k0': empty caption \(long\)"):
        imagetext.select_samples(index, views=["long"], policy=ErrorPolicy())
    # random needs both kinds, since either may be drawn
    policy = ErrorPolicy("skip")
    assert imagetext.select_samples(index, views=["short", "long"], policy=policy) == []


# ---- item 9: every image mode decoded to the right 8-bit picture --------------------------------

GRAD = np.tile(np.arange(256, dtype=np.uint8), (6, 1))  # a horizontal 0..255 gradient, 6 rows


def _saved(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _rgba(alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return np.dstack([colour, colour, colour, alpha])


@functools.cache
def _cases() -> dict[str, tuple[Image.Image | bytes, np.ndarray]]:
    """mode -> (an image or file bytes in that mode, the 8-bit grey picture it shows)."""
    g16 = GRAD.astype(np.uint16) * 257
    opaque = np.full_like(GRAD, 255)
    half_clear = opaque.copy()
    half_clear[:, :64] = 0  # the left quarter is transparent, black underneath
    shown = GRAD.copy()
    shown[:, :64] = BACKGROUND[0]
    palette = Image.fromarray(GRAD).convert("P")  # a grey palette: index == level
    palette.info["transparency"] = 0
    on_white = GRAD.copy()
    on_white[:, 0] = 255
    cmyk = np.dstack([0 * GRAD, 0 * GRAD, 0 * GRAD, 255 - GRAD])
    ycc = np.dstack([GRAD, np.full_like(GRAD, 128), np.full_like(GRAD, 128)])
    return {
        "I;16 (png)": (_saved(Image.fromarray(g16), "PNG"), GRAD),
        "I;16B": (Image.frombytes("I;16B", (256, 6), g16.astype(">u2").tobytes()), GRAD),
        "I;16L": (Image.frombytes("I;16L", (256, 6), g16.astype("<u2").tobytes()), GRAD),
        "I;16N": (Image.frombytes("I;16N", (256, 6), g16.astype("=u2").tobytes()), GRAD),
        "I 16-bit samples (ppm)": (_saved(Image.fromarray(g16), "PPM"), GRAD),
        "I 32-bit, stretched": (_saved(Image.fromarray(GRAD.astype(np.int32) * 1000 - 70000), "TIFF"), GRAD),
        "F 0..1 (tiff)": (_saved(Image.fromarray(GRAD.astype(np.float32) / 255), "TIFF"), GRAD),
        "F depth, stretched": (_saved(Image.fromarray(GRAD.astype(np.float32) * 4 + 10), "TIFF"), GRAD),
        "P + transparency (png)": (_saved(palette, "PNG"), on_white),
        "RGBA (png)": (_saved(Image.fromarray(_rgba(half_clear, np.where(half_clear, GRAD, 0))), "PNG"), shown),
        "LA (png)": (_saved(Image.fromarray(np.dstack([GRAD, opaque]), mode="LA"), "PNG"), GRAD),
        "PA": (Image.fromarray(GRAD).convert("PA"), GRAD),
        "La": (Image.fromarray(np.dstack([GRAD, opaque]), mode="LA").convert("La"), GRAD),
        "RGBa": (Image.fromarray(_rgba(half_clear, GRAD)).convert("RGBa"), shown),
        "CMYK (tiff)": (_saved(Image.fromarray(cmyk, mode="CMYK"), "TIFF"), GRAD),
        "CMYK (jpeg)": (_saved(Image.fromarray(cmyk, mode="CMYK"), "JPEG"), GRAD),
        "YCbCr (tiff)": (_saved(Image.fromarray(ycc, mode="YCbCr"), "TIFF"), GRAD),
        "1 (png)": (_saved(Image.fromarray(GRAD).convert("1", dither=Image.Dither.NONE), "PNG"),
                    np.where(GRAD >= 128, 255, 0)),
        "L (png)": (_saved(Image.fromarray(GRAD), "PNG"), GRAD),
        "RGB (jpeg)": (_saved(Image.fromarray(np.dstack([GRAD] * 3)), "JPEG"), GRAD),
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(_cases()))
def test_every_mode_shows_the_same_picture_as_its_8bit_equivalent(case):
    from lift.data.images import to_rgb

    source, want = _cases()[case]
    lossy = "jpeg" in case
    rgb = load_rgb(source) if isinstance(source, bytes) else to_rgb(source)
    if isinstance(source, bytes):
        with Image.open(io.BytesIO(source)) as im:
            assert im.mode == case.split(" ")[0]  # the mode the case claims
    assert rgb.mode == "RGB" and rgb.size == (256, 6)
    got = np.asarray(rgb).astype(np.float64)
    want = np.broadcast_to(np.asarray(want, dtype=np.float64)[..., None], got.shape)
    assert abs(got.mean() - want.mean()) < (2.0 if lossy else 0.5)
    assert np.abs(got - want).max() <= (12 if lossy else 1)
    # the gradient survives: columns rise from black to white like the 8-bit picture's
    assert np.corrcoef(got.mean(axis=(0, 2)), want.mean(axis=(0, 2)))[0, 1] > 0.999


def test_16bit_png_is_not_white_in_training_and_evaluation(tmp_path):
    sixteen = _saved(Image.fromarray(GRAD.astype(np.uint16) * 257), "PNG")
    write_tar(tmp_path / "data" / "00000.tar", [("k.png", sixteen), ("k.txt", "a gradient")])
    as_array = lambda im: torch.from_numpy(np.asarray(im).copy())  # noqa: E731 - the identity transform
    samples = imagetext.build_index(str(tmp_path / "data"))
    item = imagetext.ImageTextDataset(
        samples, imagetext.ReferenceImages(as_array), text_source=CaptionText("fixed", ("short",))
    )[(0, 0)]
    assert abs(item["image"].double().mean().item() - GRAD.mean()) < 0.5
    (tmp_path / "k.png").write_bytes(sixteen)
    _, pixels, error = ImageFiles([tmp_path / "k.png"], as_array)[0]
    assert error is None and abs(pixels.double().mean().item() - GRAD.mean()) < 0.5


# ---- item 11: webdataset keys, every Pillow format, nothing dropped without a count -------------


def test_multi_dot_member_names_follow_webdataset_keys_in_training(tmp_path, capsys):
    rng = np.random.default_rng(0)
    members = []
    for i in range(8):
        members += [(f"img{i}.v2.png", png_bytes(rng, 32)), (f"img{i}.v2.txt", f"caption {i}")]
    write_tar(tmp_path / "data" / "00000.tar", members)
    rc, err, _ = train_cli(capsys, tmp_path, "clip", tmp_path / "data", "--samples", "8")
    assert rc == 0 and skipped_in(err) == 0, err
    index = imagetext.index_data(str(tmp_path / "data"))
    assert [s.key for s in index.samples] == [f"img{i}" for i in range(8)]
    assert all(s.problem is None and s.images == ["v2.png"] for s in index.samples)
    # `lift embed` reads the same captions under the same keys
    kept = imagetext.select_samples(index, views=["short"], policy=ErrorPolicy())
    embedded = read_captions(str(tmp_path / "data" / "00000.tar"))
    assert embedded.keys == [s.key for s in kept] and embedded.skipped == 0
    assert embedded.captions == [caption_of(s.captions, "short") for s in kept]


def test_lift_train_notes_what_the_data_holds_that_it_does_not_use(tmp_path, capsys):
    keys = write_shards(tmp_path / "data", shards=1, per_shard=8, sidecar=False)
    with tarfile.open(tmp_path / "data" / "00000.tar", "a") as tar:  # a label member training has no use for
        info = tarfile.TarInfo(f"{keys[0]}.label.cls")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"3"))
    rc, err, _ = train_cli(capsys, tmp_path, "clip", tmp_path / "data", "--samples", "8")
    where = f"{tmp_path / 'data' / '00000.tar'}:{keys[0]}.label.cls"
    assert rc == 0 and f"note: not used: 1 file or tar member (1 .cls); e.g. {where}\n" in err


def test_image_folders_take_every_pillow_format_and_count_what_they_do_not_use(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "img" / "00000"
    folder.mkdir(parents=True)
    pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    for name, fmt in (("a.gif", "GIF"), ("b.tif", "TIFF"), ("c.v2.png", "PNG"), ("d.JPEG", "JPEG")):
        Image.fromarray(pixels).save(folder / name, format=fmt)
        (folder / f"{name.split('.')[0]}.txt").write_text(f"caption {name}")
    (folder / "notes.md").write_text("hello")
    (folder / "README").write_text("hi")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "e.cls").write_text("3")
    (folder / "orphan.txt").write_text("a caption without its image")
    (folder / "stats.json").write_text("{}")
    index = imagetext.index_data(str(tmp_path / "img"))
    assert sorted(s.key for s in index.samples) == ["a", "b", "c", "d", "orphan"]
    assert sum(index.unused.values()) == 5 and index.unused[".md"] == 1
    assert index.unused["hidden or without an extension"] == 2
    assert index.unused["without an image or caption for their key"] == 1
    note = index.unused_note()
    assert note.startswith("not used: 5 files or tar members") and "1 .cls" in note

    with pytest.raises(LiftError, match=r"orphan.txt: sample 'orphan': no images \(.txt\)"):
        imagetext.select_samples(index, views=["short"], policy=ErrorPolicy())
    policy = ErrorPolicy("skip")
    kept = imagetext.select_samples(index, views=["short"], policy=policy)
    assert sorted(s.key for s in kept) == ["a", "b", "c", "d"] and policy.skipped == 1
    ds = imagetext.ImageTextDataset(
        kept,
        imagetext.ReferenceImages(imagetext.train_transform(32, (0.5,) * 3, (0.5,) * 3)),
        text_source=CaptionText("fixed", ("short",)),
    )
    assert all("error" not in ds[(0, i)] for i in range(4))


def test_tar_keys_with_two_images_or_no_image_are_bad_samples_and_other_members_are_counted(tmp_path):
    rng = np.random.default_rng(0)
    write_tar(tmp_path / "00000.tar", [
        ("ok.jpg", png_bytes(rng)), ("ok.txt", "fine"), ("ok.cls", "1"),
        ("two.jpg", png_bytes(rng)), ("two.seg.png", png_bytes(rng)), ("two.txt", "which one?"),
        ("lonely.txt", "no image"), ("meta.json", "{}"), ("sub/.hidden", "x"),
    ])  # fmt: skip
    index = imagetext.index_data(str(tmp_path / "00000.tar"))
    assert sorted(s.key for s in index.samples) == ["lonely", "ok", "two"]
    assert sum(index.unused.values()) == 3  # ok.cls, meta.json (no image or caption), sub/.hidden
    policy = ErrorPolicy("skip")
    kept = imagetext.select_samples(index, views=["short"], policy=policy)
    assert [s.key for s in kept] == ["ok"] and policy.skipped == 2
    assert any("'two': 2 images (.jpg, .seg.png, .txt)" in e for e in policy.examples)

    # LIFT: a key reported as a bad sample is not reported again as "an embedding without an image"
    store = {"ok": np.ones(4, np.float32), "lonely": np.ones(4, np.float32)}
    policy = ErrorPolicy("skip")
    assert [s.key for s in imagetext.select_samples(index, store=store, policy=policy)] == ["ok"]
    assert policy.skipped == 2
