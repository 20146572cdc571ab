"""The one-shot GPU check: everything a first run on an accelerator should measure, in one command.

    lift bench gpu --json              # ViT-B/16, 224 px, bf16, batch 256 (about 5 minutes on an H100)
    lift bench gpu --smoke --json      # the same code on CPU at tiny sizes (under 2 minutes; in the tests)

Sections, each its own function and JSON block:
- `train`: training images/s of LIFT (head to a 4096-d store vector) and CLIP (its text tower on
  captions of n = 77 and 128 tokens), the same tower, batch and optimizer as `lift bench train`; peak
  memory; model FLOPs utilisation = counted FLOPs per sample (`lift bench flops`, on the meta device,
  fused attention kernels counted like the math path) x images/s / the device's peak bf16 FLOPs.
- `embed`: captions/s of a random 4096-wide, 2-layer decoder LLM with last-token pooling (the shape
  of NV-Embed-V2's layers; only two of them) at n = 77 and 323 tokens: what `lift embed` costs.
- `eval`: `lift bench eval`'s batched-vs-per-pair SugarCrepe comparison on the device.
Random weights everywhere: speed does not depend on training. Peak FLOPs come from a table of
known devices (`PEAK_BF16_TFLOPS`); an unknown device reports no MFU rather than a guess.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

NAME = "gpu"
HELP = "one-shot accelerator check: train img/s + MFU (LIFT vs CLIP), embedding and eval throughput"

# dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name()
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L40": 181.0,
                    "A10": 125.0, "L4": 121.0, "RTX 4090": 165.0, "A6000": 155.0, "V100": 125.0}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    model: str = "vit-b16"
    batch_size: int = 256
    lift_dim: int = 4096
    clip_dim: int = 512
    clip_tokens: tuple[int, ...] = (77, 128)
    steps: int = 10
    embed_width: int = 4096
    embed_layers: int = 2
    embed_tokens: tuple[int, ...] = (77, 323)
    embed_texts: int = 512
    embed_batch: int = 64
    eval_pairs: int = 1000


FULL = Sizes()
SMOKE = Sizes(model="vit-tiny", batch_size=8, lift_dim=64, clip_dim=64, clip_tokens=(16, 32), steps=2,
              embed_width=64, embed_tokens=(16, 48), embed_texts=32, embed_batch=16, eval_pairs=40)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes on CPU: the same code in under 2 minutes"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cuda, cuda:N or cpu")
    parser.add_argument("--sections", nargs="+", default=["train", "embed", "eval"],
                        choices=["train", "embed", "eval"], help="what to measure (default: all)")  # fmt: skip


def device_peak_flops(device: torch.device) -> tuple[float | None, str]:
    """(peak bf16 FLOP/s or None when unknown, the device's name)."""
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    peak = next((tf for key, tf in PEAK_BF16_TFLOPS.items() if key in name), None)
    return (peak * 1e12 if peak else None), name


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_section(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """LIFT and CLIP training images/s, peak memory and MFU at `sizes`."""
    from lift.bench.flops import step_flops
    from lift.bench.train import _time_steps
    from lift.losses import create_loss
    from lift.methods import get_method
    from lift.models import ModelConfig, create_model
    from lift.optim import create_optimizer
    from lift.train import StepForward, TrainConfig

    peak, _ = device_peak_flops(device)
    runs = [("lift", None)] + [("clip", n) for n in sizes.clip_tokens]
    out = {}
    for method, tokens in runs:
        torch.manual_seed(0)
        dim = sizes.lift_dim if method == "lift" else sizes.clip_dim
        cfg = ModelConfig(method=method, model=sizes.model, embed_dim=dim, text_context_length=tokens or 77)
        model = create_model(cfg).to(device).train()
        b, s = sizes.batch_size, model.image_size
        images = torch.randn(b, 3, s, s, device=device)
        if method == "lift":
            texts = torch.nn.functional.normalize(torch.randn(b, dim, device=device), dim=-1)
        else:
            texts = torch.randint(1, 49407, (b, tokens), device=device)
            texts[:, -1] = 49407  # full-length captions: EOT last
        ctx = {"net": StepForward(model, get_method(method)(TrainConfig(method=method))), "model": model,
               "loss": create_loss("infonce"), "images": images, "texts": texts,
               "opt": create_optimizer(model, lr=1e-4, weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6)}  # fmt: skip
        _time_steps(ctx, 1, device)  # warm-up: kernels, allocator
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        img_per_s = _time_steps(ctx, sizes.steps, device)
        flops = step_flops(cfg, batch_size=2)
        per_sample = (flops["forward"] + flops["backward"]) / 2
        key = method if tokens is None else f"clip_n{tokens}"
        out[key] = {
            "img_per_s": round(img_per_s, 1), "gflops_per_sample": round(per_sample / 1e9, 2),
            "peak_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
            "mfu": round(per_sample * img_per_s / peak, 4) if peak else None,
        }  # fmt: skip
        print(f"  train {key}: {out[key]}", file=sys.stderr, flush=True)
        del ctx, model
    n = sizes.clip_tokens[0]
    out[f"lift_vs_clip_n{n}"] = round(out["lift"]["img_per_s"] / out[f"clip_n{n}"]["img_per_s"], 3)
    return out


def _random_decoder(width: int, layers: int, max_tokens: int, device: torch.device) -> Any:
    """A TextEncoder over a random Llama-style decoder (last-token pooling) and a word tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    from lift.text import TextEncoder

    words = [f"w{i}" for i in range(1000)]
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>", padding_side="left")  # fmt: skip
    heads = max(1, width // 128)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=width, intermediate_size=int(width * 2.6875),
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max(512, max_tokens))  # fmt: skip
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = LlamaModel(config).to(device=device, dtype=dtype).eval()
    return TextEncoder(path=Path("random-decoder"), model=model, tokenizer=tokenizer, pooling="last",
                       max_tokens=max_tokens, instruction="", normalize=True, append_eos=True, device=device,
                       batch_size=64), words  # fmt: skip


def embed_section(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Captions/s of a random decoder LLM with last-token pooling, at each caption length."""
    out = {}
    for n in sizes.embed_tokens:
        enc, words = _random_decoder(sizes.embed_width, sizes.embed_layers, n + 1, device)
        g = torch.Generator().manual_seed(n)
        texts = [" ".join(words[int(i)] for i in torch.randint(0, len(words), (n,), generator=g))
                 + f" w{k}" for k in range(sizes.embed_texts)]  # fmt: skip  # distinct: no dedup shortcut
        enc.encode(texts[: sizes.embed_batch], batch_size=sizes.embed_batch)  # warm-up
        _sync(device)
        start = time.perf_counter()
        enc.encode(texts, batch_size=sizes.embed_batch)
        _sync(device)
        out[f"n{n}"] = {"captions_per_s": round(len(texts) / (time.perf_counter() - start), 1),
                        "width": sizes.embed_width, "layers": sizes.embed_layers}  # fmt: skip
        print(f"  embed n={n}: {out[f'n{n}']}", file=sys.stderr, flush=True)
        del enc
    return out


def eval_section(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """`lift bench eval` on the device: batched + cached vs one pair per forward pass."""
    from lift.bench import eval as bench_eval

    args = argparse.Namespace(pairs=sizes.eval_pairs, batch_size=64, device=str(device), repeats=1)
    result = bench_eval.run(args)
    keep = ("ours_per_s", "reference_per_s", "speedup", "warm_speedup", "same_accuracy", "pairs")
    return {k: result[k] for k in keep if k in result}


SECTIONS = {"train": train_section, "embed": embed_section, "eval": eval_section}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lift.errors import LiftError

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LiftError(f"--device {args.device}: no CUDA device is available (use --smoke to run on CPU)")
    sizes = SMOKE if args.smoke else FULL
    if device.type == "cpu" and not args.smoke:
        print("note: no accelerator; the full sizes on CPU take very long (use --smoke)", file=sys.stderr)
    peak, name = device_peak_flops(device)
    result: dict[str, Any] = {"device": name, "peak_bf16_tflops": peak / 1e12 if peak else None,
                              "torch": torch.__version__, "smoke": bool(args.smoke), "sizes": asdict(sizes)}  # fmt: skip
    started = time.perf_counter()
    for section in args.sections:
        print(f"[lift bench gpu] {section} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        result[section] = SECTIONS[section](sizes, device)
        result[section]["seconds"] = round(time.perf_counter() - t0, 1)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result
