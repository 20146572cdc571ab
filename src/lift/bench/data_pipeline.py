"""Images per second our training image pipeline delivers vs open_clip's webdataset pipeline.

Both read the same shards with the same number of DataLoader workers and give the training step the
same thing: a float batch, RandomResizedCrop(scale 0.9-1.0, bicubic) + CLIP mean/std, on `device`.

- ours: lift's indexed reader (the exact-order training path: `build_index`, `GlobalBatchSampler`,
  `read_member`) with `lift.data.decode` (reduced-size JPEG decoding, crop before converting, uint8
  batches in shared memory, pinned when CUDA), then `images_to_device` + `normalize_on_device` in the
  main process, timed as part of the delivery.
- open_clip: `open_clip_train.data.get_wds_dataset` with `lift.data.imagetext.train_transform` (the
  same open_clip transform), its batches copied to `device`. Its tokenizer is replaced by a constant
  (LIFT reads stored text vectors), so both sides measure images only.

Each pipeline runs `rounds` times, interleaved, and keeps its best round (see `lift.bench.timing`); a
round skips `warmup` batches (worker start-up, the prefetch queue filling) and times `batches`.
`lift bench data` merges the returned fields into its JSON.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from lift.bench.data_realistic import write_realistic_shards
from lift.data import decode, imagetext
from lift.data.imagetext import GlobalBatchSampler, build_index, read_member, sample_seed, train_transform
from lift.errors import LiftError

MEAN, STD = tuple(OPENAI_DATASET_MEAN), tuple(OPENAI_DATASET_STD)  # the towers' default


class DecodedImages(torch.utils.data.Dataset):
    """Indexed samples -> `decode_record` items, seeded per (seed, epoch, index) as training seeds them."""

    def __init__(self, samples: list, decoder: decode.PillowDecoder, *, seed: int) -> None:
        self.samples, self.decoder, self.seed = samples, decoder, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, index = item
        s = self.samples[index]
        try:
            data = read_member(s, s.images[0])
        except (OSError, IndexError) as e:
            return {"key": s.key, "error": f"sample {s.key!r}: {e}"}
        return decode.decode_record(self.decoder, data, key=s.key, seed=sample_seed(self.seed, epoch, index))


def tar_paths(shards: str | Path | Iterable[str | Path]) -> list[str]:
    """A folder of shards, one shard, or a list of them -> the sorted tar paths."""
    items = [shards] if isinstance(shards, (str, Path)) else list(shards)
    paths: list[str] = []
    for item in items:
        p = Path(item)
        paths += sorted(str(t) for t in p.glob("*.tar")) if p.is_dir() else [str(p)]
    if not paths:
        raise LiftError(f"{shards}: no .tar shards found")
    return paths


def _cpu_by_process() -> dict[int, float] | None:
    """CPU seconds used so far by this process and each live child (the DataLoader workers), from
    /proc; None where there is no /proc."""
    if not Path("/proc/self/stat").exists():
        return None
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in [os.getpid(), *(p.pid for p in multiprocessing.active_children())]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def _cpu_between(start: dict[int, float] | None, end: dict[int, float] | None) -> float | None:
    if start is None or end is None:
        return None
    return sum(used - start.get(pid, 0.0) for pid, used in end.items())


def _timed(
    batches: Iterable, consume: Callable[[Any], int], *, warmup: int, count: int, device: torch.device
) -> dict[str, Any]:
    """Wall seconds, CPU seconds (all processes) and images over `count` batches after `warmup`."""
    images, start, cpu_start = 0, None, None
    for i, batch in enumerate(batches):
        if i == warmup:
            start, cpu_start = time.perf_counter(), _cpu_by_process()
        n = consume(batch)
        if i >= warmup:
            images += n
        if i + 1 == warmup + count:
            break
    if start is None or images == 0:
        raise LiftError(f"the shards gave fewer than {warmup + 1} batches; write more samples")
    if device.type == "cuda":  # the last copies and kernels are part of the delivery
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_seconds": _cpu_between(cpu_start, _cpu_by_process()), "images": images}


def ours(paths: list[str], *, workers: int, image_size: int, batch_size: int, steps: int, seed: int,
         device: torch.device, image_decode: str = "pillow") -> Callable[[int], dict[str, Any]]:  # fmt: skip
    samples = build_index(paths)
    decoder = decode.make_decoder(image_decode, image_size=image_size, device=device)
    dataset = DecodedImages(samples, decoder, seed=seed)

    def consume(batch: dict) -> int:
        if batch["errors"]:
            raise LiftError(batch["errors"][0])
        on_device = decode.images_to_device(batch["images"], device=device, image_size=image_size)
        if on_device.errors:
            raise LiftError(on_device.errors[0])
        decode.normalize_on_device(on_device.images, mean=MEAN, std=STD)
        return len(on_device.kept)

    def run(warmup: int) -> dict[str, Any]:
        sampler = GlobalBatchSampler(len(samples), batch_size, seed=seed, total_steps=warmup + steps)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=imagetext.collate,
            **decode.loader_settings(workers=workers, device=device),
        )  # fmt: skip
        return _timed(loader, consume, warmup=warmup, count=steps, device=device)

    return run


def _no_tokens(text: str) -> torch.Tensor:
    return torch.zeros(1, 1, dtype=torch.long)


def open_clip_pipeline(paths: list[str], *, workers: int, image_size: int, batch_size: int, steps: int,
                       seed: int, device: torch.device) -> Callable[[int], dict[str, Any]]:  # fmt: skip
    try:
        import open_clip_train.data as oc_data
    except ImportError as e:  # open_clip_train needs pandas and braceexpand
        raise LiftError(
            f"open_clip's training data pipeline cannot be imported ({e}); pip install 'lift[dev]'"
        ) from None
    transform = train_transform(image_size, MEAN, STD)

    def consume(batch: tuple) -> int:
        images, _ = batch
        images.to(device, non_blocking=True)
        return len(images)

    def run(warmup: int) -> dict[str, Any]:
        args = argparse.Namespace(
            train_data="::".join(paths), train_num_samples=(warmup + steps) * batch_size, dataset_resampled=True,
            train_data_upsampling_factors=None, seed=seed, batch_size=batch_size, world_size=1, workers=workers,
        )  # fmt: skip
        # webdataset >= 0.2.96 ends each shard with an empty sample that open_clip_train's grouping cannot
        # read (KeyError 'fname'); the fix from webdataset#384 / open_clip#935, for this run only
        expander = oc_data.tar_file_expander
        oc_data.tar_file_expander = functools.partial(expander, eof_value=None)
        try:
            loader = oc_data.get_wds_dataset(args, transform, is_train=True, tokenizer=_no_tokens).dataloader
            return _timed(loader, consume, warmup=warmup, count=steps, device=device)
        finally:
            oc_data.tar_file_expander = expander

    return run


def measure_pipeline(
    shards: str | Path | Iterable[str | Path], *, workers: int = 2, image_size: int = 224, batches: int = 30,
    seed: int = 0, batch_size: int = 64, warmup: int | None = None, rounds: int = 2,
    device: str | torch.device = "cpu", image_decode: str = "pillow",
) -> dict[str, Any]:  # fmt: skip
    """Images per second delivered to the training step by our pipeline and by open_clip's on the same
    shards: `ours_img_per_s`, `open_clip_img_per_s`, `speedup` (their ratio) and the settings used."""
    if workers < 1:
        raise LiftError(f"--workers {workers}: the pipelines compare DataLoader workers; give 1 or more")
    device = torch.device(device)
    paths = tar_paths(shards)
    warmup = warmup if warmup is not None else 2 * workers + 2  # past the first batches and the prefetch
    common = dict(
        workers=workers, image_size=image_size, batch_size=batch_size, steps=batches, seed=seed, device=device
    )
    runs = {
        "ours": ours(paths, image_decode=image_decode, **common),
        "open_clip": open_clip_pipeline(paths, **common),
    }
    rate, cpu_ms = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, math.inf)
    for r in range(rounds):
        for name, run in runs.items():
            t = run(warmup)
            rate[name] = max(rate[name], t["images"] / t["seconds"])
            if t["cpu_seconds"] is not None:
                cpu_ms[name] = min(cpu_ms[name], 1000 * t["cpu_seconds"] / t["images"])
            print(
                f"[bench data] round {r}: {name} {t['images'] / t['seconds']:.1f} img/s",
                file=sys.stderr,
                flush=True,
            )
    cpu_known = all(0 < v < math.inf for v in cpu_ms.values())  # clock ticks are 10 ms: none in a smoke run
    return {
        "ours_img_per_s": round(rate["ours"], 1),
        "open_clip_img_per_s": round(rate["open_clip"], 1),
        "speedup": round(rate["ours"] / rate["open_clip"], 3),
        # CPU time per image over all processes: steadier than images/s on a shared machine
        "ours_cpu_ms_per_img": round(cpu_ms["ours"], 3) if cpu_known else None,
        "open_clip_cpu_ms_per_img": round(cpu_ms["open_clip"], 3) if cpu_known else None,
        "cpu_speedup": round(cpu_ms["open_clip"] / cpu_ms["ours"], 3) if cpu_known else None,
        "pipeline_workers": workers,
        "pipeline_image_size": image_size,
        "pipeline_batch_size": batch_size,
        "pipeline_batches": batches,
        "pipeline_device": str(device),
        "pipeline_image_decode": image_decode,
    }


# `lift bench data --smoke`: the same code at sizes that run in seconds (tests)
SMOKE = {"n": 48, "shard_size": 12, "min_size": 64, "max_size": 128, "image_size": 32, "batch_size": 4,
         "batches": 3, "warmup": 1, "rounds": 1}  # fmt: skip


def bench_pipeline(
    *, shards: str | Path | list | None = None, n: int = 1024, shard_size: int = 128, min_size: int = 256,
    max_size: int = 512, workers: int = 2, image_size: int = 224, batch_size: int = 64, batches: int = 30,
    warmup: int | None = None, rounds: int = 2, seed: int = 0, device: str | torch.device = "cpu",
    image_decode: str = "pillow", smoke: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """`measure_pipeline` on `shards`, or on `n` realistic samples (img2dataset layout, JPEGs of
    `min_size`..`max_size` px) written to a temporary folder first; `smoke` shrinks everything."""
    if smoke:
        n, shard_size, min_size, max_size = (
            SMOKE["n"],
            SMOKE["shard_size"],
            SMOKE["min_size"],
            SMOKE["max_size"],
        )
        image_size, batch_size, batches = SMOKE["image_size"], SMOKE["batch_size"], SMOKE["batches"]
        warmup, rounds = SMOKE["warmup"], SMOKE["rounds"]
    settings = dict(workers=workers, image_size=image_size, batches=batches, seed=seed, batch_size=batch_size,
                    warmup=warmup, rounds=rounds, device=device, image_decode=image_decode)  # fmt: skip
    if shards is not None:
        return measure_pipeline(shards, **settings)
    with tempfile.TemporaryDirectory(prefix="lift-bench-pipeline-") as tmp:
        paths = write_realistic_shards(
            tmp, n=n, shard_size=shard_size, seed=seed, min_size=min_size, max_size=max_size
        )
        result = measure_pipeline(paths, **settings)
    return {**result, "pipeline_samples": n, "pipeline_image_sides": [min_size, max_size]}
