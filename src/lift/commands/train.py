"""Train a vision encoder against text: LIFT (image tower + head against the stored vectors of a frozen
text encoder), the CLIP baseline (image + text towers from scratch on raw captions), or another
registered method, with the same vision tower, data order and budget so they compare fairly.

Writes RUN/config.json, RUN/metrics.jsonl and RUN/checkpoints/step-NNNNNN/ (safetensors + JSON);
`--resume latest` continues a killed run from its last checkpoint with the same data order.

Captions: a sample's captions are views named like their fields (org_caption, re_caption, txt; `short`
and `long` name the usual ones). `--captions VIEW` trains on one, `random` draws one per sample and
epoch, `all` uses every view at once (multi-positive loss); `random:a,b` / `all:a,b` choose which.

Examples:
  lift train --method lift --train-data data/world/train --store stores/long --out runs/lift --samples 20000
  lift train --method clip --train-data data/world/train --captions long --out runs/clip --epochs 5
  lift train --train-data data/world/train --store stores/both --captions all --text-adapter mlp --epochs 6 \\
      --out runs/lift-all
  lift train --train-data data/world/train --store stores/nv --init-from runs/lift --epochs 6 --out runs/upgraded
  torchrun --nproc_per_node=8 -m lift train --model vit-b16 --train-data 'shards/{00000..09999}.tar' \\
      --store stores/recap --batch-size 16384 --samples 512000000 --grad-checkpointing --out runs/b16 --resume latest
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from lift.distributed import dist_info
from lift.errors import ON_ERROR_CHOICES, LiftError

NAME = "train"
HELP = (
    "train LIFT (vs stored text embeddings), the CLIP baseline or another method; resumable, torchrun-aware"
)
ORDER = 30

_HELP = {
    "method": "how the images are trained against text",
    "model": "vision tower",
    "train_data": "tar shards (folder, glob, brace pattern) or an image folder",
    "metadata": "parquet file(s) with key and caption columns (Recap layout: org_caption, re_caption)",
    "data_order": "exact (an index, random access: local data) or stream (whole shards in order: object "
    "storage, pipe:, http(s)://); default: stream for URLs, else exact",
    "shuffle_buffer": "stream order: samples each worker shuffles among",
    "image_decode": "where images are decoded: pillow (CPU workers, reduced-size JPEG decoding) or nvjpeg (GPU)",
    "captions": "VIEW, random or all (random:VIEW,VIEW...): which captions of a sample to train on "
    "(default: LIFT, the store's only view; CLIP, short)",
    "out": "run folder (new; an existing run needs --resume latest or --overwrite)",
    "overwrite": "delete the run at --out (one lift made) and start again",
    "init_from": "start from another run's (or checkpoint's) vision tower, and its head when it fits; "
    "optimizer and schedule start fresh",
    "batch_size": "global batch (all ranks and accumulation steps together)",
    "samples": "budget: total samples seen",
    "epochs": "budget: passes over the data (instead of --samples)",
    "warmup": "warm-up steps (default: min(500, steps/10))",
    "accum_steps": "compute each batch in this many micro-batches (same loss and gradient, less memory)",
    "loss": "the contrastive loss",
    "init_temperature": "initial softmax temperature (logit scale 1/T, learnable; 0.07 is CLIP's)",
    "embed_dim": "the joint space: LIFT, the store's dim (default: it); CLIP, default 512",
    "grad_checkpointing": "trade compute for memory in the towers",
    "compile": "torch.compile the training step (first steps slower while it compiles)",
    "workers": "DataLoader worker processes",
    "save_every": "checkpoint every N steps (and always at the end)",
    "log_every": "metrics row every N steps",
    "eval_suite": "a `lift eval suite` YAML: evaluated on rank 0 every --eval-every steps and at the end, "
    "logged into metrics.jsonl",
    "eval_every": "evaluate the suite every N steps (and always at the end)",
    "resume": "'latest': continue the run at --out from its newest checkpoint (starts fresh when there is none "
    "yet), or a checkpoint folder",
    # method options
    "store": "the embedding store (`lift embed`): samples join their vectors by key",
    "text_encoder": "the frozen text encoder ('default' or a folder); checked against the store",
    "head_depth": "the image head's depth (Linear, GELU, ... Linear)",
    "text_adapter": "a trainable map on the frozen vectors, saved and used by encode_text",
    "text_context_length": "tokens per caption",
}


def _choices() -> dict[str, list[str]]:
    from lift.data.decode import DECODERS
    from lift.losses import LOSSES
    from lift.methods import METHODS
    from lift.models import list_models
    from lift.models.adapters import ADAPTERS
    from lift.train_data import ORDERS

    return {"method": METHODS.names(), "model": list_models(), "loss": LOSSES.names(),
            "on_error": list(ON_ERROR_CHOICES), "text_adapter": ADAPTERS.names(), "data_order": list(ORDERS),
            "image_decode": DECODERS.names()}  # fmt: skip


def _base_type(tp: typing.Any) -> typing.Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _add_fields(
    group: argparse._ArgumentGroup, cls: type, choices: dict[str, list[str]], seen: set[str]
) -> None:
    """One flag per field of `cls` not in `seen`; SUPPRESS, so only flags the user gives reach the config
    (0 and False honoured, and they beat the YAML)."""
    from lift.config import field_bounds

    hints, bounds = typing.get_type_hints(cls), field_bounds(cls)
    for f in dataclasses.fields(cls):
        if f.name in seen:
            continue  # an option two methods share has one flag
        seen.add(f.name)
        tp = _base_type(hints[f.name])
        if tp not in (int, float, str, bool):
            continue  # `options`: given through the methods' own flags
        text = _HELP.get(f.name, "")
        if f.name in bounds:
            text += f" ({bounds[f.name].describe()})"
        if "default" not in text and f.default is not None:  # a help that explains its default keeps it
            text = f"{text} (default: {f.default})"
        text = text.strip()
        kw: dict[str, typing.Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": text}
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            group.add_argument(flag, type=tp, choices=choices.get(f.name), **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lift.methods import METHODS
    from lift.train_config import TrainConfig

    parser.add_argument("--config", help="YAML/JSON file of TrainConfig keys (flags given here override it)")
    choices, seen = _choices(), set()
    _add_fields(parser.add_argument_group("every method"), TrainConfig, choices, seen)
    for name, method in METHODS.items():
        group = parser.add_argument_group(f"--method {name}", METHODS.help(name))
        _add_fields(group, method.Options, choices, seen)
    parser.add_argument(
        "--caption-field", dest="caption_field", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def run(args: argparse.Namespace) -> int:
    from lift.train import train
    from lift.train_config import load_train_config

    given = {k: v for k, v in vars(args).items() if k not in ("config", "command", "_run")}
    if "caption_field" in given:
        raise LiftError(
            "--caption-field is `lift embed`'s choice of caption columns; in `lift train` choose the captions "
            "with --captions VIEW, random or all (short and long name the usual views)"
        )
    summary = train(load_train_config(args.config, given))
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
