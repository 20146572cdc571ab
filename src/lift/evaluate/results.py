"""Evaluation results: one JSON file per run (machines) and markdown tables (people).

Metrics are percentages (a table column may say otherwise, e.g. long-retrieval's count of captions
cut at the token limit). Each metric belongs to a count group (`counts[group] = {"n", "skipped"}`);
whenever items were skipped the table prints "(n=..., skipped=...)" beside the number, so a metric
over a subset never reads as if it covered the full set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lift.atomic import write_json
from lift.config import read_json
from lift.errors import LiftError

SUGARCREPE_SUBSETS = (
    "add_obj",
    "add_att",
    "replace_obj",
    "replace_att",
    "replace_rel",
    "swap_obj",
    "swap_att",
)

# A results table's column: (metric key, column header, count group[, number format]); count group None:
# the metric summarises several groups. Each evaluator declares its columns when it registers
# (`lift.evaluate.register(..., columns=...)`); a task that declares none gets one column per metric.
Column = tuple

# Layouts of evaluators that do not (yet) pass `columns=` to `register`.
DECLARED_COLUMNS: dict[str, list[Column]] = {
    # per-tag and per-pattern numbers are rows: `tag=Object/text`, `pattern=Color/accuracy`
    "winoground": [
        ("text", "Text", "examples"),
        ("image", "Image", "examples"),
        ("group", "Group", "examples"),
    ],
    "mmvp": [("accuracy", "Pair accuracy", "pairs")],
}


def registered_columns(task: str) -> list[Column] | None:
    """The table layout task `task` registered (or declared above); None when it has none."""
    from lift.evaluate import EVALUATORS  # lazily: the registry imports this module

    if task in EVALUATORS:
        cols = EVALUATORS.get(task).columns
        if cols is not None:
            return list(cols)
    return list(DECLARED_COLUMNS[task]) if task in DECLARED_COLUMNS else None


class _Columns(Mapping):
    """task -> its registered columns (`COLUMNS["sugarcrepe"]`), read from the evaluator registry."""

    def __getitem__(self, task: str) -> list[Column]:
        cols = registered_columns(task)
        if cols is None:
            raise KeyError(task)
        return cols

    def __iter__(self) -> Iterator[str]:
        from lift.evaluate import EVALUATORS

        return iter([t for t in EVALUATORS.names() if registered_columns(t) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)


COLUMNS: Mapping[str, list[Column]] = _Columns()


@dataclass
class EvalResult:
    task: str
    metrics: dict[str, float]
    counts: dict[str, dict[str, int]]
    seconds: float = 0.0
    checkpoint: str | None = None
    text_encoder: Any = None
    config: dict[str, Any] = field(default_factory=dict)  # the evaluator's config
    model: dict[str, Any] = field(default_factory=dict)  # the model's config (method, architecture...)
    notes: dict[str, Any] = field(default_factory=dict)
    # per-item outcomes behind the headline metrics, {group: {item id: 0 or 1}} (paired statistics
    # between two models on the same items: lift.demo.stats)
    items: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "result") -> EvalResult:
        missing = [k for k in ("task", "metrics", "counts") if k not in data]
        if missing:
            raise LiftError(f"{where}: not a lift eval result (missing key(s) {missing})")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def label(self) -> str:
        # lift.load's config nests the architecture under "model"; stand-ins may be flat.
        method = self.model.get("method") or (self.model.get("model") or {}).get("method")
        name = Path(self.checkpoint).name if self.checkpoint else "model"
        return f"{method} {name}" if method else name


def write_result(path: str | Path, result: EvalResult) -> None:
    write_json(path, result.to_dict())


def read_result(path: str | Path) -> EvalResult:
    return EvalResult.from_dict(read_json(path), where=str(path))


# the "format" of a `lift eval suite` result file: {"format", "checkpoint", "seconds", "results": {name: result}}
SUITE_FORMAT = "lift-eval-suite"


def read_results(path: str | Path) -> dict[str, EvalResult]:
    """name -> result of a result file: a suite's (its entries' names) or one task's (its task name)."""
    data = read_json(path)
    if isinstance(data, dict) and data.get("format") == SUITE_FORMAT:
        entries = data.get("results")
        if not isinstance(entries, dict):
            raise LiftError(f"{path}: a suite result needs a 'results' mapping of name -> result")
        return {name: EvalResult.from_dict(r, where=f"{path}: {name}") for name, r in entries.items()}
    if not isinstance(data, dict):
        raise LiftError(f"{path}: not a lift eval result (expected a JSON object)")
    result = EvalResult.from_dict(data, where=str(path))
    return {result.task: result}


def _parts(key: str) -> tuple[str, str]:
    """(row prefix, column key) of a metric key: `heldout/top1` -> ("heldout", "top1")."""
    return tuple(key.split("/", 1)) if "/" in key else ("", key)  # type: ignore[return-value]


