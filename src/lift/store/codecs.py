"""How float32 embeddings are encoded on disk, one codec per store dtype (`CODECS`, a registry by name).

Every codec stores a fixed-stride little-endian (rows, dim) array, so a shard file is
`np.memmap`-able by any tool that knows rows, dim and the storage dtype. int8 adds one float32
scale per row (symmetric quantisation, scale = max|x| / 127). A new dtype is one `@register_codec`
class; `--store-dtype` lists whatever is registered.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lift.errors import LiftError
from lift.registry import Registry

CODECS: Registry[Codec] = Registry("store dtype", flag="--store-dtype")


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: register one (stateless) instance of the codec under its `name`."""
    doc = (cls.__doc__ or "").strip().splitlines()
    CODECS.add(cls.name, cls(), help=doc[0] if doc else cls.name)
    return cls


class Codec:
    """Encodes (N, dim) float32 into the storage dtype (plus optional per-row scales) and back."""

    name: ClassVar[str]
    storage: ClassVar[np.dtype]
    has_scale: ClassVar[bool] = False

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """x: (N, dim) float32 -> (codes (N, dim) storage dtype, scales (N,) float32 or None)."""
        return np.ascontiguousarray(x, dtype=self.storage), None

    def decode(self, codes: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
        """codes: (N, dim) or (dim,) storage dtype -> float32 of the same shape."""
        return np.asarray(codes, dtype=np.float32)


@register_codec
class Float32Codec(Codec):
    """float32, exact (4 bytes per value)"""

    name = "float32"
    storage = np.dtype("<f4")


@register_codec
class Float16Codec(Codec):
    """float16 (2 bytes per value)"""

    name = "float16"
    storage = np.dtype("<f2")


@register_codec
class BFloat16Codec(Codec):
    """bfloat16 kept as its raw uint16 bits: numpy has no bfloat16, the bits are the upper half of float32."""

    name = "bfloat16"
    storage = np.dtype("<u2")

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
        # round to nearest, ties to even (what torch and the hardware do)
        rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
        return (rounded >> np.uint32(16)).astype(self.storage), None

    def decode(self, codes: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
        return (np.asarray(codes).astype(np.uint32) << np.uint32(16)).view(np.float32)


@register_codec
class Int8Codec(Codec):
    """Symmetric per-row quantisation: codes in [-127, 127], x ~= codes * scale."""

    name = "int8"
    storage = np.dtype("i1")
    has_scale = True

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(x, dtype=np.float32)
        scales = (np.abs(x).max(axis=1) / 127.0).astype("<f4") if x.size else np.zeros(len(x), "<f4")
        safe = np.where(scales > 0, scales, 1.0).astype(np.float32)  # an all-zero row stays zero
        codes = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(self.storage)
        return codes, scales

    def decode(self, codes: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
        assert scales is not None
        scales = np.asarray(scales, dtype=np.float32)
        return np.multiply(codes, scales[..., None] if scales.ndim else scales, dtype=np.float32)


def get_codec(dtype: str) -> Codec:
    """The codec of a store dtype; a one-line LiftError naming the registered ones otherwise (worded for
    a store's or an API caller's dtype: the CLI's `--store-dtype` choices come from CODECS already)."""
    if not isinstance(dtype, str) or dtype not in CODECS:
        raise LiftError(f"unknown store dtype {dtype!r}; choose one of {', '.join(CODECS.names())}")
    return CODECS.get(dtype)


STORE_DTYPES: tuple[str, ...] = tuple(CODECS.names())  # the built-ins; CLI choices ask CODECS itself
