"""Evaluate a LIFT or CLIP checkpoint the way the paper does: SugarCrepe composition, zero-shot
classification and image-text retrieval, on the benchmarks' own files.

Everything is batched; each distinct image and caption is embedded once, and text embeddings are
cached on disk keyed by (text encoder identity, text), so prompts and captions are embedded once
across runs. Metrics are percentages; a tie between the right and a wrong answer counts as wrong.
Results go to a JSON file (--out) and a markdown table; --json prints one JSON object last.

Examples:
  lift eval sugarcrepe --checkpoint runs/lift-demo --annotations synth/sugarcrepe --images synth/sugarcrepe/images
  lift eval zeroshot --checkpoint runs/lift-demo --images imagenet/val --classnames imagenet_class_index.json
  lift eval retrieval --checkpoint runs/clip-demo/step-1000 --images flickr30k-images \\
      --annotations flickr_annotations_30k.csv --format flickr --protocol all-captions --out flickr.json
  lift eval sugarcrepe --checkpoint lift_vitb16_recap.pt --text-encoder /models/NV-Embed-v2 --pooling model \\
      --trust-remote-code --annotations sugarcrepe --images coco/val2017     # the paper's released LIFT
  lift eval compare clip.json lift.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from lift.commands.argtypes import int_at_least, nonnegative_int, positive_int
from lift.errors import ON_ERROR_CHOICES, ErrorPolicy, LiftError

if TYPE_CHECKING:
    from lift.evaluate.results import EvalResult

NAME = "eval"
HELP = "evaluate a checkpoint: SugarCrepe, zero-shot classification, retrieval; compare results"
ORDER = 40


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _common(p: argparse.ArgumentParser) -> None:
    from lift.text.pooling import POOLING_REGISTRY

    p.add_argument(
        "--checkpoint", required=True,
        help="a run folder (its latest checkpoint), a checkpoint folder, or a reference-layout .pt",
    )  # fmt: skip
    g = p.add_argument_group(
        "reference .pt checkpoints",
        "they record no text encoder (LIFT), head counts or pooling: name them here (docs/interop.md)",
    )
    g.add_argument(
        "--text-encoder", default=None,
        help="LIFT: the frozen encoder's Hugging Face folder ('default': the packaged all-MiniLM-L6-v2); "
        "also names a moved encoder folder of a lift checkpoint",
    )  # fmt: skip
    g.add_argument(
        "--pooling",
        choices=POOLING_REGISTRY,
        default=None,
        help="its pooling (default: the one the checkpoint records; for a reference .pt, auto)",
    )
    g.add_argument(
        "--max-tokens", type=int_at_least(2), default=None, help="its caption truncation (default 77)"
    )
    g.add_argument("--instruction", default=None, help="its instruction prefix (default none)")
    g.add_argument(
        "--trust-remote-code", action="store_true", help="run the encoder's own code (NV-Embed-V2)"
    )
    add_reference_arguments(g)
    p.add_argument(
        "--batch-size", type=positive_int, default=256, help="images / texts per forward pass (default 256)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--workers", type=nonnegative_int, default=2, help="image decoding processes (default 2)")
    p.add_argument("--cache-dir", default=None, help="text embedding cache folder (default ~/.cache/lift)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the text embedding cache")
    p.add_argument(
        "--on-error", choices=ON_ERROR_CHOICES, default="stop", help="bad image/entry: stop or skip+count"
    )
    p.add_argument("--out", default=None, help="write the result JSON here")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_reference_arguments(g: argparse._ActionsContainer) -> None:
    """What a reference `.pt` does not record about its architecture (shared with `lift export`)."""
    g.add_argument(
        "--model-config", metavar="FILE", default=None,
        help="an open_clip model config JSON giving head counts and pooling (default: open_clip_config.json "
        "or NAME.json beside NAME.pt, or open_clip's trainer's params.txt)",
    )  # fmt: skip
    g.add_argument(
        "--vision-heads", type=positive_int, metavar="N", default=None,
        help="the ViT's attention heads (needed without a model config, except for ViT-B/16's 768 width)",
    )  # fmt: skip
    g.add_argument(
        "--text-heads", type=positive_int, metavar="N", default=None,
        help="CLIP: the text tower's heads (needed without a model config, except for a 512-wide tower)",
    )  # fmt: skip
    g.add_argument("--vision-pool", choices=("avg", "tok"), default=None,
                   help="the ViT's pooling (default: the model config's, else avg for LIFT, tok for CLIP)")  # fmt: skip


def reference_kwargs(args: argparse.Namespace) -> dict:
    """`lift.load`'s reference-`.pt` arguments the user gave."""
    given = {"vision_pool": args.vision_pool, "model_config": args.model_config,
             "vision_heads": args.vision_heads, "text_heads": args.text_heads}  # fmt: skip
    return {k: v for k, v in given.items() if v is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lift.evaluate import EVALUATORS

    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name in EVALUATORS.names():  # every registered evaluator is a task, described by its help
        text = EVALUATORS.help(name)
        p = sub.add_parser(name, help=text, description=text)
        _common(p)
        _ADAPTERS.get(name, _GENERIC)[0](p, name)
    p = sub.add_parser(
        "compare", help="two result JSON files side by side", description="two runs, paper's table shape"
    )
    p.add_argument("results", nargs=2, metavar="RESULT.json")


def _sugarcrepe_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--annotations", required=True, help="folder with add_obj.json ... swap_att.json")
    p.add_argument("--images", required=True, help="image folder the items' filenames refer to")
    p.add_argument("--subsets", nargs="+", default=None, help="evaluate only these subsets")


def _sugarcrepe_config(args: argparse.Namespace) -> dict:
    cfg = {"annotations": args.annotations, "images": args.images}
    return {**cfg, "subsets": args.subsets} if args.subsets else cfg


def _zeroshot_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--images", required=True, help="ImageFolder root: one folder per class")
    p.add_argument(
        "--classnames",
        default=None,
        help="txt (one name per line, folder order) or imagenet_class_index.json",
    )
    p.add_argument(
        "--templates", default=None, help="prompt templates file ({label} placeholder), one per line"
    )


def _zeroshot_config(args: argparse.Namespace) -> dict:
    from lift.evaluate.formats import read_templates

    cfg = {"images": args.images, "classnames": args.classnames}
    return {**cfg, "templates": read_templates(args.templates)} if args.templates else cfg


def _retrieval_arguments(p: argparse.ArgumentParser, name: str) -> None:
    from lift.evaluate.retrieval import FORMATS, PROTOCOLS

    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--annotations", required=True, help="COCO captions JSON or flickr_annotations_30k.csv")
    p.add_argument(
        "--format", choices=sorted(FORMATS), default=None, help="default: flickr for .csv, else coco"
    )
    p.add_argument("--protocol", choices=PROTOCOLS, default=PROTOCOLS[0])
    p.add_argument("--split", default="test", help="Flickr30K split column value (default test)")


def _retrieval_config(args: argparse.Namespace) -> dict:
    fmt = args.format or ("flickr" if str(args.annotations).endswith(".csv") else "coco")
    return {"images": args.images, "annotations": args.annotations, "format": fmt, "protocol": args.protocol,
            "split": args.split}  # fmt: skip


def _generic_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """A plugin evaluator without its own flags: its config's fields as repeated --set KEY=VALUE."""
    import dataclasses

    from lift.evaluate import get_evaluator

    fields = ", ".join(f.name for f in dataclasses.fields(get_evaluator(name).config_cls))
    p.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help=f"a field of its config ({fields}); repeat for several",
    )  # fmt: skip


