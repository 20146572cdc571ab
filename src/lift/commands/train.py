"""Train a vision encoder: LIFT (image tower + head against stored text embeddings of a frozen
encoder) or the CLIP baseline (image + text towers from scratch on raw captions), with the same
vision tower, data order and budget so the two compare fairly.

Writes RUN/config.json, RUN/metrics.jsonl and RUN/checkpoints/step-NNNNNN/ (safetensors + JSON);
`--resume latest` continues a killed run from its last checkpoint with the same data order.

Examples:
  lift train --method lift --train-data data/world/train --store stores/world --out runs/lift --samples 20000
  lift train --method clip --train-data data/world/train --caption-field long --out runs/clip --epochs 5
  torchrun --nproc_per_node=8 -m lift train --model vit-b16 --train-data 'shards/{00000..09999}.tar' \\
      --store stores/recap --batch-size 16384 --samples 512000000 --grad-checkpointing --out runs/b16 --resume latest
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from lift.config import config_from_dict, config_to_dict, load_config
from lift.distributed import dist_info
from lift.errors import ON_ERROR_CHOICES

NAME = "train"
HELP = "train LIFT (vs stored text embeddings) or the CLIP baseline; resumable, torchrun-aware"
ORDER = 30

_HELP = {
    "method": "lift: image tower + head vs the store; clip: both towers on raw captions",
    "model": "vision tower: vit-tiny, vit-small (CPU-sized) or vit-b16 (the paper's)",
    "train_data": "tar shards (folder, glob, brace pattern) or an image folder",
    "metadata": "parquet file(s) with key, org_caption, re_caption (Recap layout)",
    "store": "embedding store (LIFT): samples join their embedding by key",
    "text_encoder": "the run's frozen text encoder ('default' or a folder); checked against the store",
    "caption_field": "CLIP captions: short (org_caption/.txt), long (re_caption) or random per sample",
    "out": "run folder (new; an existing run needs --resume latest or --overwrite)",
    "overwrite": "delete the run at --out (one lift made) and start again",
    "batch_size": "global batch (all ranks and accumulation steps together)",
    "samples": "budget: total samples seen",
    "epochs": "budget: passes over the data (instead of --samples)",
    "warmup": "warm-up steps (default: min(500, steps/10))",
    "accum_steps": "compute each batch in this many micro-batches (same loss and gradient, less memory)",
    "loss": "infonce, siglip or cosine",
    "init_temperature": "initial softmax temperature (logit scale 1/T, learnable; 0.07 is CLIP's)",
    "head_depth": "LIFT head MLP depth",
    "embed_dim": "LIFT: must equal the store's dim (default: it); CLIP: the joint dim (default 512)",
    "text_context_length": "CLIP tokenizer length",
    "grad_checkpointing": "trade compute for memory in the towers",
    "workers": "DataLoader worker processes",
    "save_every": "checkpoint every N steps (and always at the end)",
    "log_every": "metrics row every N steps",
    "resume": "'latest': continue the run at --out from its newest checkpoint (starts fresh when there is none "
    "yet), or a checkpoint folder",
}
_CHOICES = {
    "method": ("lift", "clip"),
    "caption_field": ("short", "long", "random"),
    "on_error": ON_ERROR_CHOICES,
}


def _base_type(tp: typing.Any) -> typing.Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _help(f: dataclasses.Field, bounds: typing.Any) -> str:
    text = _HELP.get(f.name, "")
    if bounds is not None:
        text += f" ({bounds.describe()})"
    return f"{text} (default: {f.default})".strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lift.config import field_bounds
    from lift.train import TrainConfig

    parser.add_argument("--config", help="YAML/JSON file of TrainConfig keys (flags given here override it)")
    hints = typing.get_type_hints(TrainConfig)
    bounds = field_bounds(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        tp = _base_type(hints[f.name])
        # SUPPRESS: only flags the user gives reach the config, so 0 and False are honoured and beat the YAML
        kw: dict[str, typing.Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": _help(f, bounds.get(f.name)),
        }
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            parser.add_argument(flag, type=tp, choices=_CHOICES.get(f.name), **kw)


def run(args: argparse.Namespace) -> int:
    from lift.train import TrainConfig, train

    cfg = load_config(TrainConfig, args.config)
    fields = config_to_dict(cfg)
    given = {k: v for k, v in vars(args).items() if k in fields}
    cfg = config_from_dict(TrainConfig, {**fields, **given})
    summary = train(cfg)
    if not dist_info().is_main:
        return 0
    if summary["unused_note"]:
        print(f"note: {summary['unused_note']}", file=sys.stderr)
    skipped = f", skipped {summary['skipped']} bad samples" if summary["skipped"] else ""
    print(
        f"trained {summary['method']} for {summary['steps']} steps ({summary['samples']} samples){skipped}; "
        f"checkpoint: {summary['checkpoint']}",
        file=sys.stderr,
    )
    return 0
