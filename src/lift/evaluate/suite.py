"""A suite: several evaluators run on one model, with one text-embedding cache, checked first.

A suite file is a YAML list of evaluators, each with its config's keys (the same names as its
`lift eval NAME` flags, with underscores); `name` tells two entries of one task apart:

    - task: sugarcrepe
      annotations: sugarcrepe/            # relative paths: from the suite file's folder
      images: coco/val2017
    - task: retrieval
      name: flickr
      annotations: flickr_annotations_30k.csv
      images: flickr30k-images
      protocol: all-captions

    entries = load_suite("suite.yaml")           # every entry checked: before any model runs
    result = run_suite(model, entries, ctx)      # SuiteResult: name -> EvalResult
    result.flat_metrics()                        # {"flickr/i2t_R@1": ..., ...} for a training log

Importing this module loads no model and touches no file; `run_suite` takes an already loaded model
(`lift.load`'s, or a training loop's with the same protocol).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lift.atomic import write_json
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import EVALUATORS, EvalContext, _run, prepare_config
from lift.evaluate.results import SUITE_FORMAT, EvalResult, markdown_table
from lift.evaluate.text_cache import TextEmbeddingCache, TextStats

ENTRY_KEYS = ("task", "name")  # a suite entry's own keys; the rest are the evaluator's config


@dataclass(frozen=True)
class SuiteEntry:
    name: str  # unique in the suite; the task's name unless given
    task: str
    config: Any  # the evaluator's config dataclass, checked


@dataclass
class SuiteResult:
    results: dict[str, EvalResult]
    seconds: float = 0.0
    checkpoint: str | None = None

    def flat_metrics(self) -> dict[str, float]:
        """`<entry name>/<metric>` -> value, every entry's metrics in one flat mapping."""
        return {f"{name}/{k}": v for name, r in self.results.items() for k, v in r.metrics.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"format": SUITE_FORMAT, "checkpoint": self.checkpoint, "seconds": self.seconds,
                "results": {name: r.to_dict() for name, r in self.results.items()}}  # fmt: skip

    def markdown(self) -> str:
        """One table per entry, headed by its name and task."""
        parts = []
        for name, r in self.results.items():
            title = name if name == r.task else f"{name} ({r.task})"
            parts.append(f"## {title}\n\n{markdown_table(r)}")
        return "\n\n".join(parts)


def write_suite_result(path: str | Path, result: SuiteResult) -> None:
    write_json(path, result.to_dict())


def parse_suite(
    data: Any, *, where: str = "suite", base: str | Path | None = None, mode: str = "stop"
) -> list[SuiteEntry]:
    """Suite entries from a parsed YAML list: an unknown evaluator or key, a wrong value, a missing path
    or a bad annotation file is a one-line LiftError naming the entry, before any model runs."""
    if not isinstance(data, list) or not data:
        raise LiftError(
            f"{where}: expected a non-empty YAML list of evaluators (- task: NAME, then its keys)"
        )
    entries: list[SuiteEntry] = []
    for i, raw in enumerate(data, start=1):
        at = f"{where}: entry {i}"
        if not isinstance(raw, dict) or "task" not in raw:
            raise LiftError(
                f"{at}: expected a mapping with a 'task' key (one of {', '.join(EVALUATORS.names())})"
            )
        task = raw["task"]
        if not isinstance(task, str) or task not in EVALUATORS:
            raise LiftError(f"{at}: unknown evaluator {task!r}; known: {', '.join(EVALUATORS.names())}")
        name = raw.get("name", task)
        if not isinstance(name, str) or not name or "/" in name:
            raise LiftError(f"{at}: name must be a non-empty string without '/', got {name!r}")
        if name in {e.name for e in entries}:
            raise LiftError(f"{at}: a second entry named {name!r}; give each a different name: key")
        options = {k: v for k, v in raw.items() if k not in ENTRY_KEYS}
        config = prepare_config(task, options, mode=mode, where=f"{at} ({name})", base=base)
        entries.append(SuiteEntry(name, task, config))
    return entries