def _generic_config(args: argparse.Namespace) -> dict:
    from lift.config import apply_overrides, config_to_dict
    from lift.evaluate import get_evaluator

    cls = get_evaluator(args.task).config_cls
    try:
        defaults = cls()
    except TypeError as e:  # a plugin's mistake, not the user's
        raise LiftError(
            f"{args.task}: its config {cls.__name__} needs a default for every field: {e}"
        ) from None
    try:
        return config_to_dict(apply_overrides(cls, defaults, args.settings))
    except LiftError as e:
        raise LiftError(f"--set: {e}") from None


# The command-line adapters of the built-in evaluators; any other registered one gets the generic one.
_ADAPTERS = {
    "sugarcrepe": (_sugarcrepe_arguments, _sugarcrepe_config),
    "zeroshot": (_zeroshot_arguments, _zeroshot_config),
    "retrieval": (_retrieval_arguments, _retrieval_config),
}
_GENERIC = (_generic_arguments, _generic_config)


def task_config(args: argparse.Namespace) -> dict:
    """The evaluator's config from the command line."""
    return _ADAPTERS.get(args.task, _GENERIC)[1](args)


def _compare(args: argparse.Namespace) -> int:
    from lift.evaluate.results import compare_table, read_result

    a, b = (read_result(p) for p in args.results)
    labels = (f"{a.label} [{Path(args.results[0]).name}]", f"{b.label} [{Path(args.results[1]).name}]")
    print(compare_table(a, b, labels=labels))
    return 0


