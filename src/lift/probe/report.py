"""The probe's result: every probe run on one subject (a JSON column, `probe_subject`), the whole
result (`probe_report`) and its table for people (`markdown_report`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lift.errors import LiftError
from lift.probe.figures import (
    DEFAULT_MARGIN,
    memoized,
    probe_captions,
    probe_classes,
    probe_geometry,
    probe_sugarcrepe,
)
from lift.probe.inputs import DEFAULT_SAMPLE, ProbeInputs, sample_store_vectors
from lift.probe.subjects import Subject

REPORT_FORMAT = "lift-probe"  # the JSON's "format": marks a file `lift probe --out` may replace


def probe_subject(
    subject: Subject,
    inputs: ProbeInputs,
    *,
    margin: float = DEFAULT_MARGIN,
    store_sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    return_cosines: bool = False,
) -> dict[str, Any]:
    """Every probe the inputs allow on one subject, as one JSON-ready column."""
    started = time.perf_counter()
    embed = memoized(subject.embed)
    column: dict[str, Any] = {
        "label": subject.label,
        "kind": subject.kind,
        "text_encoder": subject.text_encoder,
        "transform": subject.transform,
        "store": str(subject.store.path) if subject.store is not None else None,
        "text_encoder_path": str(subject.encoder.path),
        "text_encoder_name": _encoder_name(str(subject.encoder.path), subject.text_encoder),
    }
    if inputs.sugarcrepe is not None:
        column["sugarcrepe"] = probe_sugarcrepe(
            embed, inputs.sugarcrepe, margin=margin, return_cosines=return_cosines
        )
    if inputs.classes is not None:
        column["classes"] = probe_classes(embed, inputs.classes, margin=margin)
    if inputs.captions is not None:
        c = inputs.captions
        column["captions"] = probe_captions(embed, c.captions, groups=c.groups, margin=margin)
    if subject.store is not None and store_sample > 0:
        column["store_vectors"] = {
            view: probe_geometry(vectors) if len(vectors) >= 2 else None
            for view, vectors in sample_store_vectors(subject.store, store_sample, seed=seed).items()
        }
    column["dim"] = int(getattr(subject.transform_map, "out_dim", None) or subject.encoder.dim)
    column["seconds"] = round(time.perf_counter() - started, 3)
    return column


def probe_report(
    columns: Sequence[dict[str, Any]],
    inputs: ProbeInputs,
    *,
    margin: float,
    seed: int,
    sample: int | None,
    store_sample: int | None = None,
) -> dict[str, Any]:
    """The whole result as one JSON-ready dict."""
    caption_info = None
    if inputs.captions is not None:
        c = inputs.captions
        caption_info = {"kind": c.kind, "probed": len(c.captions), "total": c.total, "skipped": c.skipped,
                        "grouped": c.groups is not None}  # fmt: skip
    return {
        "format": REPORT_FORMAT,
        "margin": margin,
        "threshold": 1.0 - margin,
        "seed": seed,
        "sample": sample,
        "store_sample": store_sample,
        "inputs": {**inputs.sources, "captions_set": caption_info},
        "columns": list(columns),
    }


def _encoder_name(path: str | None, identity: dict[str, Any]) -> str:
    """The encoder as people know it: the packaged default's folder is just called "model"."""
    from lift.text.default import default_encoder_path

    try:
        default = path is not None and Path(path) == default_encoder_path()
    except LiftError:
        default = False
    return "all-MiniLM-L6-v2 (packaged default)" if default else str(identity.get("name"))


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _describe(column: dict[str, Any]) -> str:
    e = column["text_encoder"]
    name = column.get("text_encoder_name") or e.get("name")
    enc = f"{name} ({e.get('pooling')} pooling, {e.get('max_length')} tokens, {e.get('dim')}-d)"
    if column["kind"] == "encoder":
        return f"{column['label']}: {enc}, no transform"
    t = column.get("transform")
    kind = "no transform" if t is None else f"transform {_transform_name(t)}"
    return f"{column['label']}: store of {enc}, {kind}, {column['dim']}-d targets"


def _transform_name(t: dict[str, Any]) -> str:
    for key in ("name", "chain", "steps", "kind"):
        if key in t:
            value = t[key]
            if isinstance(value, list):
                if not value:
                    return "identity"
                return "+".join(
                    v.get("kind", v.get("name", str(v))) if isinstance(v, dict) else str(v) for v in value
                )
            return str(value)
    return "(recorded in the JSON)"


