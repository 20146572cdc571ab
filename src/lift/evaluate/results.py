"""Evaluation results: one JSON file per run (machines) and markdown tables (people).

Metrics are percentages. Each metric belongs to a count group (`counts[group] = {"n", "skipped"}`);
whenever items were skipped the table prints "(n=..., skipped=...)" beside the number, so a metric
over a subset never reads as if it covered the full set.
"""

from __future__ import annotations

import dataclasses
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

# (metric key, column header, count group); group None: the metric summarises several groups.
COLUMNS: dict[str, list[tuple[str, str, str | None]]] = {
    "sugarcrepe": [
        *[
            (s, h, s)
            for s, h in zip(SUGARCREPE_SUBSETS, ("AddO", "AddA", "RepO", "RepA", "RepR", "SwpO", "SwpA"))
        ],
        ("mean", "Mean", None),
    ],
    "zeroshot": [
        ("top1", "top-1", "images"),
        ("top5", "top-5", "images"),
        ("mean_recall", "mean recall", "images"),
    ],
    "retrieval": [
        *[(f"i2t_R@{k}", f"I2T R@{k}", "images") for k in (1, 5, 10)],
        *[(f"t2i_R@{k}", f"T2I R@{k}", "texts") for k in (1, 5, 10)],
    ],
}


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


def _groups(result: EvalResult) -> list[str]:
    """Row prefixes: "" for the main row, then e.g. "heldout" for `heldout/<metric>` keys."""
    prefixes = sorted({k.split("/", 1)[0] for k in result.metrics if "/" in k})
    return ["", *prefixes]


def _cell(result: EvalResult, prefix: str, key: str, group: str | None) -> str:
    full = f"{prefix}/{key}" if prefix else key
    if full not in result.metrics:
        return "–"
    text = f"{result.metrics[full]:.1f}"
    if group is None:
        parts = [f"{prefix}/{g}" if prefix else g for _, _, g in COLUMNS[result.task] if g]
        skipped = sum(result.counts.get(p, {}).get("skipped", 0) for p in parts)
        n = sum(result.counts.get(p, {}).get("n", 0) for p in parts)
    else:
        c = result.counts.get(f"{prefix}/{group}" if prefix else group, {})
        n, skipped = c.get("n", 0), c.get("skipped", 0)
    return f"{text} (n={n}, skipped={skipped})" if skipped else text


def _rows(result: EvalResult) -> list[tuple[str, list[str]]]:
    cols = COLUMNS[result.task]
    rows = []
    for prefix in _groups(result):
        label = f"{result.label} ({prefix})" if prefix else result.label
        rows.append((label, [_cell(result, prefix, key, group) for key, _, group in cols]))
    return rows


def _table(headers: list[str], rows: list[tuple[str, list[str]]]) -> str:
    lines = ["| " + " | ".join(["model", *headers]) + " |", "|" + "---|" * (len(headers) + 1)]
    lines += ["| " + " | ".join([label, *cells]) + " |" for label, cells in rows]
    return "\n".join(lines)


def _counts_line(result: EvalResult) -> str:
    parts = [f"{g}: n={c.get('n', 0)}, skipped={c.get('skipped', 0)}" for g, c in result.counts.items()]
    return "counts: " + "; ".join(parts)


def markdown_table(result: EvalResult) -> str:
    """The paper's table shape for this task, with one row per model (and held-out subset)."""
    if result.task not in COLUMNS:
        raise LiftError(f"unknown task {result.task!r} in result; known: {sorted(COLUMNS)}")
    headers = [h for _, h, _ in COLUMNS[result.task]]
    return _table(headers, _rows(result)) + "\n\n" + _counts_line(result)


def compare_table(a: EvalResult, b: EvalResult, *, labels: tuple[str, str] | None = None) -> str:
    """Two runs of the same task side by side, with a Δ (second − first) row per row group."""
    if a.task != b.task:
        raise LiftError(f"cannot compare a {a.task} result with a {b.task} result")
    cols = COLUMNS[a.task]
    la, lb = labels or (a.label, b.label)
    rows: list[tuple[str, list[str]]] = []
    for prefix in sorted(set(_groups(a)) | set(_groups(b)), key=lambda p: (p != "", p)):
        suffix = f" ({prefix})" if prefix else ""
        rows.append((la + suffix, [_cell(a, prefix, k, g) for k, _, g in cols]))
        rows.append((lb + suffix, [_cell(b, prefix, k, g) for k, _, g in cols]))
        delta = []
        for key, _, _ in cols:
            full = f"{prefix}/{key}" if prefix else key
            va, vb = a.metrics.get(full), b.metrics.get(full)
            delta.append(f"{vb - va:+.1f}" if va is not None and vb is not None else "–")
        rows.append(("Δ" + suffix, delta))
    text = _table([h for _, h, _ in cols], rows)
    notes = [f"{la}: {_counts_line(a)}", f"{lb}: {_counts_line(b)}"]
    if {g: c.get("n") for g, c in a.counts.items()} != {g: c.get("n") for g, c in b.counts.items()}:
        notes.append("note: the two runs were evaluated on different item counts; Δ compares different sets")
    return text + "\n\n" + "\n".join(notes)