def generic_columns(*results: EvalResult) -> list[Column]:
    """One column per metric (row prefixes taken off), for a task that declares no layout."""
    keys: list[str] = []
    for r in results:
        keys += [k for k in (_parts(m)[1] for m in r.metrics) if k not in keys]
    groups = {g for r in results for g in r.counts if "/" not in g}
    only = next(iter(groups)) if len(groups) == 1 else None
    return [(k, k, k if k in groups else only) for k in keys]


def columns_for(*results: EvalResult) -> list[Column]:
    """The table layout of the results' task: its registered columns, else one per metric."""
    return registered_columns(results[0].task) or generic_columns(*results)


def _groups(result: EvalResult) -> list[str]:
    """Row prefixes: "" for the main row (when there are unprefixed metrics), then e.g. "heldout" for
    `heldout/<metric>` keys."""
    prefixes = sorted({_parts(k)[0] for k in result.metrics} - {""})
    main = [""] if not result.metrics or any("/" not in k for k in result.metrics) else []
    return [*main, *prefixes]


def _cell(result: EvalResult, prefix: str, col: Column, cols: list[Column]) -> str:
    key, group = col[0], col[2]
    fmt = col[3] if len(col) > 3 else ".1f"
    full = f"{prefix}/{key}" if prefix else key
    if full not in result.metrics:
        return "–"
    text = format(result.metrics[full], fmt)
    if group is None:
        names = [c[2] for c in cols if c[2]]
        if not names:  # no layout: every count group of this row
            names = [_parts(g)[1] for g in result.counts if _parts(g)[0] == prefix]
        parts = [f"{prefix}/{g}" if prefix else g for g in dict.fromkeys(names)]
        skipped = sum(result.counts.get(p, {}).get("skipped", 0) for p in parts)
        n = sum(result.counts.get(p, {}).get("n", 0) for p in parts)
    else:
        c = result.counts.get(f"{prefix}/{group}" if prefix else group, {})
        n, skipped = c.get("n", 0), c.get("skipped", 0)
    return f"{text} (n={n}, skipped={skipped})" if skipped else text


def _rows(result: EvalResult, cols: list[Column]) -> list[tuple[str, list[str]]]:
    rows = []
    for prefix in _groups(result):
        label = f"{result.label} ({prefix})" if prefix else result.label
        rows.append((label, [_cell(result, prefix, col, cols) for col in cols]))
    return rows


def _table(headers: list[str], rows: list[tuple[str, list[str]]]) -> str:
    lines = ["| " + " | ".join(["model", *headers]) + " |", "|" + "---|" * (len(headers) + 1)]
    lines += ["| " + " | ".join([label, *cells]) + " |" for label, cells in rows]
    return "\n".join(lines)


def _counts_line(result: EvalResult) -> str:
    parts = [f"{g}: n={c.get('n', 0)}, skipped={c.get('skipped', 0)}" for g, c in result.counts.items()]
    return "counts: " + "; ".join(parts)


def markdown_table(result: EvalResult) -> str:
    """The task's table (the paper's shape for the built-ins), one row per model and row group."""
    cols = columns_for(result)
    return _table([c[1] for c in cols], _rows(result, cols)) + "\n\n" + _counts_line(result)


def compare_table(a: EvalResult, b: EvalResult, *, labels: tuple[str, str] | None = None) -> str:
    """Two runs of the same task side by side, with a Δ (second − first) row per row group."""
    if a.task != b.task:
        raise LiftError(f"cannot compare a {a.task} result with a {b.task} result")
    cols = columns_for(a, b)
    la, lb = labels or (a.label, b.label)
    rows: list[tuple[str, list[str]]] = []
    for prefix in sorted(set(_groups(a)) | set(_groups(b)), key=lambda p: (p != "", p)):
        suffix = f" ({prefix})" if prefix else ""
        rows.append((la + suffix, [_cell(a, prefix, c, cols) for c in cols]))
        rows.append((lb + suffix, [_cell(b, prefix, c, cols) for c in cols]))
        delta = []
        for col in cols:
            full = f"{prefix}/{col[0]}" if prefix else col[0]
            va, vb = a.metrics.get(full), b.metrics.get(full)
            fmt = "+" + (col[3] if len(col) > 3 else ".1f")
            delta.append(format(vb - va, fmt) if va is not None and vb is not None else "–")
        rows.append(("Δ" + suffix, delta))
    text = _table([c[1] for c in cols], rows)
    notes = [f"{la}: {_counts_line(a)}", f"{lb}: {_counts_line(b)}"]
    if {g: c.get("n") for g, c in a.counts.items()} != {g: c.get("n") for g, c in b.counts.items()}:
        notes.append("note: the two runs were evaluated on different item counts; Δ compares different sets")
    return text + "\n\n" + "\n".join(notes)
