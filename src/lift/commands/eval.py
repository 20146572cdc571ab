"""Evaluate a LIFT or CLIP checkpoint the way the paper and its successors do: SugarCrepe and
SugarCrepe++ composition, Winoground, MMVP-VLM, zero-shot classification, and image-text retrieval
with short or long captions, on the benchmarks' own files; or a whole suite of them at once.

Every registered evaluator is a task; its flags are its config's fields (`lift eval NAME --help`), the
same keys a suite file uses. Paths and annotation files are checked before any model loads.
Everything is batched; each distinct image and caption is embedded once, and text embeddings are
cached on disk keyed by (text encoder identity, text), so prompts and captions are embedded once
across runs. Metrics are percentages; a tie between the right and a wrong answer counts as wrong.
Results go to a JSON file (--out) and a markdown table; --json prints one JSON object last.

Examples:
  lift eval sugarcrepe --checkpoint runs/lift-demo --annotations synth/sugarcrepe --images synth/sugarcrepe/images
  lift eval zeroshot --checkpoint runs/lift-demo --images imagenet/val --classnames imagenet_class_index.json
  lift eval retrieval --checkpoint runs/clip-demo/step-1000 --images flickr30k-images \\
      --annotations flickr_annotations_30k.csv --format flickr --protocol all-captions --out flickr.json
  lift eval sugarcrepe-pp --checkpoint runs/lift-demo --annotations scpp/data --tasks tot   # text side only
  lift eval long-retrieval --checkpoint runs/lift-long --format urban1k --annotations Urban1k \\
      --images Urban1k/image --max-tokens 323
  lift eval sugarcrepe --checkpoint lift_vitb16_recap.pt --text-encoder /models/NV-Embed-v2 --pooling model \\
      --trust-remote-code --annotations sugarcrepe --images coco/val2017     # the paper's released LIFT
  lift eval suite --checkpoint runs/lift-long --suite suite.yaml --out suite.json
  lift eval compare clip.json lift.json         # two results, or two suite results task by task
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from lift.commands.argtypes import int_at_least, nonnegative_int, positive_int
from lift.config import Bounds
from lift.errors import ON_ERROR_CHOICES, ErrorPolicy, LiftError

if TYPE_CHECKING:
    from lift.evaluate.options import FieldSpec
    from lift.evaluate.results import EvalResult

NAME = "eval"
HELP = "evaluate a checkpoint: SugarCrepe(++), zero-shot, retrieval (short, long captions), suites; compare"
ORDER = 40


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _common(p: argparse.ArgumentParser) -> None:
    """The flags every task shares (a task's config may define a `lift.load` option itself: then that flag
    is its own, e.g. long-retrieval's --max-tokens)."""
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
    given = {k: getattr(args, k, None) for k in ("vision_pool", "model_config", "vision_heads", "text_heads")}
    return {k: v for k, v in given.items() if v is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lift.evaluate import EVALUATORS

    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, evaluator in EVALUATORS.items():  # every registered evaluator is a task; its config, its flags
        text = EVALUATORS.help(name)
        # "resolve": a config field named like a `lift.load` option (max_tokens) takes that flag over
        p = sub.add_parser(name, help=text, description=text, conflict_handler="resolve")
        _common(p)
        add_config_arguments(p, name, evaluator.config_cls)
    p = sub.add_parser(
        "suite", help="several evaluators from a YAML file, one model load and one text cache",
        description="Run the evaluators of a YAML suite file (a list of `- task: NAME` entries with their "
        "keys, the flags of `lift eval NAME` with underscores; relative paths from the file's folder). "
        "Every entry is checked before the model loads.",
    )  # fmt: skip
    p.add_argument("--suite", required=True, metavar="FILE", help="the suite file (YAML)")
    _common(p)
    p = sub.add_parser(
        "compare", help="two result JSON files side by side (suite results: task by task)",
        description="two runs, paper's table shape",
    )  # fmt: skip
    p.add_argument("results", nargs=2, metavar="RESULT.json")


_CONFIG_DEST = "cfg_"  # argparse dests of config flags: never confused with the shared ones


def _number(kind: type, bounds: Bounds | None):
    """An argparse `type=` for an int/float field, refusing values outside its range while parsing."""
    word = "an integer" if kind is int else "a number"
    if kind is int and bounds is not None and bounds.ge is not None and (bounds.gt, bounds.le, bounds.lt) == (
        None, None, None,
    ):  # fmt: skip
        return int_at_least(int(bounds.ge))
    rule = f" {bounds.describe()}" if bounds is not None else ""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {word}{rule}, got {text!r}") from None
        if bounds is not None and not bounds.holds(value):
            raise argparse.ArgumentTypeError(f"must be {word}{rule}, got {value}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _yaml_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"not a YAML value: {text!r}") from None


def _help(spec: FieldSpec) -> str:
    text = spec.help or f"{spec.name} ({'list of ' if spec.many else ''}{spec.kind.__name__})"
    default = spec.describe_default()
    if spec.required:
        return text + " (required)"
    return f"{text} (default: {default})" if default else text


def add_config_arguments(p: argparse.ArgumentParser, name: str, config_cls: type) -> None:
    """One flag per field of `config_cls`: typed, with its help, choices, range and default."""
    from lift.evaluate.options import fields_of

    g = p.add_argument_group(
        f"{name} options",
        f"the fields of {config_cls.__name__}; in a suite file the same keys with underscores",
    )
    specs = fields_of(config_cls)
    for spec in specs:
        kw: dict = {"dest": _CONFIG_DEST + spec.name, "default": None, "help": _help(spec)}
        if spec.kind is bool and not spec.many:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            if spec.convert is not None:
                kw["type"] = str  # the converter runs on the string (one-line errors of its own)
            elif spec.kind in (int, float):
                kw["type"] = _number(spec.kind, spec.bounds)
            elif spec.kind in (object, bool):  # bool: a list of them (one bool is --x / --no-x)
                kw["type"] = _yaml_value
            if spec.many and spec.convert is None:
                kw["nargs"] = "+"
            kw["required"] = spec.required
            if spec.choices is not None:
                kw["choices"] = spec.choices  # argparse shows them as the metavar
            else:
                kinds = {"file": "FILE", "dir": "DIR", "any": "PATH"}
                kw["metavar"] = spec.metavar or kinds.get(spec.path or "") or spec.name.upper()
        g.add_argument(spec.flag, **kw)


def task_config(args: argparse.Namespace) -> dict:
    """The evaluator's config from the command line: the flags given (the config's defaults for the rest)."""
    prefix = _CONFIG_DEST
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


def _compare(args: argparse.Namespace) -> int:
    from lift.evaluate.results import compare_table, read_results

    a, b = (read_results(p) for p in args.results)
    # two single results are compared whatever their names (compare_table says if their tasks differ)
    if len(a) == len(b) == 1:
        b = {next(iter(a)): next(iter(b.values()))}
    names = [n for n in a if n in b]
    if not names:
        raise LiftError(
            f"{args.results[0]} and {args.results[1]} have no task in common ({', '.join(a)} vs {', '.join(b)})"
        )
    parts = []
    for name in names:
        ra, rb = a[name], b[name]
        labels = (f"{ra.label} [{Path(args.results[0]).name}]", f"{rb.label} [{Path(args.results[1]).name}]")
        title = name if name == ra.task else f"{name} ({ra.task})"
        table = compare_table(ra, rb, labels=labels)
        parts.append(table if len(a) == len(b) == 1 else f"## {title}\n\n{table}")
    for path, only in (
        (args.results[0], [n for n in a if n not in b]),
        (args.results[1], [n for n in b if n not in a]),
    ):
        if only:
            parts.append(f"only in {path}: {', '.join(only)}")
    print("\n\n".join(parts))
    return 0


def _is_result(path: Path) -> bool:
    """True when `path` is a lift eval result JSON, one task's or a suite's (which a rerun may replace)."""
    from lift.evaluate.results import read_results

    try:
        read_results(path)
    except (LiftError, OSError, ValueError):
        return False
    return True


def _check_out(path: Path) -> None:
    """--out: a new file in a writable folder, or an earlier lift eval result (which is replaced)."""
    from lift.outputs import check_output_file

    check_output_file(path, flag="--out", replaceable=_is_result, what="a lift eval result JSON")


def _context(args: argparse.Namespace):
    from lift.evaluate import EvalContext
    from lift.evaluate.text_cache import TextEmbeddingCache, default_cache_path

    cache = None
    if not args.no_cache:
        cache = TextEmbeddingCache(
            Path(args.cache_dir) / default_cache_path().name if args.cache_dir else None
        )
    return EvalContext(
        device=args.device or _default_device(), batch_size=args.batch_size, workers=args.workers,
        cache=cache, policy=ErrorPolicy(args.on_error), progress=not args.no_progress,
    )  # fmt: skip


def _load_kwargs(args: argparse.Namespace) -> dict:
    """`lift.load`'s options the user gave (a task's config may have taken one over: not passed then)."""
    given = {k: getattr(args, k, None) for k in ("text_encoder", "pooling", "max_tokens", "instruction")}
    kwargs = {k: v for k, v in {**given, **reference_kwargs(args)}.items() if v is not None}
    if getattr(args, "trust_remote_code", False):
        kwargs["trust_remote_code"] = True
    return kwargs


def _summary(name: str, result: EvalResult) -> str:
    stats = result.notes.get("text_embedding", {})
    line = (
        f"{name}: {result.seconds:.1f}s; texts embedded {stats.get('encoded', 0)}, "
        f"from cache {stats.get('cache_hits', 0)}; skipped {result.notes.get('skipped', 0)}"
    )
    if result.notes.get("truncated") is not None:
        notes = result.notes
        line += f"; captions cut at {notes['max_tokens']} tokens: {notes['truncated']} of {notes['captions']}"
    return line


_JSON_KEYS = ("task", "metrics", "counts", "seconds", "checkpoint", "text_encoder")


def _suite(args: argparse.Namespace) -> int:
    from lift.evaluate.suite import evaluate_suite, load_suite, write_suite_result

    entries = load_suite(args.suite, mode=args.on_error)  # every entry checked: before any model runs
    if args.out:
        _check_out(Path(args.out))
    ctx = _context(args)
    result = evaluate_suite(args.checkpoint, entries, ctx=ctx, load_kwargs=_load_kwargs(args))
    if args.out:
        write_suite_result(args.out, result)
    print(result.markdown())
    for name, r in result.results.items():
        print(_summary(name, r))
    print(
        f"suite: {len(result.results)} evaluators in {result.seconds:.1f}s; skipped {ctx.policy.skipped}"
        + (f"; wrote {args.out}" if args.out else "")
    )
    if args.json:
        out = {"suite": str(args.suite), "checkpoint": result.checkpoint, "seconds": result.seconds,
               "results": {n: {k: getattr(r, k) for k in _JSON_KEYS} for n, r in result.results.items()}}  # fmt: skip
        print(json.dumps(out, default=str), flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.task == "compare":
        return _compare(args)
    if args.task == "suite":
        return _suite(args)
    from lift.evaluate import evaluate_checkpoint, prepare_config
    from lift.evaluate.results import markdown_table, write_result

    if args.out:  # before any work: results are never computed and then lost
        _check_out(Path(args.out))
    # the flags checked (paths, ranges) and the annotations read before the model loads
    config = prepare_config(args.task, task_config(args), mode=args.on_error, naming="flag")
    ctx = _context(args)
    result = evaluate_checkpoint(args.task, args.checkpoint, config, ctx=ctx, load_kwargs=_load_kwargs(args))
    if args.out:
        write_result(args.out, result)
    print(markdown_table(result))
    print(_summary(args.task, result) + (f"; wrote {args.out}" if args.out else ""))
    if args.json:
        print(json.dumps({k: getattr(result, k) for k in _JSON_KEYS}, default=str), flush=True)
    return 0
