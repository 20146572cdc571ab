"""SugarCrepe-format evaluation two ways with one checkpoint, side by side: ours (each distinct
image and caption embedded once, in batches, through the text cache) and the reference way (per
pair, as the official script: open the image, one image forward pass, one text forward pass for its
positive and negative caption, texts re-embedded every time).

The pairs are `lift synth`'s SugarCrepe split (written to a temp folder). The checkpoint is a LIFT
vit-tiny with random weights (speed does not depend on training) saved and loaded back with
`lift.load`, so its text side is the real frozen encoder (default: all-MiniLM-L6-v2): the text cost
is real, which is what batching saves. `ours_per_s` uses a cold (fresh) cache; `warm_per_s` reruns
ours with the cache filled, the case of every checkpoint after the first of a LIFT run, whose text
encoder never changes.

Examples:
  lift bench eval --json
  lift bench eval --pairs 2000 --batch-size 128 --device cuda --json
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "eval"
HELP = "SugarCrepe evaluation: batched + cached (ours) vs one pair per forward pass (reference)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=int, default=1000, help="at least this many pairs (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64, help="images/texts per pass (64: fast on CPU)")
    parser.add_argument("--device", default="cpu")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_pairs(out: Path, pairs: int) -> Path:
    """A synth world's SugarCrepe split with >= `pairs` items (about 7 items per scene)."""
    from lift.data.synth.generate import SynthConfig, generate_world

    cfg = SynthConfig(train_size=0, test_size=math.ceil(pairs / 6.5) + 1)
    generate_world(out, cfg, progress=False, splits=("sugarcrepe",))
    return out / "sugarcrepe"


def bench_checkpoint(run_dir: Path, device: str) -> Any:
    """A random-weight LIFT vit-tiny checkpoint paired with the default frozen encoder, loaded back."""
    import torch

    from lift import load
    from lift.checkpoint import save_checkpoint
    from lift.config import config_to_dict
    from lift.models import ModelConfig, create_model
    from lift.text import TextEncoder

    encoder = TextEncoder.from_pretrained("default", device=device)
    torch.manual_seed(0)
    cfg = ModelConfig(method="lift", model="vit-tiny", embed_dim=encoder.dim)
    meta = {
        "model": config_to_dict(cfg),
        "text_identity": encoder.identity,
        "text_encoder_path": str(encoder.path),
    }
    save_checkpoint(run_dir, 0, create_model(cfg).state_dict(), meta)
    return load(run_dir, device=device)


def reference_accuracy(model: Any, folder: Path, device: str) -> tuple[dict[str, float], int]:
    """The official script's way: per pair, open and embed the image, embed both captions again."""
    import torch
    from PIL import Image

    from lift.errors import ErrorPolicy
    from lift.evaluate.formats import read_sugarcrepe_file
    from lift.evaluate.results import SUGARCREPE_SUBSETS
    from lift.evaluate.sugarcrepe import pair_correct

    accs, n = {}, 0
    with torch.no_grad():
        for subset in SUGARCREPE_SUBSETS:
            correct = 0
            items = read_sugarcrepe_file(folder / f"{subset}.json", ErrorPolicy())
            for it in items:
                with Image.open(folder / "images" / it.filename) as im:
                    pixels = model.preprocess(im.convert("RGB"))[None].to(device)
                img = model.encode_image(pixels, normalize=True).float().cpu()  # [1, D]
                txt = (
                    model.encode_text([it.caption, it.negative_caption], normalize=True).float().cpu()
                )  # [2, D]
                correct += int(pair_correct(img, txt[:1], txt[1:]))
            accs[subset] = 100.0 * correct / len(items)
            n += len(items)
    return accs, n


def run(args: argparse.Namespace) -> dict:
    from lift.evaluate import EvalContext, run_evaluator
    from lift.evaluate.results import SUGARCREPE_SUBSETS
    from lift.evaluate.text_cache import TextEmbeddingCache

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_pairs(Path(tmp) / "world", args.pairs)
        model = bench_checkpoint(Path(tmp) / "run", args.device)
        cfg = {"annotations": str(folder), "images": str(folder / "images")}
        cache = TextEmbeddingCache(Path(tmp) / "cache.sqlite")

        def ours() -> tuple[Any, float]:
            ctx = EvalContext(device=args.device, batch_size=args.batch_size, cache=cache, progress=False)
            t0 = time.perf_counter()
            result = run_evaluator("sugarcrepe", model, cfg, ctx=ctx)
            return result, time.perf_counter() - t0

        model.encode_text(["warm-up"])  # opens the frozen encoder once, outside both timings
        _log("bench eval: ours (cold cache)...")
        cold, cold_s = ours()
        _log("bench eval: ours (warm cache)...")
        warm, warm_s = ours()
        _log("bench eval: reference (one pair per forward pass)...")
        t0 = time.perf_counter()
        ref_acc, pairs = reference_accuracy(model, folder, args.device)
        ref_s = time.perf_counter() - t0
        cache.close()
    ours_acc = {s: cold.metrics[s] for s in SUGARCREPE_SUBSETS}
    return {
        "pairs": pairs,
        "unique_images": cold.notes["unique_images"],
        "unique_texts": cold.notes["unique_texts"],
        "device": args.device,
        "batch_size": args.batch_size,
        "ours_s": round(cold_s, 3),
        "reference_s": round(ref_s, 3),
        "ours_per_s": round(pairs / cold_s, 1),
        "reference_per_s": round(pairs / ref_s, 1),
        "speedup": round(ref_s / cold_s, 2),
        "warm_per_s": round(pairs / warm_s, 1),
        "warm_speedup": round(ref_s / warm_s, 2),
        "same_accuracy": ours_acc == ref_acc and warm.metrics == cold.metrics,
        "ours_accuracy": {k: round(v, 2) for k, v in ours_acc.items()},
        "reference_accuracy": {k: round(v, 2) for k, v in ref_acc.items()},
        "text_encoder": model.text_identity,
    }
