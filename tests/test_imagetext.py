"""The image-text data pipeline: index, captions, join with embeddings, bad input, world-size-free order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lift.data import imagetext
from lift.data.views import ViewChoice
from lift.errors import ErrorPolicy, LiftError
from lift.methods.clip import CaptionText
from lift.methods.lift import StoreText
from train_fixtures import png_bytes, write_shards

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _dataset(samples, captions="short", seed=0):
    choice = ViewChoice.parse(captions)
    views = choice.views or ("short", "long")
    return imagetext.ImageTextDataset(samples, imagetext.ReferenceImages(imagetext.train_transform(32, MEAN, STD)),
                                      text_source=CaptionText(choice.mode, views), seed=seed)  # fmt: skip


def test_index_reads_tars_sidecar_captions_and_images(tmp_path):
    keys = write_shards(tmp_path / "train")
    samples = imagetext.build_index(str(tmp_path / "train"))
    assert [s.key for s in samples] == keys
    brace = imagetext.build_index(str(tmp_path / "train" / "{00000..00001}.tar"))
    assert [s.key for s in brace] == keys
    short = _dataset(samples, captions="short")[(0, 3)]
    long = _dataset(samples, captions="long")[(0, 3)]
    assert short["text"] == f"short caption {keys[3]}"
    assert long["text"].startswith("a long caption") and keys[3] in long["text"]
    assert short["image"].shape == (3, 32, 32)


def test_txt_caption_without_parquet_and_missing_long_caption(tmp_path):
    write_shards(tmp_path, sidecar=False, shards=1)
    samples = imagetext.build_index(str(tmp_path))
    assert _dataset(samples)[(0, 0)]["text"] == "short caption 000000000"
    bad = _dataset(samples, captions="long")[(0, 0)]
    assert "no long caption" in bad["error"] and "000000000" in bad["error"]


def test_image_folder_with_parquet_metadata(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    (tmp_path / "img" / "00000").mkdir(parents=True)
    for k in ("a1", "b2"):
        (tmp_path / "img" / "00000" / f"{k}.jpg").write_bytes(png_bytes(rng))
    pq.write_table(
        pa.Table.from_pylist([{"key": "a1", "org_caption": "x", "re_caption": "long x"},
                              {"key": "b2", "org_caption": "y", "re_caption": "long y"}]),
        tmp_path / "meta.parquet",
    )  # fmt: skip
    samples = imagetext.build_index(str(tmp_path / "img"), metadata=str(tmp_path / "meta.parquet"))
    ds = _dataset(samples, captions="long")
    assert sorted(ds[(0, i)]["text"] for i in range(2)) == ["long x", "long y"]


def test_augmentation_and_random_caption_depend_only_on_seed_epoch_index(tmp_path):
    write_shards(tmp_path, shards=1)
    ds = _dataset(imagetext.build_index(str(tmp_path)), captions="random", seed=3)
    torch.manual_seed(0)
    a = ds[(1, 5)]
    torch.manual_seed(123)  # the global RNG must not matter
    b = ds[(1, 5)]
    assert torch.equal(a["image"], b["image"]) and a["text"] == b["text"]
    assert not torch.equal(ds[(2, 5)]["image"], a["image"])
    captions = {ds[(e, 5)]["text"][:5] for e in range(12)}
    assert captions == {"short", "a lon"}  # random picks both kinds across epochs


def test_lift_join_and_bad_embeddings(tmp_path):
    keys = write_shards(tmp_path, shards=1)
    rng = np.random.default_rng(0)
    store = {k: rng.standard_normal(8).astype(np.float32) for k in keys[1:]}
    store[keys[2]][3] = np.nan
    samples = imagetext.build_index(str(tmp_path))
    with pytest.raises(LiftError, match=f"{keys[0]}.*no embedding"):
        imagetext.join_store(samples, store, ErrorPolicy("stop"))
    policy = ErrorPolicy("skip")
    kept = imagetext.join_store(samples, store, policy)
    assert policy.skipped == 1 and len(kept) == len(keys) - 1
    ds = imagetext.ImageTextDataset(kept, imagetext.ReferenceImages(imagetext.train_transform(32, MEAN, STD)),
                                    text_source=StoreText(store, "fixed", [0]))  # fmt: skip
    item = ds[(0, 0)]
    assert np.array_equal(item["text"], store[keys[1]])
    assert "NaN or inf" in ds[(0, 1)]["error"] and keys[2] in ds[(0, 1)]["error"]


def test_corrupt_image_becomes_an_error_record_and_collate_drops_it(tmp_path):
    import webdataset as wds

    rng = np.random.default_rng(0)
    with wds.TarWriter(str(tmp_path / "00000.tar")) as w:
        w.write({"__key__": "good", "png": png_bytes(rng), "txt": "ok"})
        w.write({"__key__": "broken", "png": b"not a png at all", "txt": "bad"})
    ds = _dataset(imagetext.build_index(str(tmp_path)))
    batch = imagetext.collate([ds[(0, 0)], ds[(0, 1)]])
    assert batch["keys"] == ["good"] and batch["images"].shape[0] == 1
    assert (
        len(batch["errors"]) == 1 and "broken" in batch["errors"][0] and "corrupt image" in batch["errors"][0]
    )


def test_not_a_tar_names_the_file(tmp_path):
    (tmp_path / "00000.tar").write_bytes(b"garbage" * 100)
    with pytest.raises(LiftError, match="00000.tar"):
        imagetext.build_index(str(tmp_path))


def test_global_batches_do_not_depend_on_world_size_or_resume():
    kw = {"seed": 7, "total_steps": 9}
    one = list(imagetext.GlobalBatchSampler(20, 4, **kw))
    two = [imagetext.GlobalBatchSampler(20, 4, rank=r, world_size=2, **kw) for r in range(2)]
    merged = [a + b for a, b in zip(*two)]
    assert merged == one
    assert list(imagetext.GlobalBatchSampler(20, 4, start_step=6, **kw)) == one[6:]
    epochs = [{i for _, i in sum(one[e * 5 : e * 5 + 5], [])} for e in range(1)]
    assert len(epochs[0]) == 20  # an epoch visits every sample once
    assert one[5] != one[0] and one[5][0][0] == 1  # epoch 1 is a new permutation
    with pytest.raises(LiftError, match="divisible"):
        imagetext.GlobalBatchSampler(20, 5, rank=0, world_size=2, **kw)


def test_eval_transform_center_crops():
    t = imagetext.eval_transform(32, MEAN, STD)
    assert t(Image.new("RGB", (64, 48))).shape == (3, 32, 32)
