"""Issue 18 item 2: the fast training image path (`lift.data.decode`) gives the reference transform's
pictures: the same crop boxes, the same pixels within a grey level or two (reduced-size JPEG decoding
within a bound), every image mode converted by `lift.data.images`' rules, bad files as error records."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.transforms as tv_transforms
from PIL import Image
from torchvision.transforms import Normalize

from lift.bench.data_realistic import jpeg_bytes, natural_image
from lift.data import decode, imagetext
from lift.data.images import load_rgb
from lift.data.imagetext import train_transform
from lift.errors import LiftError

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
LEVEL = 1 / 255 / min(STD)  # one grey level in normalised units
SEEDS = [s * 7919 + 3 for s in range(24)]


def saved(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "jpeg": jpeg_bytes(natural_image(rng, 384, 320)),
        "png": saved(natural_image(rng, 360, 400), "PNG"),
        "large jpeg": jpeg_bytes(natural_image(rng, 1024, 768)),
    }


def reference(data: bytes, seed: int, size: int) -> torch.Tensor:
    """open_clip's train transform on the fully decoded image, seeded as `ImageTextDataset` seeds it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed % (2**63))
        return train_transform(size, MEAN, STD)(load_rgb(data))


def fast(data: bytes, seed: int, size: int, **kw) -> torch.Tensor:
    images = decode.PillowDecoder(size, **kw)(data, seed=seed)[None]
    assert images.dtype == torch.uint8 and images.shape == (1, 3, size, size)
    return decode.normalize_on_device(images, mean=MEAN, std=STD)[0]


def reference_boxes(monkeypatch, data: bytes, seeds: list[int], size: int) -> list[tuple]:
    """The boxes the reference's RandomResizedCrop actually cut (spied on its resized_crop call)."""
    boxes = []
    real = tv_transforms.F.resized_crop

    def spy(img, top, left, height, width, *args, **kwargs):
        boxes.append((top, left, height, width))
        return real(img, top, left, height, width, *args, **kwargs)

    monkeypatch.setattr(tv_transforms.F, "resized_crop", spy)
    for seed in seeds:
        reference(data, seed, size)
    monkeypatch.undo()
    return boxes


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_crop_boxes_follow_the_reference_distribution(photos, monkeypatch, kind):
    data = photos[kind]
    width, height = Image.open(io.BytesIO(data)).size
    seeds = list(range(0, 400 * 1_000_003, 1_000_003))
    want = reference_boxes(monkeypatch, data, seeds, 64)
    got = [decode.crop_box((width, height), seed=s) for s in seeds]
    assert got == want  # same seed, same box: the same distribution draw for draw
    area = np.array([h * w / (width * height) for _, _, h, w in got])
    aspect = np.array([w / h for _, _, h, w in got])
    # the draws cover the paper's range, not a degenerate corner of it
    assert area.min() >= 0.9 - 1e-2 and area.max() <= 1.0
    assert area.min() < 0.91 and area.max() > 0.98 and 0.93 < area.mean() < 0.97
    assert aspect.min() >= 3 / 4 - 0.02 and aspect.max() <= 4 / 3 + 0.02 and aspect.std() > 0.03
    assert len({b[:2] for b in got}) > 50  # crop positions vary


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_pixels_after_device_normalisation_match_the_reference_transform(photos, kind):
    data, size = photos[kind], 224
    ours = torch.stack([fast(data, s, size) for s in SEEDS])
    ref = torch.stack([reference(data, s, size) for s in SEEDS])
    diff = (ours - ref).abs()
    assert diff.max() <= 2.5 * LEVEL  # torch's uint8 bicubic vs Pillow's: at most 2 grey levels
    assert diff.mean() < 0.02 * LEVEL
    dims = (0, 2, 3)  # per channel over the batch
    assert torch.allclose(ours.mean(dims), ref.mean(dims), atol=1e-4)
    assert torch.allclose(ours.std(dims), ref.std(dims), atol=1e-4)
    # and the crops really differ from seed to seed, as the reference's do
    assert (ours[0] - ours[1]).abs().mean() > 3 * LEVEL


def test_large_jpegs_decode_at_reduced_size_and_still_match(photos, monkeypatch):
    data, size = photos["large jpeg"], 100
    decoded = []
    real = decode.resized_crop

    def spy(im, box, *, reduction, image_size):
        decoded.append((im.size, reduction))
        return real(im, box, reduction=reduction, image_size=image_size)

    monkeypatch.setattr(decode, "resized_crop", spy)
    ours = torch.stack([fast(data, s, size) for s in SEEDS[:12]])
    monkeypatch.undo()
    # the crop (690..768 px a side) allows 1/4 scale and no more: 4 * 100 <= 690, 768 < 8 * 100
    assert decoded == [((256, 192), 4)] * 12
    ref = torch.stack([reference(data, s, size) for s in SEEDS[:12]])
    diff = (ours - ref).abs()
    assert diff.mean() < LEVEL  # DCT-domain scaling differs slightly from bicubic over full pixels
    dims = (0, 2, 3)
    assert torch.allclose(ours.mean(dims), ref.mean(dims), atol=0.1 * LEVEL)
    assert torch.allclose(ours.std(dims), ref.std(dims), rtol=0.005)
    # without draft: full decode, the reference's pixels
    full = torch.stack([fast(data, s, size, draft=False) for s in SEEDS[:12]])
    assert (full - ref).abs().max() <= 2.5 * LEVEL


