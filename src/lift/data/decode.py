"""Training images that keep a GPU fed: decode small, crop first, ship uint8, normalise on the device.

The reference is open_clip's train transform (`lift.data.imagetext.train_transform`): decode the whole
file, RandomResizedCrop(scale 0.9-1.0, ratio 3/4-4/3, bicubic), ToTensor, Normalize. This module gives
the same pictures for less CPU:

- The crop box is drawn first, on the original size, by torchvision's own
  `RandomResizedCrop.get_params` under the sample's seed (the CPU generator seeded with
  `seed % 2**63`, as `ImageTextDataset` seeds the reference), so the same seed gives the same box.
- A JPEG whose crop is at least twice the output size is decoded at 1/2, 1/4 or 1/8 scale by
  libjpeg's DCT scaling (`Image.draft`), choosing the largest reduction that still leaves at least
  `image_size` pixels across the crop; the box is then resized from the reduced image (bicubic, with
  the fractional box).
- Without a reduction the crop is resized by torch's uint8 antialiased bicubic, Pillow's BICUBIC
  filter vectorised (about 4x faster; within one or two grey levels of Pillow's pixels).
- The crop is cut before the colour conversion (`lift.data.images.to_rgb`, whose rules are per pixel
  except for the stretched wide modes `I`/`F`, which are converted whole first).
- Workers return uint8 [3, H, W] (a quarter of float32's bytes through shared memory and the copy to
  the device); `normalize_on_device` does the float conversion and mean/std after the copy.
- Optionally (`--image-decode nvjpeg`) workers only read the JPEG header and draw the box, and
  `images_to_device` decodes the batch on the GPU (`torchvision.io.decode_jpeg(device="cuda")`);
  other formats are still decoded by the workers.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import RandomResizedCrop

from lift.data.images import WIDE_MODES, to_rgb
from lift.errors import LiftError, first_line
from lift.registry import Registry

SCALE = (0.9, 1.0)  # the paper's RandomResizedCrop scale range (open_clip's AugmentationCfg(scale=...))
RATIO = (3 / 4, 4 / 3)  # torchvision's default aspect ratio range, which open_clip keeps
REDUCTIONS = (8, 4, 2)  # the DCT scalings Pillow's JPEG draft offers

Box = tuple[int, int, int, int]  # (top, left, height, width), torchvision's order


def crop_box(size: tuple[int, int], *, seed: int, scale=SCALE, ratio=RATIO) -> Box:
    """RandomResizedCrop's box for an image of `size` (width, height) under `seed`: the same draw as the
    reference transform run right after `torch.manual_seed(seed % 2**63)`."""
    width, height = size
    stand_in = torch.empty(1, 1, 1).expand(1, height, width)  # get_params only reads the shape
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only: torch.manual_seed also queues a CUDA seeding, with a stack trace, per call
        torch.default_generator.manual_seed(seed % (2**63))
        return RandomResizedCrop.get_params(stand_in, list(scale), list(ratio))


def open_image(data: bytes) -> Image.Image:
    """`data` opened lazily; a JPEG (by its magic bytes) without first trying the other formats' openers."""
    formats = ("JPEG",) if data[:3] == b"\xff\xd8\xff" else None
    return Image.open(io.BytesIO(data), formats=formats)


def reduction_for(box: Box, image_size: int) -> int:
    """The largest JPEG draft reduction (1, 2, 4 or 8) that keeps >= `image_size` pixels across the box."""
    _, _, h, w = box
    most = min(h, w) // image_size
    return next((r for r in REDUCTIONS if r <= most), 1)


def draft_for_crop(im: Image.Image, box: Box, *, image_size: int) -> int:
    """Set a JPEG `im` (opened, not yet decoded) to decode at 1/r size when its crop `box` allows it;
    returns r (1 for other formats, or when the crop is smaller than twice `image_size`)."""
    r = reduction_for(box, image_size) if im.format == "JPEG" else 1
    if r == 1:
        return 1
    width, height = im.size
    # draft picks the largest power of two <= min(width // w', height // h'): exactly r here
    chosen = im.draft(None, (math.ceil(width / r), math.ceil(height / r)))
    return round(width / chosen[1][2]) if chosen else 1


