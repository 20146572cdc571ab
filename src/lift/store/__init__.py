"""The embedding store: caption embeddings written once by `lift embed`, read by training and eval.

    from lift.store import StoreWriter, open_store
    w = StoreWriter("emb/", identity=encoder.identity, dim=384, dtype="float16", shard_names=names)
    for i in range(len(names)):
        if not w.is_done(i):
            w.write_shard(i, keys, embeddings)      # atomic, one shard at a time
    w.finalize()                                    # key index + manifest.json
    store = open_store("emb/")
    store["000000042"], store.get(0, 5), store.get_many(keys), store.iter_shard(0)

Several views per key (one vector per caption field): `StoreWriter(..., views=["org_caption",
"re_caption"])` takes (N, V, dim) embeddings; `store.views`, `store.view_index(name)`;
`store[key]` is (V, dim), `store.get_many(keys)` (N, V, dim) and `store.get_many(keys, view="re_caption")`
(N, dim). A one-view store reads exactly as before: (dim,) and (N, dim).

A transformed store (`lift store transform`, `lift.store.transform_job.transform_store`) holds the map
from the text encoder's raw output to its vectors: `store.transform` (a `StoreTransform`, None for an
untransformed store); `store.transform.apply(raw)` gives vectors comparable with the store's.

See `lift.store.format` for the on-disk layout.
"""

from lift.store.codecs import STORE_DTYPES
from lift.store.format import StoreDamaged
from lift.store.reader import EmbeddingStore, KeyNotInStore, open_store
from lift.store.transform import StoreTransform
from lift.store.writer import StoreWriter, ViewsDiffer

__all__ = [
    "STORE_DTYPES",
    "EmbeddingStore",
    "KeyNotInStore",
    "StoreDamaged",
    "StoreTransform",
    "StoreWriter",
    "ViewsDiffer",
    "open_store",
]
