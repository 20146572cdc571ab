"""SugarCrepe-format evaluation two ways with one checkpoint, side by side: ours (each distinct
image and caption embedded once, in batches, through the text cache) and the reference way (per
pair, as the official SugarCrepe script and LIFT's reference implementation do it: open the image,
then one forward pass for the image, one for the positive caption and one for the negative, texts
re-embedded every time).

The pairs are `lift synth`'s SugarCrepe split (written to a temp folder). The checkpoint is a LIFT
vit-tiny with random weights (speed does not depend on training) saved and loaded back with
`lift.load`, so its text side is the real frozen encoder (default: all-MiniLM-L6-v2): the text cost
is real, which is what batching saves. `ours_per_s` uses a cold (fresh) cache; `warm_per_s` reruns
ours with the cache filled, the case of every checkpoint after the first of a LIFT run, whose text
encoder never changes. Ours and the reference alternate for `--repeats` rounds and each keeps its
best round, so load from other processes does not land on one side only.

Examples:
  lift bench eval --json
  lift bench eval --pairs 2000 --batch-size 128 --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

NAME = "eval"
HELP = "SugarCrepe evaluation: batched + cached (ours) vs one pair per forward pass (reference)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=int, default=1000, help="at least this many pairs (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64, help="images/texts per pass (64: fast on CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; each side's best counts")


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
    """The official script's way: per pair, open and embed the image, then each caption on its own."""
    import torch

    from lift.data.images import load_rgb
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
                pixels = model.preprocess(load_rgb(folder / "images" / it.filename))[None].to(device)
                img = model.encode_image(pixels, normalize=True).float().cpu()  # [1, D]
                pos = model.encode_text([it.caption], normalize=True).float().cpu()  # [1, D]
                neg = model.encode_text([it.negative_caption], normalize=True).float().cpu()  # [1, D]
                correct += int(pair_correct(img, pos, neg))
            accs[subset] = 100.0 * correct / len(items)
            n += len(items)
    return accs, n


def run(args: argparse.Namespace) -> dict:
    from lift.bench.timing import best_of_interleaved
    from lift.evaluate import EvalContext, run_evaluator
    from lift.evaluate.results import SUGARCREPE_SUBSETS
    from lift.evaluate.text_cache import TextEmbeddingCache

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_pairs(Path(tmp) / "world", args.pairs)
        model = bench_checkpoint(Path(tmp) / "run", args.device)
        cfg = {"annotations": str(folder), "images": str(folder / "images")}
        caches: list[TextEmbeddingCache] = []

        def ours(cache: TextEmbeddingCache | None = None) -> Any:
            if cache is None:  # a cold run: a fresh, empty cache
                cache = TextEmbeddingCache(Path(tmp) / f"cache-{len(caches)}.sqlite")
                caches.append(cache)
            ctx = EvalContext(device=args.device, batch_size=args.batch_size, cache=cache, progress=False)
            return run_evaluator("sugarcrepe", model, cfg, ctx=ctx)

        model.encode_text(["warm-up"])  # opens the frozen encoder once, outside both timings
        pairs = sum(len(json.loads((folder / f"{s}.json").read_text())) for s in SUGARCREPE_SUBSETS)
        timing = {"repeats": args.repeats, "count": pairs, "unit": "pairs", "label": "eval"}
        timed = best_of_interleaved(
            {"ours": ours, "reference": lambda: reference_accuracy(model, folder, args.device)}, **timing
        )
        (cold_s, cold), (ref_s, (ref_acc, ref_pairs)) = timed["ours"], timed["reference"]
        warm_s, warm = best_of_interleaved({"warm": lambda: ours(caches[-1])}, **timing)["warm"]
        for cache in caches:
            cache.close()
    ours_acc = {s: cold.metrics[s] for s in SUGARCREPE_SUBSETS}
    if ref_pairs != pairs or sum(cold.counts[s]["n"] for s in SUGARCREPE_SUBSETS) != pairs:
        raise RuntimeError(f"bench eval: the two ways scored different pair counts ({pairs} vs {ref_pairs})")
    return {
        "pairs": pairs,
        "unique_images": cold.notes["unique_images"],
        "unique_texts": cold.notes["unique_texts"],
        "device": args.device,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
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