def test_no_reduction_when_the_crop_is_under_twice_the_output(photos):
    with Image.open(io.BytesIO(photos["jpeg"])) as im:
        box = decode.crop_box(im.size, seed=1)
        assert decode.draft_for_crop(im, box, image_size=224) == 1
        im.load()
        assert im.size == (384, 320)
    with Image.open(io.BytesIO(photos["large jpeg"])) as im:
        box = decode.crop_box(im.size, seed=1)
        assert decode.draft_for_crop(im, box, image_size=224) == 2  # 2 * 224 <= crop < 4 * 224
        im.load()
        assert im.size == (512, 384)
        assert math.floor(min(box[2:]) / 2) >= 224  # still >= the output over the crop


GRAD = np.tile(np.arange(256, dtype=np.uint8), (200, 1))  # a left-to-right ramp, 256 x 200


def _rgba() -> Image.Image:
    alpha = np.full_like(GRAD, 255)
    alpha[:, :64] = 0  # transparent, black underneath: must come out white
    return Image.fromarray(np.dstack([GRAD, GRAD, GRAD * 0, alpha]), mode="RGBA")


MODES = {
    "I;16 png": lambda: saved(Image.fromarray(GRAD.astype(np.uint16) * 257), "PNG"),
    "I 16-bit ppm": lambda: saved(Image.fromarray(GRAD.astype(np.uint16) * 257), "PPM"),
    # stretched min..max over the WHOLE image: a crop that misses the extremes must not re-stretch
    "I 32-bit tiff": lambda: saved(Image.fromarray(GRAD.astype(np.int32) * 1000 - 70000), "TIFF"),
    "F depth tiff": lambda: saved(Image.fromarray(GRAD.astype(np.float32) * 4 + 10), "TIFF"),
    "RGBA png": lambda: saved(_rgba(), "PNG"),
    "P + transparency png": lambda: saved(Image.fromarray(GRAD).convert("P"), "PNG", transparency=0),
    "CMYK jpeg": lambda: saved(
        Image.fromarray(np.dstack([GRAD * 0] * 3 + [255 - GRAD]), mode="CMYK"), "JPEG"
    ),
    "L jpeg": lambda: saved(Image.fromarray(GRAD), "JPEG"),
}


@pytest.mark.parametrize("case", sorted(MODES))
def test_every_mode_goes_through_the_load_rgb_rules(case):
    data = MODES[case]()
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == case.split(" ")[0]
    ours = torch.stack([fast(data, s, 64) for s in SEEDS[:6]])
    ref = torch.stack([reference(data, s, 64) for s in SEEDS[:6]])
    assert (ours - ref).abs().max() <= 2.5 * LEVEL, case


def test_16bit_png_is_the_ramp_not_white():
    data = MODES["I;16 png"]()
    image = decode.PillowDecoder(64)(data, seed=5).double()
    assert abs(image.mean().item() - 127.5) < 8  # the crop keeps >= 90% of the ramp: mid-grey on average
    assert image[:, :, 0].mean() < 20 and image[:, :, -1].mean() > 235  # dark on the left, light on the right


class Files(torch.utils.data.Dataset):
    """(key, file bytes) decoded in the DataLoader worker."""

    def __init__(self, decoder: decode.PillowDecoder, items: list[tuple[str, bytes]]) -> None:
        self.decoder, self.items = decoder, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        key, data = self.items[i]
        return decode.decode_record(self.decoder, data, key=key, seed=i)


