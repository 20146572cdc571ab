"""Draw a scene graph with PIL and encode it, byte-for-byte reproducibly."""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from lift.data.synth.world import BACKGROUNDS, COLOURS, RADIUS, Obj, Scene

PATTERN_INK = (15, 15, 15)
IMAGE_FORMATS = ("png", "jpg")


def _regular(n: int, inner: float | None = None, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    """Unit-radius polygon vertices (a star when `inner` is given), first vertex at `phase`."""
    steps = 2 * n if inner else n
    pts = []
    for k in range(steps):
        r = inner if inner and k % 2 else 1.0
        a = phase + 2 * math.pi * k / steps
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


_W = 0.36  # half-width of a cross arm, as a fraction of the radius
UNIT_POLYGONS = {
    "square": [(-1, -1), (1, -1), (1, 1), (-1, 1)],
    "triangle": [(0, -1), (1, 1), (-1, 1)],
    "star": _regular(5, inner=0.48),
    "hexagon": _regular(6, phase=0.0),
    "cross": [
        (-_W, -1), (_W, -1), (_W, -_W), (1, -_W), (1, _W), (_W, _W),
        (_W, 1), (-_W, 1), (-_W, _W), (-1, _W), (-1, -_W), (-_W, -_W),
    ],
}  # fmt: skip


@functools.lru_cache(maxsize=8)
def _pattern_masks(size: int) -> dict[str, Image.Image]:
    """Full-image ink masks for each pattern; patterns scale with the image so they stay visible."""
    period = max(5, round(size / 12))
    y, x = np.mgrid[0:size, 0:size]
    stripes = ((x + y) % period) < max(2, period * 2 // 5)
    dot = max(2, period * 2 // 5)
    off = period // 2
    dots = (((x + off) % period) < dot) & (((y + off) % period) < dot)
    return {
        "striped": Image.fromarray((stripes * 255).astype(np.uint8), "L"),
        "dotted": Image.fromarray((dots * 255).astype(np.uint8), "L"),
    }


def _draw_shape(draw: ImageDraw.ImageDraw, obj: Obj, size: int, fill) -> None:
    r = RADIUS[obj.size] * size
    cx, cy = obj.cx * size, obj.cy * size
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r - 1, cy + r - 1), fill=fill)
    else:
        draw.polygon([(cx + r * px, cy + r * py) for px, py in UNIT_POLYGONS[obj.shape]], fill=fill)


def render(scene: Scene, size: int) -> Image.Image:
    """The scene as an RGB image of `size` x `size` pixels."""
    img = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        if obj.pattern == "solid":
            _draw_shape(draw, obj, size, COLOURS[obj.colour])
            continue
        mask = Image.new("L", (size, size), 0)
        _draw_shape(ImageDraw.Draw(mask), obj, size, 255)
        img.paste(COLOURS[obj.colour], None, mask)
        img.paste(PATTERN_INK, None, ImageChops.multiply(mask, _pattern_masks(size)[obj.pattern]))
    return img


def encode(img: Image.Image, fmt: str) -> bytes:
    """PNG (lossless, fixed zlib level) or JPEG (fixed quality): same pixels -> same bytes."""
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=6, optimize=False)
    elif fmt == "jpg":
        img.save(buf, format="JPEG", quality=95, subsampling=0, optimize=False)
    else:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {fmt!r}")
    return buf.getvalue()
