"""Caption embedding speed: our TextEncoder against the reference way and sentence-transformers.

All three use the same model folder (default: the packaged all-MiniLM-L6-v2) on the same captions:
  ours   length-sorted batches within a window, padded to the batch max, duplicates embedded once
  naive  the reference way: fixed batches in input order, padded to the batch max, no dedup
  sbert  sentence_transformers.SentenceTransformer(folder).encode, max_seq_length set to ours
Captions are generated deterministically: 3 to 60 words, mostly short alt-text with a long tail of
detailed captions, and a few exact repeats (`--dup-fraction`), as web captions have.

Examples:
  lift bench embed --json
  lift bench embed --json --n 5000 --batch-size 64 --device cpu
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch and transformers load only when this benchmark runs
    import torch

    from lift.text import TextEncoder

NAME = "embed"
HELP = "caption embedding: ours vs fixed input-order batches vs sentence-transformers (captions/s)"

_VOCAB = (
    "a an the of on in with and at near under over beside two three small large red blue green white black "
    "wooden old young man woman child dog cat bird car street house table chair window tree flower field "
    "mountain river beach city night morning sunset light shadow photo picture view close-up portrait "
    "standing sitting walking holding wearing looking colorful bright dark vintage modern background "
    "front left right top bottom corner group people family friends food plate cup glass bottle book"
)
_WORDS = _VOCAB.split()
_COMMON = [
    "image",
    "photo",
    "untitled",
    "stock photo",
    "a picture of a dog",
    "product image",
    "logo",
    "thumbnail",
]


def make_captions(n: int, *, seed: int = 0, dup_fraction: float = 0.1) -> list[str]:
    """n captions of 3..60 words: 65% short alt-text (3..15), 35% detailed (16..60), some repeated."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if rng.random() < dup_fraction:
            out.append(
                str(rng.choice(_COMMON))
                if rng.random() < 0.5 or not out
                else out[int(rng.integers(len(out)))]
            )
            continue
        words = int(rng.integers(3, 16)) if rng.random() < 0.65 else int(rng.integers(16, 61))
        out.append(" ".join(rng.choice(_WORDS, size=words)))
    return out


def naive_encode(enc: TextEncoder, texts: list[str], batch_size: int) -> torch.Tensor:
    """The reference way: input order, fixed batches padded to their longest, every text embedded."""
    import torch
    import torch.nn.functional as F

    from lift.text import POOLINGS

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = enc.tokenizer(texts[i : i + batch_size], padding=True, truncation=True,
                                  max_length=enc.max_tokens, return_tensors="pt").to(enc.device)  # fmt: skip
            hidden = enc.model(**batch).last_hidden_state  # [B, T, D]
            out.append(
                F.normalize(POOLINGS[enc.pooling](hidden, batch["attention_mask"]), dim=-1).float().cpu()
            )
    return torch.cat(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=2000, help="captions to embed")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--text-encoder", default="default", help="'default' or a local Hugging Face model folder"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-tokens", type=int, default=77)
    parser.add_argument(
        "--dup-fraction", type=float, default=0.1, help="share of captions that repeat another"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds (methods interleaved); each method's best round counts"
    )
    parser.add_argument("--no-sbert", dest="sbert", action="store_false", help="skip sentence-transformers")


def run(args: argparse.Namespace) -> dict:
    import torch

    from lift.bench.timing import best_of_interleaved
    from lift.text import TextEncoder

    texts = make_captions(args.n, dup_fraction=args.dup_fraction)
    enc = TextEncoder.from_pretrained(args.text_encoder, device=args.device, max_tokens=args.max_tokens,
                                      batch_size=args.batch_size)  # fmt: skip
    methods = {"naive": lambda: naive_encode(enc, texts, args.batch_size), "ours": lambda: enc.encode(texts)}
    if args.sbert:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(enc.path), device=args.device)
        model.max_seq_length = args.max_tokens
        methods["sbert"] = lambda: model.encode(
            texts, batch_size=args.batch_size, convert_to_tensor=True
        ).cpu()
        model.encode(texts[:16])  # warm-up: first calls allocate
    enc.encode(texts[:16])
    timed = {
        name: (args.n / seconds, vectors)
        for name, (seconds, vectors) in best_of_interleaved(
            methods, repeats=args.repeats, count=args.n, unit="captions", label="embed"
        ).items()
    }
    (ours_per_s, ours), (naive_per_s, naive) = timed["ours"], timed["naive"]
    result = {
        "n": args.n,
        "unique": len(set(texts)),
        "mean_words": round(float(np.mean([len(t.split()) for t in texts])), 1),
        "batch_size": args.batch_size,
        "device": str(enc.device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "ours_per_s": round(ours_per_s, 1),
        "naive_per_s": round(naive_per_s, 1),
        "speedup_vs_naive": round(ours_per_s / naive_per_s, 3),
        "max_abs_diff": float((ours - naive).abs().max()),
    }
    if args.sbert:
        sbert_per_s, sbert = timed["sbert"]
        result.update(sbert_per_s=round(sbert_per_s, 1), speedup_vs_sbert=round(ours_per_s / sbert_per_s, 3),
                      max_abs_diff_vs_sbert=float((ours - sbert.float()).abs().max()))  # fmt: skip
    return result
