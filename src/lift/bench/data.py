"""The training data path: images per second delivered to the training loop.

Each measurement is one function of `MEASUREMENTS` (args, scratch folder) -> fields; the JSON is their
union. `stream_vs_exact` serves synthetic-world shards from a loopback HTTP server that waits
`--latency-ms` before every response (object storage's time to first byte) and measures:

- `stream_img_per_s`: the stream order (`lift.data.stream`): whole shards read in order, one request
  per shard, a shuffle buffer, DataLoader workers.
- `exact_img_per_s`: the exact order's access pattern through the same slow server: samples in the
  seeded global order, each image read by one HTTP range request (what the index's random access costs
  when the shards sit on a remote mount such as s3fs or gcsfuse; today's exact loader refuses URLs).
- `exact_local_img_per_s`: today's exact loader on local copies of the shards, the ceiling a local
  disk gives.

All three decode, transform and collate the same images with the same workers, so the ratio is the
price of the access pattern. `--smoke` runs the same code at tiny sizes (seconds; used by the tests).

Examples:
  lift bench data --json
  lift bench data --json --latency-ms 100 --samples 4000 --workers 4
  lift bench data --smoke
"""

from __future__ import annotations

import argparse
import http.server
import math
import random
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "data"
HELP = "images/s the training loop gets: stream vs exact order against a slow remote; our pipeline vs open_clip's"
# sizes of a full run and of --smoke; a flag given on the command line wins over both
FULL = {"samples": 2000, "shard_size": 200, "image_size": 224, "batch_size": 64, "workers": 2,
        "latency_ms": 50.0, "exact_samples": 400, "buffer": 500, "repeats": 2}  # fmt: skip
SMOKE = {**FULL, "samples": 64, "shard_size": 16, "image_size": 32, "batch_size": 8, "latency_ms": 20.0,
         "exact_samples": 32, "buffer": 16, "repeats": 1}  # fmt: skip


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of milliseconds >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of milliseconds >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lift.commands.argtypes import nonnegative_int, positive_int

    def size(flag: str, kind: Callable[[str], Any], help: str) -> None:
        name = flag.removeprefix("--").replace("-", "_")
        parser.add_argument(flag, type=kind, help=f"{help} (default {FULL[name]:g}, --smoke {SMOKE[name]:g})")

    parser.add_argument("--smoke", action="store_true", help="tiny sizes, same code (seconds)")
    size("--samples", positive_int, "synthetic-world training scenes served")
    size("--shard-size", positive_int, "scenes per shard")
    size("--image-size", positive_int, "stored and trained image size (16..224)")
    size("--batch-size", positive_int, "samples per batch")
    size("--workers", nonnegative_int, "DataLoader workers of every loader")
    size("--latency-ms", _latency, "the remote's wait before each response")
    size("--exact-samples", positive_int, "samples timed in the exact order through the remote")
    size("--buffer", positive_int, "the stream order's shuffle buffer")
    size("--repeats", positive_int, "interleaved rounds; each loader keeps its best")


