"""What the frozen encoder itself can teach, per demo store (`lift.probe`), so the report can show,
beside each SugarCrepe-style task and beside retrieval, where the text encoder (not the training)
sets the ceiling:

- per SugarCrepe-style task: the share of positive/negative caption pairs whose frozen targets are
  closer than cosine 1 - margin (through the store's transform, as training sees them), and the
  mean cosine;
- retrieval (the first-caption protocol the demo evaluates): how many test captions have another
  image's caption closer than 1 - margin, a different text (the encoder's ceiling) or the same text
  (the test set's).
Cached as OUT/evals/probe.json; a store already probed is not probed again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lift.atomic import write_json

MARGIN = 0.01  # lift probe's default: targets closer than cosine 0.99 are "barely separable"


def _retrieval_captions(world: Path) -> tuple[list[str], list[Any]]:
    """The first caption of each test image (the demo's retrieval protocol) and its image id."""
    from lift.errors import ErrorPolicy
    from lift.evaluate.formats import read_coco_captions

    data = read_coco_captions(
        world / "retrieval" / "captions.json", world / "retrieval" / "images", ErrorPolicy()
    )
    return [c[0] for c in data.captions], list(data.ids)


def probe_store(out: Path, store: str, device: str, loaded: list[Any]) -> dict[str, Any]:
    """One store's figures; its subject joins `loaded`, so stores of one encoder embed each text once."""
    from lift.probe import probe_captions, probe_sugarcrepe, store_subject

    subject = store_subject(out / "stores" / store, device=device, loaded=loaded)
    loaded.append(subject)
    tasks = probe_sugarcrepe(subject.embed, out / "world" / "sugarcrepe", margin=MARGIN)
    captions, groups = _retrieval_captions(out / "world")
    found = probe_captions(subject.embed, captions, groups=groups, margin=MARGIN)
    return {
        "transform": subject.transform,
        "sugarcrepe": {t: {"close_pct": 100 * r["above"], "mean_cos": r["mean"], "n": r["n"]} for t, r in tasks.items()},
        "retrieval": {
            "captions": found["n_captions"],
            "close_other_text": (found["nn_distinct"] or {}).get("n_above", 0),
            "same_text_elsewhere": found["identical_elsewhere"],
        },
    }  # fmt: skip


def probe_world(out: Path, stores: dict[str, list[str]], device: str) -> dict[str, dict[str, Any]]:
    """{store: its figures} for every store named in `stores` (regime -> stores), cached."""
    path = out / "evals" / "probe.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    loaded: list[Any] = []
    for name in dict.fromkeys(s for names in stores.values() for s in names):
        if name not in cached:
            cached[name] = probe_store(out, name, device, loaded)
            write_json(path, cached)
    return {name: cached[name] for names in stores.values() for name in names}
