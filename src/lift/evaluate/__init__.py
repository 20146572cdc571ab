"""Evaluators: SugarCrepe, zero-shot classification and retrieval, as plugins in a registry.

Each evaluator is a function `fn(model, config, ctx) -> EvalResult` registered under a name with
its typed config (a dataclass that rejects unknown keys), big_vision style:

    from lift.evaluate import EvalContext, run_evaluator
    result = run_evaluator("sugarcrepe", model, {"annotations": "sc/", "images": "val2017/"},
                           ctx=EvalContext(device="cuda", batch_size=256))

`model` follows the protocol of `lift.load`: `encode_image(Tensor[B,3,H,W])`, `encode_text(list[str])`
(both L2-normalised), `preprocess` (PIL -> Tensor[3,H,W]) and `text_identity`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from typing import Any

from lift.config import config_from_dict
from lift.evaluate.context import EvalContext
from lift.evaluate.results import EvalResult
from lift.registry import Registry

__all__ = [
    "EVALUATORS",
    "EvalContext",
    "EvalResult",
    "Evaluator",
    "evaluate_checkpoint",
    "get_evaluator",
    "register",
    "run_evaluator",
]


@dataclass(frozen=True)
class Evaluator:
    name: str
    config_cls: type
    fn: Callable[..., EvalResult]


# Built-ins register themselves when their module is imported (torch and friends: loaded on use); their
# one-line help is here, so `lift eval --help` imports none of them.
_BUILTIN = {
    "sugarcrepe": (
        "lift.evaluate.sugarcrepe",
        "SugarCrepe's seven compositional subsets (accuracy, strict: ties are wrong)",
    ),
    "zeroshot": (
        "lift.evaluate.zeroshot",
        "zero-shot classification of an ImageFolder tree (top-1, top-5, mean per-class recall)",
    ),
    "retrieval": (
        "lift.evaluate.retrieval",
        "image<->text retrieval on COCO captions or Flickr30K (R@1/5/10 both directions)",
    ),
}
# Every `lift eval TASK`: name -> Evaluator.
EVALUATORS: Registry[Evaluator] = Registry("evaluator", lazy=_BUILTIN)


def register(
    name: str, config_cls: type, *, help: str = ""
) -> Callable[[Callable[..., EvalResult]], Callable[..., EvalResult]]:
    """Decorator: `@register("zeroshot", ZeroShotConfig, help="one line for --help")` on
    `fn(model, config, ctx) -> EvalResult`; help defaults to the function's docstring's first line."""

    def wrap(fn: Callable[..., EvalResult]) -> Callable[..., EvalResult]:
        text = help or (name not in _BUILTIN and (fn.__doc__ or "").strip().split("\n")[0]) or ""
        EVALUATORS.add(name, Evaluator(name, config_cls, fn), help=text)
        return fn

    return wrap


def get_evaluator(name: str) -> Evaluator:
    """The evaluator `name`; an unknown name is a one-line LiftError listing the known ones."""
    return EVALUATORS.get(name)


def run_evaluator(name: str, model: Any, config: Any, *, ctx: EvalContext | None = None) -> EvalResult:
    """Run evaluator `name` with `config` (its dataclass, or a dict of its fields)."""
    evaluator = get_evaluator(name)
    if not is_dataclass(config):
        config = config_from_dict(evaluator.config_cls, dict(config), where=f"{name} config")
    return evaluator.fn(model, config, ctx or EvalContext())


def evaluate_checkpoint(
    task: str,
    checkpoint: str,
    config: Any,
    *,
    ctx: EvalContext | None = None,
    loader: Callable[..., Any] | None = None,
    load_kwargs: dict[str, Any] | None = None,
) -> EvalResult:
    """Load `checkpoint` (a run folder, a checkpoint, or a reference `.pt`, via `lift.load` with
    `load_kwargs`) and run evaluator `task`."""
    if loader is None:
        from lift import load as loader  # lazily: the model stack is heavy
    ctx = ctx or EvalContext()
    model = loader(checkpoint, device=ctx.device, **(load_kwargs or {}))  # in eval mode
    result = run_evaluator(task, model, config, ctx=ctx)
    result.checkpoint = str(checkpoint)
    return result