class SlowServer:
    """The files of `root` over HTTP on 127.0.0.1, standing in for object storage: each response waits
    `latency` seconds first, plus up to `jitter` seconds at random (arrival order then varies); Range
    requests are served; `cut` maps a file name to the number of bytes sent before the connection drops
    (a transfer that breaks). Counts the requests it answers."""

    def __init__(
        self,
        root: str | Path,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        cut: dict[str, int] | None = None,
    ) -> None:
        self.root, self.latency, self.jitter, self.cut = Path(root), latency, jitter, dict(cut or {})
        self.requests = 0
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first (with ...)"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> SlowServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with server._lock:
                    server.requests += 1
                time.sleep(server.latency + random.uniform(0, server.jitter))
                path = (server.root / self.path.split("?", 1)[0].lstrip("/")).resolve()
                if server.root.resolve() not in path.parents or not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start, stop, status = 0, len(data), 200
                if rng := self.headers.get("Range"):
                    a, _, b = rng.removeprefix("bytes=").partition("-")
                    start, stop, status = int(a), min(int(b) + 1 if b else len(data), len(data)), 206
                self.send_response(status)
                self.send_header("Content-Length", str(stop - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
                self.end_headers()
                sent = server.cut.get(path.name, stop - start)
                self.wfile.write(data[start : start + sent])
                if sent < stop - start:
                    self.close_connection = True

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def range_get(url: str, offset: int, size: int) -> bytes:
    """Bytes offset..offset+size of a URL, by one HTTP range request."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-{offset + size - 1}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def _sizes(args: argparse.Namespace) -> argparse.Namespace:
    """The sizes to run: the flags given, the rest from --smoke's or a full run's defaults."""
    base = SMOKE if args.smoke else FULL
    return argparse.Namespace(
        **{k: v if (v := getattr(args, k, None)) is not None else base[k] for k in base}
    )


def _world(folder: Path, a: argparse.Namespace) -> list[Path]:
    """The synthetic world's training shards (tar + parquet, as img2dataset writes them)."""
    from lift.data.synth.generate import SynthConfig, generate_world

    cfg = SynthConfig(
        train_size=a.samples, shard_size=a.shard_size, image_size=a.image_size, image_format="jpg"
    )
    generate_world(folder, cfg, workers=1, progress=False, splits=("train",))
    return sorted((folder / "train").glob("*.tar"))


class _RemoteByIndex:
    """The exact order over a remote: the index's samples, each image read by an HTTP range request.
    (A map-style dataset like `ImageTextDataset`, addressed as (epoch, index).)"""

    def __init__(self, samples: list[Any], url_of: dict[str, str], images: Callable, text: Any) -> None:
        self.samples, self.url_of, self.images, self.text = samples, url_of, images, text

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        from lift.data.imagetext import make_item, sample_seed

        epoch, index = item
        s = self.samples[index]
        offset, size = s.members[s.images[0]]
        return make_item(
            key=s.key, source=s.source, data=lambda: range_get(self.url_of[s.source], offset, size),
            name=s.key, seed=sample_seed(0, epoch, index), images=self.images, text=lambda rng: self.text(s, rng),
        )  # fmt: skip


def _drain(loader: Any, batches: int, consumed: Callable[[dict], None] | None = None) -> int:
    """Images delivered by the first `batches` batches of `loader` (its workers shut down after)."""
    images, it = 0, iter(loader)
    try:
        for _ in range(batches):
            batch = next(it)
            if consumed is not None:
                consumed(batch)
            if batch["errors"]:
                raise RuntimeError(f"bench data: bad sample: {batch['errors'][0]}")
            images += len(batch["keys"])
    finally:
        del it
    return images


def stream_vs_exact(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """`stream_img_per_s`, `exact_img_per_s` (both through the slow server) and `exact_local_img_per_s`."""
    import torch

    from lift.bench.timing import best_of_interleaved
    from lift.data import imagetext
    from lift.data.index import index_data, select_samples
    from lift.data.stream import StreamDataset
    from lift.errors import ErrorPolicy
    from lift.methods.clip import CaptionText

    a = _sizes(args)
    shards = _world(scratch / "world", a)
    root = scratch / "world" / "train"
    samples = select_samples(index_data(str(root)), views=["short"], policy=ErrorPolicy("stop"))
    from lift.data.decode import make_decoder

    images = make_decoder("pillow", image_size=a.image_size)  # what training decodes with
    text = CaptionText("fixed", ("short",))
    batches = max(1, len(samples) // a.batch_size)
    exact_batches = max(1, min(batches, math.ceil(a.exact_samples / a.batch_size)))
    print(
        f"bench data: {len(samples)} samples in {len(shards)} shards, {a.image_size} px, {a.workers} workers, "
        f"remote latency {a.latency_ms:g} ms",
        file=sys.stderr,
    )

    def sampler(steps: int) -> imagetext.GlobalBatchSampler:
        return imagetext.GlobalBatchSampler(len(samples), a.batch_size, seed=0, total_steps=steps)

    with SlowServer(root, latency=a.latency_ms / 1000) as server:
        urls = [f"{server.url}/{p.name}" for p in shards]
        requests: dict[str, int] = {}

        def counted(name: str, fn: Callable[[], int]) -> Callable[[], int]:
            def run() -> int:
                before = server.requests
                n = fn()
                requests[name] = server.requests - before
                return n

            return run

        def stream() -> int:
            ds = StreamDataset(
                urls, images=images, text_source=text, batch_size=a.batch_size, seed=0,
                workers=a.workers, buffer=a.buffer,
            )  # fmt: skip
            loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=a.workers)
            return _drain(loader, batches, ds.consumed)

        def exact_remote() -> int:
            url_of = {str(p): f"{server.url}/{p.name}" for p in shards}
            ds = _RemoteByIndex(samples, url_of, images, text)
            loader = torch.utils.data.DataLoader(
                ds, batch_sampler=sampler(exact_batches), num_workers=a.workers, collate_fn=imagetext.collate
            )
            return _drain(loader, exact_batches)

        def exact_local() -> int:
            ds = imagetext.ImageTextDataset(samples, images, text_source=text, seed=0)
            loader = torch.utils.data.DataLoader(
                ds, batch_sampler=sampler(batches), num_workers=a.workers, collate_fn=imagetext.collate
            )
            return _drain(loader, batches)

        timed = {"stream": stream, "exact": exact_remote, "exact_local": exact_local}
        runs = best_of_interleaved(
            {name: counted(name, fn) for name, fn in timed.items()}, repeats=a.repeats, count=1, unit="run",
            label="data",
        )  # fmt: skip
        best = {name: images / seconds for name, (seconds, images) in runs.items()}  # loaders' counts differ
    return {
        "stream_img_per_s": round(best["stream"], 1),
        "exact_img_per_s": round(best["exact"], 1),
        "exact_local_img_per_s": round(best["exact_local"], 1),
        "stream_vs_exact": round(best["stream"] / best["exact"], 2),
        "remote_latency_ms": a.latency_ms,
        "remote_requests_stream": requests["stream"],
        "remote_requests_exact": requests["exact"],
        "exact_method": "exact order through the same remote: one HTTP range request per image (a remote "
        "mount's random access); exact_local_img_per_s is today's loader on local copies",
        "data_samples": len(samples),
        "data_shards": len(shards),
        "data_image_size": a.image_size,
        "data_workers": a.workers,
        "data_batch_size": a.batch_size,
    }


def pipeline_vs_open_clip(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """`ours_img_per_s`, `open_clip_img_per_s`, `speedup`: our decode pipeline against open_clip's own
    webdataset pipeline on the same realistic (img2dataset-like, 256-512 px JPEG) shards at 224 px."""
    from lift.bench.data_pipeline import bench_pipeline

    workers = args.workers if args.workers is not None else FULL["workers"]
    return bench_pipeline(workers=workers, image_size=224, smoke=bool(args.smoke))


# every measurement of the data path; the JSON merges their fields
MEASUREMENTS: list[Callable[[argparse.Namespace, Path], dict[str, Any]]] = [
    stream_vs_exact,
    pipeline_vs_open_clip,
]


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"smoke": bool(args.smoke)}
    with tempfile.TemporaryDirectory(prefix="lift-bench-data-") as tmp:
        for measure in MEASUREMENTS:
            result.update(measure(args, Path(tmp)))
    return result