def markdown_report(report: dict[str, Any]) -> str:
    """The probe for people: one column per encoder or store, one row per figure."""
    cols = report["columns"]
    th = report["threshold"]
    lines = [
        f"lift probe: margin {report['margin']:g} (targets at cosine >= {th:g} count as too close for "
        "training to resolve)",
    ]
    lines += [f"  {_describe(c)}" for c in cols]
    head = ["figure", *(_cell(c["label"]) for c in cols)]
    rows: list[list[str]] = []

    def section(title: str) -> None:
        rows.append([f"**{title}**", *([""] * len(cols))])

    def row(name: str, fn: Callable[[dict[str, Any]], str]) -> None:
        rows.append([name, *(fn(c) for c in cols)])

    first = cols[0]
    if "sugarcrepe" in first:
        section(f"SugarCrepe cos(positive, negative): mean [5%-95%], share >= {th:g}")
        for subset, r in first["sugarcrepe"].items():
            row(f"{subset} ({r['n']} pairs)", lambda c, s=subset: _pairs_cell(c["sugarcrepe"][s]))
    if "classes" in first:
        k = first["classes"]
        section(
            f"class prompts ({k['n_classes']} classes, {k['templates']} template(s)): nearest-neighbour cos"
        )
        row("mean / max", lambda c: f"{c['classes']['nn_mean']:.3f} / {c['classes']['nn_max']:.3f}")
        row(f"classes >= {th:g}", lambda c: f"{c['classes']['n_above']} ({_pct(c['classes']['above'])})")
        row("closest pair", lambda c: _cell(_pair_text(c["classes"]["closest"][0])))
    if "captions" in first:
        cap = first["captions"]
        info = report["inputs"]["captions_set"]
        grouped = info["grouped"]
        section(
            f"captions ({info['probed']} of {info['total']}, {cap['n_distinct']} distinct"
            + (f", {cap['n_groups']} images)" if grouped else ")")
        )
        row("anisotropy (mean cos of pairs)", lambda c: _num(c["captions"]["geometry"]["anisotropy"]))
        row("effective rank", lambda c: _erank(c["captions"]["geometry"]))
        what = "another image's caption of another text" if grouped else "another caption"
        row(f"nearest {what}: mean cos", lambda c: _nn(c["captions"]["nn_distinct"], "mean"))
        row(
            f"captions with one >= {th:g} (the encoder's ceiling)",
            lambda c: _nn(c["captions"]["nn_distinct"], "above"),
        )
        if grouped:  # the same text under two images: a ceiling of the test set, not of the encoder
            row(
                "captions whose text another image has too",
                lambda c: str(c["captions"]["identical_elsewhere"]),
            )
    if any("store_vectors" in c for c in cols):
        views = sorted({v for c in cols for v in c.get("store_vectors", {})})
        section("store vectors (seeded sample)")
        for v in views:
            name = f" [{v}]" if len(views) > 1 else ""
            row(f"anisotropy{name}", lambda c, v=v: _geo(c, v, "anisotropy"))
            row(f"effective rank{name}", lambda c, v=v: _geo(c, v, "effective_rank"))
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = []
    for c in cols:
        if "captions" in c and c["captions"].get("closest"):
            p = c["captions"]["closest"][0]
            notes.append(f"closest captions ({c['label']}): {_pair_text(p)}")
    return "\n".join(lines + ([""] + notes if notes else []))


def _pairs_cell(r: dict[str, Any]) -> str:
    q = r["quantiles"]
    return f"{r['mean']:.3f} [{q['5']:.3f}-{q['95']:.3f}], {_pct(r['above'])}"


def _pair_text(p: dict[str, Any]) -> str:
    """Two texts for people: a long shared beginning is elided so that where they differ shows."""
    a, b = p["a"], p["b"]
    same = len(os.path.commonprefix([a, b]))
    if same > 40:
        cut = a.rfind(" ", 0, same - 15) + 1
        a, b = "..." + a[cut:], "..." + b[cut:]
    return f"{_short(a)!r} ~ {_short(b)!r} {p['cosine']:.3f}"


def _erank(g: dict[str, Any] | None) -> str:
    return "-" if g is None else f"{g['effective_rank']:.1f} of {g['dim']}"


def _nn(stats: dict[str, Any] | None, what: str) -> str:
    if stats is None:
        return "-"
    if what == "mean":
        return _num(stats["mean"])
    return f"{stats['n_above']} ({_pct(stats['above'])})"


def _num(x: float) -> str:
    text = f"{x:.3f}"
    return "0.000" if text == "-0.000" else text


def _geo(column: dict[str, Any], view: str, key: str) -> str:
    g = (column.get("store_vectors") or {}).get(view)
    if g is None:
        return "-"
    return _erank(g) if key == "effective_rank" else _num(g[key])