def resized_crop(im: Image.Image, box: Box, *, reduction: int, image_size: int) -> torch.Tensor:
    """The box of `im` (in original pixels; `im` decodes at 1/reduction) as uint8 [3, S, S], S = image_size.

    Without a reduction the region is resized by torch's uint8 antialiased bicubic (the same filter as
    Pillow's BICUBIC, vectorised: ~4x faster, within one grey level of it); a reduced image is
    resized by Pillow, which takes the fractional box the reduction leaves."""
    top, left, h, w = box
    if im.mode in WIDE_MODES:
        im = to_rgb(im)  # their stretch rules look at the whole image
    if reduction == 1:
        region = to_rgb(im.crop((left, top, left + w, top + h)))
        hwc = torch.from_numpy(np.array(region, dtype=np.uint8))
        out = F.interpolate(
            hwc.permute(2, 0, 1)[None], size=(image_size, image_size), mode="bicubic", antialias=True
        )
        return out[0].contiguous()
    x0, y0, x1, y1 = (v / reduction for v in (left, top, left + w, top + h))
    ix0, iy0 = math.floor(x0), math.floor(y0)
    ix1, iy1 = min(math.ceil(x1), im.width), min(math.ceil(y1), im.height)
    region = to_rgb(im.crop((ix0, iy0, ix1, iy1)))
    box_in_region = (x0 - ix0, y0 - iy0, min(x1, ix1) - ix0, min(y1, iy1) - iy0)
    return as_uint8_chw(region.resize((image_size, image_size), Image.Resampling.BICUBIC, box=box_in_region))


def as_uint8_chw(im: Image.Image) -> torch.Tensor:
    """An 8-bit RGB image as a contiguous uint8 tensor [3, H, W]."""
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class EncodedJpeg(NamedTuple):
    """A JPEG left for the device to decode: the file's bytes (plain bytes travel from a worker inside
    the pickle; a tensor each would be a shared-memory file each), its crop box and a name for errors."""

    data: bytes
    box: Box
    name: str


DECODERS: Registry[type] = Registry("image decoder", flag="--image-decode")


@DECODERS.register("pillow", help="decode in the DataLoader workers (reduced-size JPEG decoding)")
@dataclass(frozen=True)
class PillowDecoder:
    """Bytes of an image file -> uint8 [3, S, S], the reference transform's crop without its float
    conversion. Picklable, for DataLoader workers. Raises ValueError naming what is wrong."""

    image_size: int
    scale: tuple[float, float] = SCALE
    ratio: tuple[float, float] = RATIO
    draft: bool = True

    def box(self, im: Image.Image, seed: int) -> Box:
        return crop_box(im.size, seed=seed, scale=self.scale, ratio=self.ratio)

    def decode(self, data: bytes, *, seed: int) -> torch.Tensor:
        try:
            with open_image(data) as im:
                box = self.box(im, seed)
                r = draft_for_crop(im, box, image_size=self.image_size) if self.draft else 1
                return resized_crop(im, box, reduction=r, image_size=self.image_size)
        except Exception as e:  # Pillow raises many types for damaged files
            raise ValueError(f"corrupt image: {first_line(e)}") from None

    def __call__(self, data: bytes, *, seed: int, name: str = "image") -> torch.Tensor | EncodedJpeg:
        return self.decode(data, seed=seed)


@DECODERS.register("nvjpeg", help="decode JPEGs on the GPU (torchvision.io.decode_jpeg); needs CUDA")
@dataclass(frozen=True)
class NvjpegDecoder(PillowDecoder):
    """Workers read the JPEG header and draw the box; `images_to_device` decodes on the device. Other
    formats (and JPEG modes nvJPEG does not take, e.g. CMYK) are decoded in the worker as by Pillow."""

    def __call__(self, data: bytes, *, seed: int, name: str = "image") -> torch.Tensor | EncodedJpeg:
        try:
            with open_image(data) as header:
                jpeg = header.format == "JPEG" and header.mode in ("RGB", "L")
                box = self.box(header, seed)
        except Exception as e:
            raise ValueError(f"corrupt image: {first_line(e)}") from None
        if not jpeg:
            return self.decode(data, seed=seed)
        return EncodedJpeg(data, box, name)


def make_decoder(name: str, *, image_size: int, device: torch.device | str = "cpu") -> PillowDecoder:
    """The decoder registered as `name`; GPU decoding is refused in one line without a CUDA device."""
    cls = DECODERS.get(name)
    device = torch.device(device)
    if cls is NvjpegDecoder and not (device.type == "cuda" and torch.cuda.is_available()):
        raise LiftError(
            f"--image-decode {name} decodes on a CUDA GPU, but training runs on {device.type} "
            f"(torch.cuda.is_available() is {torch.cuda.is_available()}); use --image-decode pillow"
        )
    return cls(image_size)


def decode_record(
    decoder: PillowDecoder, data: bytes, *, key: str, seed: int, name: str = ""
) -> dict[str, Any]:
    """{"key", "image"} or, for an image that cannot be decoded, {"key", "error"}: a worker never dies of a
    bad file, the main process applies the error policy."""
    try:
        return {"key": key, "image": decoder(data, seed=seed, name=name or key)}
    except ValueError as e:
        return {"key": key, "error": f"sample {key!r}: {e}"}


