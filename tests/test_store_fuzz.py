"""Fuzzing the store reader with truncated, grown and byte-flipped files.

The contract: damage to any file is caught, either by `open_store` (sizes, manifest checksum) or
by `verify()` (checksums); reads of a damaged store raise LiftError or return the right vector,
never another exception. The one documented exception: a flipped byte inside the embedding data
(.emb / .scale) is not seen by a plain lookup (lookups do not checksum every read) but verify()
names it. Truncated or grown data files are always refused on open.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lift.errors import LiftError
from lift.store import StoreWriter, open_store

DIM = 8
ROWS = (13, 0, 9)


@pytest.fixture(scope="module", params=["int8", "float16"])
def clean_store(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}") / "store"
    w = StoreWriter(
        root, identity={"model": "fuzz"}, dim=DIM, dtype=request.param, shard_names=["a", "b", "c"]
    )
    rng = np.random.default_rng(0)
    for i, n in enumerate(ROWS):
        keys = [f"{i}-{j:04d}" if j % 2 else f"ключ-{i}-{j}" for j in range(n)]
        w.write_shard(i, keys, rng.standard_normal((n, DIM)).astype(np.float32), skipped=i)
    w.finalize()
    store = open_store(root)
    expected = {k: store[k] for k in store}
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return root, expected, files


def _damage(path: Path, mode: str, where: int, mask: int) -> None:
    raw = bytearray(path.read_bytes())
    if not raw or mode == "grow":
        raw += bytes([mask])
    elif mode == "truncate":
        del raw[where % len(raw) :]
    else:
        raw[where % len(raw)] ^= mask
    path.write_bytes(bytes(raw))


def _same_json(a: Path, b: Path) -> bool:
    """A whitespace-only change to a JSON file leaves its content, and the store, intact."""
    try:
        return json.loads(a.read_bytes()) == json.loads(b.read_bytes())
    except ValueError:
        return False


def _reads(store, expected: dict[str, np.ndarray], embeddings_damaged: bool) -> None:
    """Every read either raises LiftError or, unless the embedding bytes were hit, is right."""
    for key, want in expected.items():
        try:
            got = store[key]
        except LiftError:
            continue
        if not embeddings_damaged:
            np.testing.assert_array_equal(got, want)
    for read in (
        lambda: store.get_many(list(expected)),
        lambda: list(store.keys()),
        lambda: [store.shard_keys(i) for i in range(store.num_shards)],
        lambda: [list(store.iter_shard(i, batch_size=4)) for i in range(store.num_shards)],
        lambda: [store.get(i, 0) for i in (0, 2)],
    ):
        with contextlib.suppress(LiftError):
            read()


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    pick=st.integers(min_value=0, max_value=10**6),
    mode=st.sampled_from(["flip", "truncate", "grow"]),
    where=st.integers(min_value=0, max_value=10**6),
    mask=st.integers(min_value=1, max_value=255),
)
def test_damaged_files_are_caught_never_misread(clean_store, pick, mode, where, mask):
    src, expected, files = clean_store
    rel = files[pick % len(files)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        shutil.copytree(src, root)
        _damage(root / rel, mode, where, mask)
        benign = rel.endswith(".json") and _same_json(root / rel, src / rel)
        try:
            store = open_store(root)
        except LiftError:
            assert not benign, f"{rel}: a harmless change was refused"
            return
        assert rel.endswith(".json") or mode == "flip", f"{rel}: a {mode}d data file was not refused on open"
        problems = store.verify()
        assert bool(problems) != benign, f"{mode} of {rel}: verify said {problems}"
        _reads(store, expected, embeddings_damaged=rel.endswith((".emb", ".scale")))
        store.close()


@pytest.mark.parametrize("rel", ["index.row", "index.hash", "shards/00000.koff", "shards/00000.keys"])
def test_every_flipped_key_or_index_byte_gives_an_error_not_another_vector(clean_store, rel, tmp_path):
    """Exhaustive over the small files a lookup trusts to find a row: each bit-0 flip, one at a time."""
    src, expected, _ = clean_store
    root = tmp_path / "store"
    shutil.copytree(src, root)
    path = root / rel
    raw = path.read_bytes()
    wrong = 0
    for pos in range(len(raw)):
        path.write_bytes(raw[:pos] + bytes([raw[pos] ^ 1]) + raw[pos + 1 :])
        store = open_store(root)  # same sizes: opens; lookups must not be fooled
        for key, want in expected.items():
            with contextlib.suppress(LiftError):
                wrong += not np.array_equal(store[key], want)
        assert store.verify(), f"flip at byte {pos} of {rel} went unnoticed by verify"
        store.close()
    assert wrong == 0