def load_suite(path: str | Path, *, mode: str = "stop") -> list[SuiteEntry]:
    """The entries of suite file `path` (YAML), every one checked; relative paths are taken from the
    file's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LiftError(f"{path}: suite file not found") from None
    except (OSError, yaml.YAMLError) as e:
        raise LiftError(f"{path}: cannot read the suite file: {' '.join(str(e).split())}") from None
    return parse_suite(data, where=str(path), base=path.parent, mode=mode)


def _entries(suite: Sequence[SuiteEntry | dict], mode: str) -> list[SuiteEntry]:
    """Checked entries: those from `load_suite` / `parse_suite` as they are, raw dicts parsed now."""
    raw = [e for e in suite if not isinstance(e, SuiteEntry)]
    parsed = iter(parse_suite(raw, mode=mode) if raw else [])
    return [e if isinstance(e, SuiteEntry) else next(parsed) for e in suite]


def _add_stats(total: TextStats, part: TextStats) -> None:
    for f in dataclasses.fields(TextStats):
        setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))


def run_suite(
    model: Any,
    suite_entries: Sequence[SuiteEntry | dict],
    ctx: EvalContext | None = None,
    *,
    on_result: Callable[[str, EvalResult], None] | None = None,
) -> SuiteResult:
    """Run every entry (from `load_suite` / `parse_suite`, or raw dicts: checked first) on `model`.

    One context for the suite: its device, batch size and text cache are shared (without an on-disk
    cache, an in-memory one serves the suite, so a prompt or caption is embedded once); each evaluator
    counts its own skips and text costs, and their totals are added to `ctx`. Every entry gives the
    same metrics as that evaluator run alone. `on_result(name, result)` is called after each entry.
    """
    ctx = ctx or EvalContext()
    entries = _entries(suite_entries, ctx.policy.mode)
    started = time.perf_counter()
    shared = ctx.cache if ctx.cache is not None else TextEmbeddingCache(":memory:")
    results: dict[str, EvalResult] = {}
    try:
        for entry in entries:
            own = dataclasses.replace(
                ctx, cache=shared, policy=ErrorPolicy(ctx.policy.mode), text_stats=TextStats()
            )
            result = _run(entry.task, model, entry.config, own)
            results[entry.name] = result
            ctx.policy.skipped += own.policy.skipped
            room = ctx.policy.max_examples - len(ctx.policy.examples)
            ctx.policy.examples += own.policy.examples[: max(room, 0)]
            _add_stats(ctx.text_stats, own.text_stats)
            if on_result is not None:
                on_result(entry.name, result)
    finally:
        if shared is not ctx.cache:
            shared.close()
    return SuiteResult(results=results, seconds=round(time.perf_counter() - started, 3))


def evaluate_suite(
    checkpoint: str | Path,
    suite_entries: Sequence[SuiteEntry | dict],
    *,
    ctx: EvalContext | None = None,
    loader: Callable[..., Any] | None = None,
    load_kwargs: dict[str, Any] | None = None,
) -> SuiteResult:
    """Check every entry, then load `checkpoint` once (`lift.load` with `load_kwargs`) and run the suite."""
    ctx = ctx or EvalContext()
    entries = _entries(suite_entries, ctx.policy.mode)  # bad input: before the model loads
    if loader is None:
        from lift import load as loader  # lazily: the model stack is heavy
    model = loader(checkpoint, device=ctx.device, **(load_kwargs or {}))
    result = run_suite(model, entries, ctx)
    result.checkpoint = str(checkpoint)
    for r in result.results.values():
        r.checkpoint = str(checkpoint)
    return result


__all__ = [
    "SuiteEntry",
    "SuiteResult",
    "evaluate_suite",
    "load_suite",
    "parse_suite",
    "run_suite",
    "write_suite_result",
]
