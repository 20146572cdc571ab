"""Decoding an image file into the 8-bit RGB picture a vision tower sees, for every mode Pillow opens.

`Image.convert("RGB")` is not enough: it clips wide samples instead of scaling them (a 16-bit PNG of a
0..65535 gradient comes out 99.6% white) and drops alpha, showing whatever colour sits under
transparent pixels. The rules, one per kind of mode:

- 16-bit grey (`I;16`, `I;16B`, `I;16L`, `I;16N`): divided by 257, so 0..65535 maps onto 0..255 exactly.
- 32-bit integer grey (`I`): Pillow opens 16-bit PGM/PNG/TIFF samples in this mode, so values that fit
  0..65535 are read as 16-bit (/257); anything outside that range has no nominal scale (the int32 range
  would turn every real picture black) and is stretched min..max onto 0..255.
- 32-bit float grey (`F`): the usual float-image convention, 0.0..1.0 is black..white (x255) when every
  value lies in it; otherwise (depth maps, raw sensor values) stretched min..max. NaN/inf become black.
- Transparency (`RGBA`, `LA`, `PA`, premultiplied `RGBa`/`La`, a palette with alpha, and `P`/`L`/`RGB`
  with a transparent colour): composited over white, as web pages and image viewers show such images.
- Everything else (`1`, `L`, `P`, `CMYK`, `YCbCr`, `LAB`, `HSV`, `RGBX`): Pillow's own conversion.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import IO

import numpy as np
from PIL import Image

BACKGROUND = (255, 255, 255)  # what transparent pixels become


def _grey(values: np.ndarray) -> Image.Image:
    """An 8-bit RGB image from grey levels already on the 0..255 scale."""
    grey = np.clip(np.rint(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _stretch(values: np.ndarray) -> np.ndarray:
    """min..max of the finite values onto 0..255 (a constant image is black)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    lo, hi = float(finite.min()), float(finite.max())
    return (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)


def _from_16bit(im: Image.Image) -> Image.Image:
    return _grey(np.asarray(im).astype(np.float64) / 257.0)


def _from_int32(im: Image.Image) -> Image.Image:
    values = np.asarray(im).astype(np.float64)
    if values.size == 0 or (values.min() >= 0 and values.max() <= 65535):
        return _grey(values / 257.0)
    return _grey(_stretch(values))


def _from_float(im: Image.Image) -> Image.Image:
    values = np.asarray(im).astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
        return _grey(values * 255.0)
    return _grey(_stretch(values))


def _over_background(im: Image.Image) -> Image.Image:
    # Pillow converts premultiplied La only to LA; every other mode with alpha goes to RGBA directly
    rgba = (im.convert("LA") if im.mode == "La" else im).convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


# modes whose samples are wider than 8 bits: Pillow's convert would clip them
WIDE_MODES: dict[str, Callable[[Image.Image], Image.Image]] = {
    **dict.fromkeys(("I;16", "I;16B", "I;16L", "I;16N"), _from_16bit),
    "I": _from_int32,
    "F": _from_float,
}


def to_rgb(im: Image.Image) -> Image.Image:
    """`im` as 8-bit RGB by the rules in the module docstring."""
    if im.mode in WIDE_MODES:
        return WIDE_MODES[im.mode](im)
    if im.has_transparency_data:  # an alpha band, a palette with alpha, or a transparent colour
        return _over_background(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def load_rgb(source: bytes | str | os.PathLike | IO[bytes]) -> Image.Image:
    """Decode an image (its bytes, a path or a binary file) into 8-bit RGB; Pillow's errors pass through."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        im.load()
        out = to_rgb(im)
        return out.copy() if out is im else out
