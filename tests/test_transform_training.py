"""A model trained on a transformed store (`lift store transform`) reads text through the same fitted
map: `lift.load(...).encode_text` equals the stored vectors, and a store of another map is refused."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

import lift
from lift import checkpoint as ckpt
from lift.errors import LiftError
from lift.store import open_store
from lift.store.transform_job import transform_store
from lift.text import TextEncoder
from lift.text.default import default_encoder_path
from lift.train import train
from lift.train_config import train_config_from_dict
from train_fixtures import write_shards


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from lift.store import StoreWriter

    root = tmp_path_factory.mktemp("world")
    keys = write_shards(root / "train", shards=1, per_shard=32)
    enc = TextEncoder.from_pretrained("default")
    raw = StoreWriter(root / "raw", identity=enc.identity, dim=enc.dim, dtype="float32", shard_names=["00000"],
                      extra={"text_encoder_path": str(default_encoder_path())})  # fmt: skip
    captions = [f"short caption {k}" for k in keys]
    raw.write_shard(0, keys, enc.encode(captions).numpy())
    raw.finalize()
    transform_store(store=str(root / "raw"), out=str(root / "pca"), pca=24, dtype="float32", progress=False)
    transform_store(
        store=str(root / "raw"), out=str(root / "center"), center=True, dtype="float32", progress=False
    )
    return root, keys, captions


def _cfg(root, out, store, **kw):
    return train_config_from_dict({"train_data": str(root / "train"), "store": str(store), "out": str(out),
                                   "batch_size": 8, "samples": 16, "save_every": 1, "seed": 0, **kw})  # fmt: skip


def test_training_and_encode_text_see_the_same_map(world, tmp_path):
    root, keys, captions = world
    train(_cfg(root, tmp_path / "run", root / "pca"))
    store = open_store(root / "pca")
    saved = ckpt.load_config(ckpt.resolve_checkpoint(tmp_path / "run"))
    assert saved["text_transform"] == store.transform.identity and saved["store_dim"] == 24
    model = lift.load(tmp_path / "run")
    weights = ckpt.load_weights(ckpt.resolve_checkpoint(tmp_path / "run"))
    assert torch.equal(weights["text_transform_matrix"], torch.from_numpy(store.transform.matrix))
    through_load = model.encode_text(captions[:6])  # the frozen encoder, then the store's map
    stored = model.model.encode_text(torch.from_numpy(store.get_many(keys[:6])))
    torch.testing.assert_close(through_load, stored, atol=2e-5, rtol=0)
    assert through_load.shape == (6, 24) and torch.allclose(through_load.norm(dim=-1), torch.ones(6))
    assert "-t" + store.transform.identity["sha256"][:16] in model.text_cache_key


def test_a_store_of_another_map_is_refused_on_resume(world, tmp_path):
    root, _, _ = world
    store = tmp_path / "store"
    shutil.copytree(root / "pca", store)
    train(_cfg(root, tmp_path / "run", store, samples=24))
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-000003")
    shutil.rmtree(store)
    transform_store(store=str(root / "raw"), out=str(store), pca=24, seed=5, fit_rows=30, dtype="float32",
                    progress=False)  # fmt: skip
    with pytest.raises(LiftError, match="text transform mismatch between checkpoint .* and store"):
        train(_cfg(root, tmp_path / "run", store, samples=24, resume="latest"))


def test_a_raw_and_a_centred_store_give_different_text_sides(world, tmp_path):
    root, _, captions = world
    train(_cfg(root, tmp_path / "raw", root / "raw"))
    train(_cfg(root, tmp_path / "center", root / "center"))
    raw, zca = lift.load(tmp_path / "raw"), lift.load(tmp_path / "center")
    assert raw.model.config.text_transform is None and zca.model.config.text_transform["chain"] == ["center"]
    a, b = raw.model.transform_text(torch.ones(1, 384)), zca.model.transform_text(torch.ones(1, 384))
    assert torch.equal(a, torch.ones(1, 384)) and not torch.allclose(F.normalize(a), F.normalize(b))
    assert raw.text_cache_key != zca.text_cache_key
