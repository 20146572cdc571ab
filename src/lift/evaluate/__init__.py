"""Evaluators as plugins in a registry: SugarCrepe, SugarCrepe++, zero-shot classification, retrieval,
long-caption retrieval, Winoground, MMVP-VLM, and any evaluator a user registers.

Each evaluator is a function `fn(model, config, ctx) -> EvalResult` registered under a name with its
typed config (a dataclass that rejects unknown keys; its fields, declared with
`lift.evaluate.options.option`, make the `lift eval NAME` flags and the suite file's keys), the table
layout of its results, and an optional `check(config, policy)` that reads its files before any model
is loaded, big_vision style:

    from lift.evaluate import EvalContext, run_evaluator
    result = run_evaluator("sugarcrepe", model, {"annotations": "sc/", "images": "val2017/"},
                           ctx=EvalContext(device="cuda", batch_size=256))

`model` follows the protocol of `lift.load`: `encode_image(Tensor[B,3,H,W])`, `encode_text(list[str])`
(both L2-normalised), `preprocess` (PIL -> Tensor[3,H,W]) and `text_identity`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any

from lift.errors import ErrorPolicy, LiftError
from lift.evaluate.context import EvalContext
from lift.evaluate.options import build_config, fields_of, validate_config
from lift.evaluate.results import Column, EvalResult
from lift.registry import Registry

__all__ = [
    "EVALUATORS",
    "EvalContext",
    "EvalResult",
    "Evaluator",
    "evaluate_checkpoint",
    "get_evaluator",
    "prepare_config",
    "register",
    "run_evaluator",
]

# `lift eval` words that are not evaluators
RESERVED_NAMES = ("suite", "compare")
# config fields that would take a flag every `lift eval` task shares (the evaluation's own settings)
SHARED_FIELDS = ("checkpoint", "batch_size", "device", "workers", "cache_dir", "no_cache", "on_error", "out",
                 "json", "no_progress", "help")  # fmt: skip


@dataclass(frozen=True)
class Evaluator:
    name: str
    config_cls: type
    fn: Callable[..., EvalResult]
    # its results table: (metric key, column header, count group[, number format]); None: every metric
    columns: tuple[Column, ...] | None = None
    # check(config, policy): read the evaluator's files and name what is missing, before any model runs
    check: Callable[[Any, ErrorPolicy], None] | None = None


# Built-ins register themselves when their module is imported (torch and friends: loaded on use); their
# one-line help is here, so `lift eval --help` imports none of them.
_BUILTIN = {
    "sugarcrepe": (
        "lift.evaluate.sugarcrepe",
        "SugarCrepe's seven compositional subsets (accuracy, strict: ties are wrong)",
    ),
    "sugarcrepe-pp": (
        "lift.evaluate.sugarcrepe_pp",
        "SugarCrepe++: two true captions and a false one per image, scored with the image (ITT) and alone (TOT)",
    ),
    "zeroshot": (
        "lift.evaluate.zeroshot",
        "zero-shot classification of an ImageFolder tree (top-1, top-5, mean per-class recall)",
    ),
    "retrieval": (
        "lift.evaluate.retrieval",
        "image<->text retrieval on COCO captions or Flickr30K (R@1/5/10 both directions)",
    ),
    "long-retrieval": (
        "lift.evaluate.long_retrieval",
        "retrieval with long captions: DCI, DOCCI, Urban1k, ShareGPT4V 1k (R@1/5/10; captions cut counted)",
    ),
    "winoground": (
        "lift.evaluate.winoground",
        "Winoground's examples.jsonl: text, image and group scores, overall and per tag (strict)",
    ),
    "mmvp": (
        "lift.evaluate.mmvp",
        "MMVP-VLM's Questions.csv: pair accuracy per visual pattern and their average (official rule)",
    ),
}
# Every `lift eval TASK`: name -> Evaluator.
EVALUATORS: Registry[Evaluator] = Registry("evaluator", lazy=_BUILTIN)


def register(
    name: str,
    config_cls: type,
    *,
    help: str = "",
    columns: Sequence[Column] | None = None,
    check: Callable[[Any, ErrorPolicy], None] | None = None,
) -> Callable[[Callable[..., EvalResult]], Callable[..., EvalResult]]:
    """Decorator: `@register("zeroshot", ZeroShotConfig, help="one line for --help", columns=[...],
    check=fn)` on `fn(model, config, ctx) -> EvalResult`; help defaults to the function's docstring's
    first line, columns to one per metric."""
    if name in RESERVED_NAMES:
        raise LiftError(f"evaluator name {name!r} is a `lift eval` command; choose another")
    try:
        specs = fields_of(config_cls)
    except TypeError:
        raise LiftError(f"evaluator {name!r}: its config {config_cls!r} is not a dataclass") from None
    taken = [s.name for s in specs if s.name in SHARED_FIELDS]
    if taken:
        raise LiftError(
            f"evaluator {name!r}: config field(s) {taken} would take flags every `lift eval` task shares; "
            "rename them"
        )

    def wrap(fn: Callable[..., EvalResult]) -> Callable[..., EvalResult]:
        text = help or (name not in _BUILTIN and (fn.__doc__ or "").strip().split("\n")[0]) or ""
        cols = tuple(columns) if columns is not None else None
        EVALUATORS.add(name, Evaluator(name, config_cls, fn, cols, check), help=text)
        return fn

    return wrap


def get_evaluator(name: str) -> Evaluator:
    """The evaluator `name`; an unknown name is a one-line LiftError listing the known ones."""
    return EVALUATORS.get(name)


def prepare_config(
    name: str,
    config: Any,
    *,
    mode: str = "stop",
    where: str | None = None,
    base: str | Path | None = None,
    naming: str = "key",
) -> Any:
    """Evaluator `name`'s config (its dataclass, or a dict of its fields), validated and with its files
    read by the evaluator's check: every problem is a one-line LiftError here, before any model runs.

    mode: the error policy ("stop": a bad entry is an error; "skip": it is left for the run to count).
    base: the folder relative paths are taken from (a suite file's); naming: "flag" or "key" in errors.
    """
    evaluator = get_evaluator(name)
    where = where or f"{name} config"
    if is_dataclass(config) and not isinstance(config, type):
        validate_config(config, where=where if naming == "key" else "", naming=naming)
    else:
        config = build_config(evaluator.config_cls, dict(config), where=where, base=base, naming=naming)
    if evaluator.check is not None:
        # a throwaway policy: under skip the run counts each bad entry once, itself
        evaluator.check(config, ErrorPolicy(mode))
    return config


def _run(name: str, model: Any, config: Any, ctx: EvalContext) -> EvalResult:
    return get_evaluator(name).fn(model, config, ctx)


def run_evaluator(name: str, model: Any, config: Any, *, ctx: EvalContext | None = None) -> EvalResult:
    """Run evaluator `name` with `config` (its dataclass, or a dict of its fields), checked first."""
    ctx = ctx or EvalContext()
    config = prepare_config(name, config, mode=ctx.policy.mode)
    return _run(name, model, config, ctx)


def evaluate_checkpoint(
    task: str,
    checkpoint: str,
    config: Any,
    *,
    ctx: EvalContext | None = None,
    loader: Callable[..., Any] | None = None,
    load_kwargs: dict[str, Any] | None = None,
) -> EvalResult:
    """Check `config`, then load `checkpoint` (a run folder, a checkpoint, or a reference `.pt`, via
    `lift.load` with `load_kwargs`) and run evaluator `task`."""
    ctx = ctx or EvalContext()
    config = prepare_config(task, config, mode=ctx.policy.mode)  # bad input: before the model loads
    if loader is None:
        from lift import load as loader  # lazily: the model stack is heavy
    model = loader(checkpoint, device=ctx.device, **(load_kwargs or {}))  # in eval mode
    result = _run(task, model, config, ctx)
    result.checkpoint = str(checkpoint)
    return result