def _is_result(path: Path) -> bool:
    """True when `path` is a lift eval result JSON (which a rerun may replace)."""
    from lift.evaluate.results import read_result

    try:
        read_result(path)
    except (LiftError, OSError, ValueError):
        return False
    return True


def _check_out(path: Path) -> None:
    """--out: a new file in a writable folder, or an earlier lift eval result (which is replaced)."""
    from lift.outputs import check_output_file

    check_output_file(path, flag="--out", replaceable=_is_result, what="a lift eval result JSON")


def _table(result: EvalResult) -> str:
    """The paper's table shape for a built-in task; a plugin evaluator's metrics one per line."""
    from lift.evaluate.results import COLUMNS, markdown_table

    if result.task in COLUMNS:
        return markdown_table(result)
    return "\n".join(f"{key}: {value:.2f}" for key, value in result.metrics.items())


def run(args: argparse.Namespace) -> int:
    if args.task == "compare":
        return _compare(args)
    from lift.evaluate import EvalContext, evaluate_checkpoint
    from lift.evaluate.results import write_result
    from lift.evaluate.text_cache import TextEmbeddingCache, default_cache_path

    if args.out:  # before any work: results are never computed and then lost
        _check_out(Path(args.out))

    cache = None
    if not args.no_cache:
        cache = TextEmbeddingCache(
            Path(args.cache_dir) / default_cache_path().name if args.cache_dir else None
        )
    ctx = EvalContext(
        device=args.device or _default_device(), batch_size=args.batch_size, workers=args.workers,
        cache=cache, policy=ErrorPolicy(args.on_error), progress=not args.no_progress,
    )  # fmt: skip
    load_kwargs = {
        "text_encoder": args.text_encoder, "pooling": args.pooling, "max_tokens": args.max_tokens,
        "instruction": args.instruction, **reference_kwargs(args),
    }  # fmt: skip
    load_kwargs = {k: v for k, v in load_kwargs.items() if v is not None}
    if args.trust_remote_code:
        load_kwargs["trust_remote_code"] = True
    result = evaluate_checkpoint(
        args.task, args.checkpoint, task_config(args), ctx=ctx, load_kwargs=load_kwargs
    )
    if args.out:
        write_result(args.out, result)
    print(_table(result))
    stats = result.notes.get("text_embedding", {})
    print(
        f"{args.task}: {result.seconds:.1f}s; texts embedded {stats.get('encoded', 0)}, "
        f"from cache {stats.get('cache_hits', 0)}; skipped {ctx.policy.skipped}"
        + (f"; wrote {args.out}" if args.out else "")
    )
    if args.json:
        keys = ("task", "metrics", "counts", "seconds", "checkpoint", "text_encoder")
        print(json.dumps({k: getattr(result, k) for k in keys}, default=str), flush=True)
    return 0
