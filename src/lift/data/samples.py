"""What a sample is, decided in one place for `lift embed` and both training methods, so they see
the same samples and count the same skips.

- Keys follow webdataset's convention everywhere (tar members and image-folder files alike): the
  key is the path up to the first dot of the file name, the extension is everything after it
  (`dir/img.v2.png` -> key `dir/img`, extension `v2.png`). What a member holds is decided by the
  extension's last part (`png`), as webdataset's decoders do.
- An image is any file whose last extension Pillow can open (jpg, png, webp, gif, tiff, ...).
- A caption is usable when it is text with something besides white space in it.
"""

from __future__ import annotations

import functools
import re
from typing import Any

# webdataset.tariterators.base_plus_ext: base = up to the first dot of the last path component
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def split_key(name: str) -> tuple[str, str] | None:
    """(key, extension) of a member or file name, or None for names without one (`README`, `.hidden`, `dir/.x.png`)."""
    m = _KEY_EXT.match(name)
    if not m or not m.group(2) or name.rsplit("/", 1)[-1].startswith("."):
        return None
    return m.group(1), m.group(2)


def member_kind(ext: str) -> str:
    """What an extension holds, by its last part, lower-cased: `v2.PNG` -> `png`."""
    return ext.rsplit(".", 1)[-1].lower()


# Pillow opens these, but cannot decode their pixels without outside programs or handlers
_UNDECODABLE = {"EPS", "MPEG"}


@functools.cache
def image_extensions() -> frozenset[str]:
    """Every extension Pillow can open and decode (not only save, not a stub), lower-case, no dot."""
    from PIL import Image, ImageFile

    Image.init()
    decodable = {fmt for fmt, (factory, _) in Image.OPEN.items()
                 if fmt not in _UNDECODABLE and not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))}  # fmt: skip
    return frozenset(ext.lstrip(".").lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in decodable)  # fmt: skip


def is_image_ext(ext: str) -> bool:
    return member_kind(ext) in image_extensions()


def caption_problem(caption: Any) -> str | None:
    """Why `caption` cannot be trained on or embedded (None when it can)."""
    if caption is None:
        return "missing caption"
    if not isinstance(caption, str):
        return f"caption is {type(caption).__name__}, not text"
    if not caption.strip():
        return "empty caption"
    return None
