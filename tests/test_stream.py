"""The stream data order (`lift.data.stream`): whole shards read in order from local paths, `pipe:`
commands and a slow loopback HTTP server; every sample once per epoch across ranks and workers; an order
that depends on (seed, epoch) only; exact resume; damaged shards and missing keys counted; LIFT vectors
read beside the shard."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lift.bench.data import SlowServer
from lift.data.imagetext import ReferenceImages
from lift.data.stream import StreamDataset, epoch_samples, replay, shard_order
from lift.errors import ErrorPolicy, LiftError
from lift.methods.clip import CaptionText
from lift.methods.lift import StoreText
from lift.store import open_store
from train_fixtures import png_bytes, write_shards, write_store, write_tar


def transform(image) -> torch.Tensor:  # wrapped in ReferenceImages: seeded like a real crop
    """A tiny transform with a random part, so seeded augmentation shows in the tensors."""
    x = torch.from_numpy(np.asarray(image.resize((4, 4)), dtype=np.float32)).permute(2, 0, 1)
    return x + torch.rand(1)


def clip_stream(shards, **kw) -> StreamDataset:
    kw = {"batch_size": 4, "seed": 3, "buffer": 6, **kw}
    return StreamDataset(
        shards, images=ReferenceImages(transform), text_source=CaptionText("fixed", ("short",)), **kw
    )


def take(ds: StreamDataset, n: int, loader=None) -> list[dict]:
    """n batches, each recorded as consumed."""
    it = iter(loader if loader is not None else ds)
    out = []
    for _ in range(n):
        batch = next(it)
        ds.consumed(batch)
        out.append(batch)
    del it
    return out


def keys(batches: list[dict]) -> list[str]:
    return [k for b in batches for k in b["keys"]]


def where(batches: list[dict]) -> list[tuple]:
    return [tuple(w) for b in batches for w in b["where"]]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("stream") / "shards"
    return root, write_shards(root, shards=5, per_shard=7)


def tars(root: Path) -> list[str]:
    return sorted(str(p) for p in root.glob("*.tar"))


def test_every_sample_once_per_epoch_across_2_ranks_x_2_workers(data) -> None:
    root, all_keys = data
    per_epoch: dict[int, list[str]] = {0: [], 1: []}
    shards_of: dict[int, list[set]] = {0: [], 1: []}
    for rank in range(2):
        ds = clip_stream(str(root), rank=rank, world_size=2, workers=2)
        for lane in range(2):
            mine = {0: set(), 1: set()}
            for rec, epoch in ds.lane_records(lane):
                if epoch == 2:
                    break
                assert rec.error is None and rec.problem is None
                per_epoch[epoch].append(rec.key)
                mine[epoch].add(rec.shard)
            for e in (0, 1):
                shards_of[e].append(mine[e])
    for e in (0, 1):
        assert sorted(per_epoch[e]) == sorted(all_keys)  # each once, none missing
        assert sorted(s for slot in shards_of[e] for s in slot) == list(range(5))  # a shard to one slot
    assert per_epoch[0] != per_epoch[1]  # a new permutation and shuffle each epoch


def test_order_depends_on_seed_and_epoch_only(data, tmp_path) -> None:
    root, _ = data
    local = keys(take(clip_stream(str(root)), 12))
    piped = keys(take(clip_stream([f"pipe:cat {p}" for p in tars(root)]), 12))
    with SlowServer(root, latency=0.002, jitter=0.02) as server:
        urls = [f"{server.url}/{Path(p).name}" for p in tars(root)]
        remote = keys(take(clip_stream(urls), 12))
        # two workers racing on a jittery server: batches still come in one order
        ds = clip_stream(urls, workers=2)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        racing = take(ds, 12, loader)
    ds = clip_stream(str(root), workers=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    calm = take(ds, 12, loader)
    assert local == piped == remote
    assert keys(racing) == keys(calm) and where(racing) == where(calm)
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(racing, calm))
    assert keys(take(clip_stream(str(root), seed=4), 12)) != local
    assert shard_order(5, seed=3, epoch=0) != shard_order(5, seed=3, epoch=1)


@pytest.mark.parametrize("buffer,at", [(6, 1), (6, 4), (40, 2), (3, 9), (1, 5)])
def test_resume_gives_exactly_the_rest_of_the_stream(data, buffer, at) -> None:
    """Cut after `at` batches (mid-shard, mid-fill, at and past an epoch's end: 35 samples an epoch),
    save the position as JSON, resume in a new dataset: the same batches as without the cut."""
    root, _ = data
    whole = take(clip_stream(str(root), buffer=buffer), 20)
    first = clip_stream(str(root), buffer=buffer)
    take(first, at)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = clip_stream(str(root), buffer=buffer)
    resumed.load_state_dict(state)
    rest = take(resumed, 20 - at)
    assert where(rest) == where(whole[at:])
    assert keys(rest) == keys(whole[at:])
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(rest, whole[at:]))


def test_resume_with_dataloader_workers(data, tmp_path) -> None:
    root, _ = data

    def run(n: int, state=None) -> tuple[list[dict], StreamDataset]:
        ds = clip_stream(str(root), workers=2)
        if state is not None:
            ds.load_state_dict(state)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        return take(ds, n, loader), ds

    whole, _ = run(13)
    head, ds = run(5)  # an odd count: the resumed loader's worker 0 must play lane 1
    torch.save({"stream": ds.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)["stream"]
    rest, _ = run(8, state)
    assert where(head + rest) == where(whole)
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(head + rest, whole))


def test_a_resume_with_another_layout_is_refused_or_resplit(data) -> None:
    root, all_keys = data
    ranks = [clip_stream(str(root), rank=r, world_size=2, buffer=4) for r in range(2)]
    seen = [k for ds in ranks for k in keys(take(ds, 2))]  # 16 of the 35 samples of epoch 0
    states = [ds.state_dict() for ds in ranks]
    one = clip_stream(str(root), buffer=4)
    with pytest.raises(LiftError, match=r"for 2 rank\(s\) x 1 worker\(s\), this run has 1 x 1"):
        one.load_state_dict(states)
    one.load_state_dict(states, relayout=True)
    assert "from 2 x 1 to 1 x 1" in one.note
    rest = []
    for rec, epoch in one.lane_records(0):
        if epoch > 0:
            break
        rest.append(rec.key)
    assert set(seen) | set(rest) == set(all_keys)  # nothing of the interrupted epoch skipped
    assert len(rest) == len(set(rest))


def test_state_refuses_other_data(data, tmp_path) -> None:
    root, _ = data
    ds = clip_stream(str(root))
    take(ds, 1)
    state = ds.state_dict()
    other = clip_stream(tars(root)[:4])
    with pytest.raises(LiftError, match="the checkpoint's data differs .*shards: 5 != 4"):
        other.load_state_dict(state)
    with pytest.raises(LiftError, match="buffer: 6 != 7"):
        clip_stream(str(root), buffer=7).load_state_dict(state)


def test_a_truncated_remote_shard_is_a_counted_error_naming_it(data, tmp_path) -> None:
    root, all_keys = data
    cut_root = tmp_path / "cut"
    shutil.copytree(root, cut_root)
    # 00003.tar cut at a member boundary: tarfile alone would read a shorter, valid-looking shard
    with tarfile.open(cut_root / "00003.tar") as tar:
        at = tar.getmembers()[6].offset  # after two whole samples
    raw = (cut_root / "00003.tar").read_bytes()
    (cut_root / "00003.tar").write_bytes(raw[:at])
    with SlowServer(cut_root, latency=0.001, cut={"00001.tar": 5000}) as server:
        ds = clip_stream([f"{server.url}/{p.name}" for p in sorted(cut_root.glob("*.tar"))], batch_size=1)
        policy = ErrorPolicy("skip")
        good = []
        it = iter(ds)
        while (batch := next(it))["where"][0][0] == 0:  # epoch 0
            ds.consumed(batch)
            for message in batch["errors"]:
                policy.fail(message)
            good += batch["keys"]
        del it
    assert policy.skipped == 2
    messages = " | ".join(policy.examples)
    assert "00001.tar: the shard could not be read to its end" in messages
    assert "00003.tar: tar shard is truncated at byte" in messages
    assert len(good) == len(set(good)) and set(good) < set(all_keys)
    assert {k for k in all_keys if k[:5] in ("00000", "00002", "00004")} <= set(good)


def test_a_failing_pipe_command_is_a_counted_error(data) -> None:
    root, _ = data
    urls = [*tars(root)[:3], "pipe:cat /nonexistent/00009.tar"]
    ds = clip_stream(urls, batch_size=1)
    errors = [e for b in take(ds, 22) for e in b["errors"]]
    assert errors == [
        "pipe:cat /nonexistent/00009.tar: the shard could not be read to its end (its reader exited with status 1)"
    ]


def test_lift_vectors_read_beside_the_shard_equal_the_store(data, tmp_path) -> None:
    root, all_keys = data
    dropped, extra = all_keys[3], "000049999"
    # the store of shard 00002 in reverse row order: found out of order all the same
    stored = [k for k in all_keys if k != dropped and k[:5] != "00002"]
    stored += [extra] + [k for k in all_keys if k[:5] == "00002"][::-1]
    store = open_store(write_store(tmp_path / "store", stored))
    ds = StreamDataset(
        str(root), images=ReferenceImages(transform), text_source=StoreText(store, "fixed", [0]), batch_size=6, seed=1,
        buffer=5, store=store,
    )  # fmt: skip
    seen, errors = {}, []
    for batch in take(ds, 6):  # 36 records: 34 samples, 2 errors
        errors += batch["errors"]
        for key, vector in zip(batch["keys"], batch["texts"]):
            seen[key] = vector.numpy()
    assert sorted(seen) == sorted(k for k in all_keys if k != dropped)
    for key, vector in seen.items():
        np.testing.assert_array_equal(vector, store[key])
    assert sorted(errors) == sorted([
        f"{root}/00000.tar: sample {dropped!r} has no embedding in the store",
        f"store shard 00004: key {extra!r} has an embedding but no image in the data",
    ])  # fmt: skip


def test_lift_resume_keeps_the_store_aligned(data, tmp_path) -> None:
    root, all_keys = data
    store = open_store(write_store(tmp_path / "store", all_keys))

    def lift_stream() -> StreamDataset:
        return StreamDataset(
            str(root), images=ReferenceImages(transform), text_source=StoreText(store, "fixed", [0]), batch_size=4,
            seed=2, buffer=5, store=store,
        )  # fmt: skip

    whole = take(lift_stream(), 12)
    first = lift_stream()
    take(first, 5)
    second = lift_stream()
    second.load_state_dict(first.state_dict())
    rest = take(second, 7)
    assert keys(rest) == keys(whole[5:])
    assert all(torch.equal(a["texts"], b["texts"]) for a, b in zip(rest, whole[5:]))


def test_clip_captions_from_parquet_sidecars_and_bad_captions(tmp_path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "d"
    write_shards(root, shards=2, per_shard=4)
    write_tar(root / "00002.tar", {"a.png": png_bytes(rng), "a.txt": "  ", "b.png": png_bytes(rng),
                                   "b.json": json.dumps({"re_caption": "long b"}), "c.jpg": b"not a jpeg",
                                   "c.json": json.dumps({"re_caption": "long c"}), "d.txt": "no image"})  # fmt: skip
    ds = StreamDataset(
        str(root), images=ReferenceImages(transform), text_source=CaptionText("fixed", ("long",)), batch_size=12, seed=0,
        buffer=3, views=("long",),
    )  # fmt: skip
    batch = take(ds, 1)[0]
    texts = dict(zip(batch["keys"], batch["texts"]))
    assert texts["000000001"] == "a long caption describing sample 000000001 in detail"  # the parquet
    assert texts["b"] == "long b"  # the sample's own .json
    errors = sorted(batch["errors"])
    assert len(errors) == 3
    assert errors[0].startswith(f"{root}/00002.tar: sample 'a': no long caption")
    assert errors[1].startswith(f"{root}/00002.tar: sample 'c': corrupt image c.jpg")
    assert errors[2].startswith(f"{root}/00002.tar: sample 'd': no images (.txt)")


def test_shards_fewer_than_slots_and_wrong_worker_count_are_refused(data) -> None:
    root, _ = data
    with pytest.raises(LiftError, match=r"5 shard\(s\) cannot feed 2 rank\(s\) x 3 worker\(s\)"):
        clip_stream(str(root), world_size=2, workers=3)
    ds = clip_stream(str(root), workers=2)
    with pytest.raises(LiftError, match=r"made for 2 DataLoader worker\(s\) but runs in 1"):
        take(ds, 1)


def test_replay_matches_the_live_buffer() -> None:
    """The replay of a lane's draws knows which inputs the buffer holds, without reading data."""
    from lift.data.stream import _Draws

    for length, buffer in ((50, 8), (5, 8), (8, 8)):
        draws = _Draws(0, 0, 0, 0)
        buf, outs = list(range(min(buffer, length))), []
        nxt = len(buf)
        while buf:
            if nxt < length:
                i = draws.pick(buffer)
                outs.append(buf[i])
                buf[i], nxt = nxt, nxt + 1
            else:
                i = draws.pick(len(buf))
                outs.append(buf[i])
                buf[i] = buf[-1]
                buf.pop()
        assert sorted(outs) == list(range(length))
        for n in range(length + 1):
            held, at = replay(n, buffer, length if n > length - buffer else None, _Draws(0, 0, 0, 0))
            assert sorted(held) == sorted(set(range(at)) - set(outs[:n]))


def test_epoch_samples_known_up_front(data, tmp_path) -> None:
    root, all_keys = data
    assert epoch_samples(str(root)) == len(all_keys)
    store = open_store(write_store(tmp_path / "store", all_keys[:-1]))
    assert epoch_samples(str(root), store=store) == len(all_keys) - 1
    assert epoch_samples(["http://127.0.0.1:9/00000.tar"]) is None