def stack_images(images: list[torch.Tensor | EncodedJpeg]) -> torch.Tensor | list:
    """uint8 [B, 3, S, S] (written straight into shared memory in a worker, as default_collate does), or
    the list itself when some images are left for the device to decode."""
    if all(isinstance(x, torch.Tensor) for x in images):
        return torch.utils.data.default_collate(images)
    return list(images)


@dataclass
class DeviceImages:
    """A batch on the device: `images` uint8 [B', 3, S, S], the batch positions they hold (`kept`) and one
    line per image the device could not decode (`errors`; only with GPU decoding)."""

    images: torch.Tensor
    kept: list[int]
    errors: list[str] = field(default_factory=list)


def _decode_jpegs(jpegs: list[EncodedJpeg], device: torch.device) -> list[torch.Tensor | str]:
    """Each JPEG decoded on `device` (in one batched call when all are sound), or why it could not be."""
    from torchvision.io import ImageReadMode, decode_jpeg

    def reason(e: RuntimeError) -> str:  # "decode_jpeg, /path/decode_jpeg.cpp:171, Image is truncated"
        return first_line(e).rsplit(", ", 1)[-1]

    files = [torch.frombuffer(bytearray(j.data), dtype=torch.uint8) for j in jpegs]
    try:
        return list(decode_jpeg(files, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # a damaged file fails the whole batch: find which, one by one
        out: list[torch.Tensor | str] = []
        for file in files:
            try:
                out.append(decode_jpeg(file, mode=ImageReadMode.RGB, device=device))
            except RuntimeError as e:
                out.append(reason(e))
        return out


def images_to_device(
    images: torch.Tensor | list, *, device: torch.device | str, image_size: int
) -> DeviceImages:
    """A collated batch on `device` (call after the DataLoader, in the training step): a uint8 tensor is
    copied (non_blocking, from pinned memory); a list with `EncodedJpeg`s has those decoded, cropped
    and resized there (antialiased bicubic, as on the CPU)."""
    from torchvision.transforms.v2.functional import InterpolationMode
    from torchvision.transforms.v2.functional import resized_crop as tensor_resized_crop

    device = torch.device(device)
    if isinstance(images, torch.Tensor):
        return DeviceImages(images.to(device, non_blocking=True), list(range(len(images))))
    jpegs = [x for x in images if isinstance(x, EncodedJpeg)]
    decoded = iter(_decode_jpegs(jpegs, device) if jpegs else [])
    out, kept, errors = [], [], []
    for i, x in enumerate(images):
        if isinstance(x, torch.Tensor):
            out.append(x.to(device, non_blocking=True))
        elif isinstance(image := next(decoded), str):
            errors.append(f"{x.name}: corrupt image: {image}")
            continue
        else:
            size = [image_size, image_size]
            out.append(
                tensor_resized_crop(
                    image, *x.box, size=size, interpolation=InterpolationMode.BICUBIC, antialias=True
                )
            )
        kept.append(i)
    empty = torch.empty(0, 3, image_size, image_size, dtype=torch.uint8, device=device)
    return DeviceImages(torch.stack(out) if out else empty, kept, errors)


def normalize_on_device(
    images: torch.Tensor, *, mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype = torch.float32,
    flip_p: float = 0.0, generator: torch.Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """uint8 [B, 3, H, W] -> `dtype` (x / 255 - mean) / std, where `images` already is (the reference's
    ToTensor + Normalize). `flip_p` > 0 mirrors each image left-right with that probability (not in the
    paper's recipe; off by default)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 [B, 3, H, W], got {images.dtype} {list(images.shape)}")
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1 / (255 * std_t)).to(torch.float32, copy=False).to(images.device).view(1, -1, 1, 1)
    shift = (torch.tensor(mean, dtype=torch.float64) / std_t).float().to(images.device).view(1, -1, 1, 1)
    x = images.float().mul_(scale).sub_(shift)  # (x / 255 - mean) / std in two passes
    if flip_p > 0:
        flip = (torch.rand(len(x), generator=generator) < flip_p).to(x.device)  # a CPU generator
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    return x.to(dtype)


def loader_settings(*, workers: int, device: torch.device | str, prefetch_factor: int = 4) -> dict[str, Any]:
    """DataLoader keyword arguments for uint8 batches: pinned memory for a CUDA copy, workers that live
    across epochs, and `prefetch_factor` batches in flight per worker."""
    settings: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": torch.device(device).type == "cuda",
        "persistent_workers": workers > 0,
    }
    if workers > 0:
        settings["prefetch_factor"] = prefetch_factor
    return settings
