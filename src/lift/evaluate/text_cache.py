"""On-disk cache of text embeddings keyed by (text encoder identity, text), so class prompts and
captions are embedded once across runs.

One sqlite file (stdlib, transactional: a run killed mid-write leaves only whole rows). Vectors are
stored as the exact float32 the encoder returned, so a hit returns bit-identical values and the
cache never changes a result. The identity is a hash of the model's text identity dict when it names a frozen
encoder (LIFT: weights hash, pooling, max length, instruction...), else (a CLIP checkpoint, whose
text tower is trained) of the model's weights; a model with neither is not cached.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lift.errors import LiftError
from lift.methods import identity_key, weights_key

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS emb (identity TEXT NOT NULL, text TEXT NOT NULL, vec BLOB NOT NULL, "
    "PRIMARY KEY (identity, text)) WITHOUT ROWID"
)
_CHUNK = 500  # stay under sqlite's bound-variable limit on old builds


def default_cache_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "lift" / "text_embeddings.sqlite"


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:32]


def text_identity_key(model: Any) -> str | None:
    """A stable key for the text side of `model`, or None when it has no stable identity.

    A model from `lift.load` says it itself (`text_cache_key`: its method decides, e.g. LIFT's frozen
    encoder identity plus its text adapter's weights); for other models, a frozen encoder's identity
    when `text_identity` names one, else a hash of the weights.
    """
    if hasattr(model, "text_cache_key"):
        return model.text_cache_key
    ident = getattr(model, "text_identity", None)
    if isinstance(ident, dict) and ident.get("weights_sha256"):
        return identity_key(ident)
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    return weights_key(state, type(model).__qualname__) if state else None


class TextEmbeddingCache:
    """`get(identity, texts) -> {text: vector}` and `put(identity, texts, vectors)` over one sqlite file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.Error as e:
            raise LiftError(f"{self.path}: cannot open the text embedding cache: {e}") from None

    def get(self, identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(texts))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT text, vec FROM emb WHERE identity = ? AND text IN ({marks})", [identity, *chunk]
            )
            for text, blob in rows:
                found[text] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, identity: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (identity, t, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for t, v in zip(texts, vectors)
        ]
        with self._db:  # one transaction: all rows of the batch or none
            self._db.executemany("INSERT OR IGNORE INTO emb VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0]

    def close(self) -> None:
        self._db.close()


@dataclass
class TextStats:
    """What the last embedding calls cost: texts asked for, served by the cache, and encoder calls."""

    requested: int = 0
    unique: int = 0
    cache_hits: int = 0
    encoded: int = 0
    encoder_calls: int = 0


@torch.no_grad()
def embed_texts(
    model: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    cache: TextEmbeddingCache | None = None,
    stats: TextStats | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Normalised embeddings of `texts` (float32, CPU) -> Tensor[len(texts), D].

    Each distinct text is embedded once; cached ones are not embedded at all.
    """
    stats = stats if stats is not None else TextStats()
    unique = list(dict.fromkeys(texts))
    stats.requested += len(texts)
    stats.unique += len(unique)
    identity = text_identity_key(model) if cache is not None else None
    vectors: dict[str, np.ndarray] = cache.get(identity, unique) if identity is not None else {}
    stats.cache_hits += len(vectors)
    # Length-sorted batches waste the least padding.
    missing = sorted((t for t in unique if t not in vectors), key=len)
    batches = range(0, len(missing), batch_size)
    for i in tqdm(batches, desc="texts", unit="batch", disable=not progress or len(batches) < 2, leave=False):
        batch = missing[i : i + batch_size]
        out = model.encode_text(list(batch), normalize=True).detach().float().cpu().numpy()
        stats.encoder_calls += 1
        stats.encoded += len(batch)
        if identity is not None:
            cache.put(identity, batch, out)
        vectors.update(zip(batch, out))
    if not texts:
        return torch.zeros(0, 0)
    return torch.from_numpy(np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False))