@pytest.mark.parametrize("damage", ["truncated", "not an image", "empty"])
def test_a_bad_image_is_an_error_record_not_a_dead_worker(photos, damage):
    data = {"truncated": photos["jpeg"][: len(photos["jpeg"]) // 2], "not an image": b"<html>404</html>",
            "empty": b""}[damage]  # fmt: skip
    decoder = decode.PillowDecoder(32)
    with pytest.raises(ValueError, match="^corrupt image: ") as e:
        decoder(data, seed=0)
    assert "\n" not in str(e.value)
    record = decode.decode_record(decoder, data, key="k1", seed=0)
    assert set(record) == {"key", "error"} and record["error"].startswith("sample 'k1': corrupt image: ")
    # through a DataLoader worker: the batch carries the error beside the good image, the worker lives on
    files = Files(decoder, [("k0", photos["png"]), ("k1", data), ("k2", photos["jpeg"])])
    loader = torch.utils.data.DataLoader(files, batch_size=3, collate_fn=imagetext.collate, num_workers=1)
    (batch,) = list(loader)
    assert batch["keys"] == ["k0", "k2"] and len(batch["errors"]) == 1 and "'k1'" in batch["errors"][0]
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (2, 3, 32, 32)


def test_normalize_on_device_is_totensor_plus_normalize():
    images = torch.randint(
        0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    want = Normalize(MEAN, STD)(images.float() / 255)
    got = decode.normalize_on_device(images, mean=MEAN, std=STD)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-6)
    half = decode.normalize_on_device(images, mean=MEAN, std=STD, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), want, atol=0.02)
    flipped = decode.normalize_on_device(images, mean=MEAN, std=STD, flip_p=1.0)
    assert torch.equal(flipped, got.flip(-1))
    some = decode.normalize_on_device(
        images, mean=MEAN, std=STD, flip_p=0.5, generator=torch.Generator().manual_seed(1)
    )
    kept = [torch.equal(some[i], got[i]) for i in range(4)]
    flips = [torch.equal(some[i], got[i].flip(-1)) for i in range(4)]
    assert all(k or f for k, f in zip(kept, flips)) and 0 < sum(flips) < 4
    with pytest.raises(ValueError, match="expected uint8"):
        decode.normalize_on_device(want, mean=MEAN, std=STD)


def test_gpu_decoding_is_refused_in_one_line_without_cuda():
    with pytest.raises(LiftError) as e:
        decode.make_decoder("nvjpeg", image_size=224, device="cpu")
    assert "--image-decode nvjpeg" in str(e.value) and "--image-decode pillow" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(LiftError, match="--image-decode must be one of"):
        decode.make_decoder("dali-typo", image_size=224)
    assert isinstance(decode.make_decoder("pillow", image_size=224, device="cpu"), decode.PillowDecoder)


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # torchvision 0.29 points image decoding to TorchCodec
def test_gpu_decode_path_on_cpu_decodes_jpegs_late_and_the_rest_in_the_worker(photos):
    """The nvjpeg decoder's logic, run with torchvision's CPU decode_jpeg: JPEGs travel encoded,
    PNG/CMYK are decoded by the worker, the batch comes out as the Pillow path's, a damaged JPEG
    that passes the header check is an error line and the rest of the batch is kept."""
    size = 64
    nv = decode.NvjpegDecoder(size)  # constructed directly: make_decoder refuses it without CUDA
    damaged = photos["jpeg"][: len(photos["jpeg"]) // 2]
    inputs = [photos["jpeg"], photos["png"], MODES["CMYK jpeg"](), damaged, photos["large jpeg"]]
    items = [decode.decode_record(nv, d, key=f"k{i}", seed=s) for i, (d, s) in enumerate(zip(inputs, SEEDS))]
    kinds = [type(it["image"]).__name__ for it in items]
    assert kinds == ["EncodedJpeg", "Tensor", "Tensor", "EncodedJpeg", "EncodedJpeg"]
    batch = imagetext.collate(items)
    assert isinstance(batch["images"], list)
    out = decode.images_to_device(batch["images"], device="cpu", image_size=size)
    assert (
        out.kept == [0, 1, 2, 4]
        and out.images.shape == (4, 3, size, size)
        and out.images.dtype == torch.uint8
    )
    assert (
        len(out.errors) == 1 and out.errors[0].startswith("k3: corrupt image: ") and "\n" not in out.errors[0]
    )
    pillow = decode.PillowDecoder(size, draft=False)
    want = torch.stack([pillow(inputs[i], seed=SEEDS[i]) for i in out.kept])
    assert (out.images.int() - want.int()).abs().float().mean() < 1.0


def test_uint8_batches_and_loader_settings():
    images = [torch.full((3, 4, 4), i, dtype=torch.uint8) for i in range(3)]
    stacked = decode.stack_images(images)
    assert stacked.dtype == torch.uint8 and stacked.shape == (3, 3, 4, 4) and stacked[2].eq(2).all()
    out = decode.images_to_device(stacked, device="cpu", image_size=4)
    assert out.kept == [0, 1, 2] and torch.equal(out.images, stacked)
    assert decode.loader_settings(workers=2, device="cuda") == {
        "num_workers": 2, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 4}  # fmt: skip
    assert decode.loader_settings(workers=0, device="cpu", prefetch_factor=8) == {
        "num_workers": 0, "pin_memory": False, "persistent_workers": False}  # fmt: skip
    assert decode.loader_settings(workers=1, device="cpu", prefetch_factor=2)["prefetch_factor"] == 2
