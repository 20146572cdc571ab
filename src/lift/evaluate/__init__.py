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

import importlib
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from typing import Any

from lift.config import config_from_dict
from lift.errors import LiftError
from lift.evaluate.context import EvalContext
from lift.evaluate.results import EvalResult

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


EVALUATORS: dict[str, Evaluator] = {}
_BUILTIN = ("sugarcrepe", "zeroshot", "retrieval")


def register(name: str, config_cls: type) -> Callable[[Callable[..., EvalResult]], Callable[..., EvalResult]]:
    """Decorator: `@register("zeroshot", ZeroShotConfig)` on `fn(model, config, ctx) -> EvalResult`."""

    def wrap(fn: Callable[..., EvalResult]) -> Callable[..., EvalResult]:
        EVALUATORS[name] = Evaluator(name, config_cls, fn)
        return fn

    return wrap


def get_evaluator(name: str) -> Evaluator:
    if name not in EVALUATORS and name in _BUILTIN:
        importlib.import_module(f"lift.evaluate.{name}")  # registers itself on import
    if name not in EVALUATORS:
        raise LiftError(f"unknown evaluator {name!r}; known: {sorted(set(EVALUATORS) | set(_BUILTIN))}")
    return EVALUATORS[name]


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
