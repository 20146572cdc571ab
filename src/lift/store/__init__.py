"""The embedding store: caption embeddings written once by `lift embed`, read by training and eval.

    from lift.store import StoreWriter, open_store
    w = StoreWriter("emb/", identity=encoder.identity, dim=384, dtype="float16", shard_names=names)
    for i in range(len(names)):
        if not w.is_done(i):
            w.write_shard(i, keys, embeddings)      # atomic, one shard at a time
    w.finalize()                                    # key index + manifest.json
    store = open_store("emb/")
    store["000000042"], store.get(0, 5), store.get_many(keys), store.iter_shard(0)

See `lift.store.format` for the on-disk layout.
"""

from lift.store.codecs import STORE_DTYPES
from lift.store.format import StoreDamaged
from lift.store.reader import EmbeddingStore, KeyNotInStore, open_store
from lift.store.writer import StoreWriter

__all__ = ["STORE_DTYPES", "EmbeddingStore", "KeyNotInStore", "StoreDamaged", "StoreWriter", "open_store"]
