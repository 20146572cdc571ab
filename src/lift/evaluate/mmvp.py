"""MMVP-VLM: pairs of images a CLIP model sees as alike, each with a statement true of only one.

Reads the published release (huggingface.co/datasets/MMVP/MMVP_VLM): `Questions.csv` with columns
`Question ID`, `Type`, `Statement`, one row per image, and `MLLM_VLM Images/<Type>/<Question ID>.jpg`
(any image extension is accepted). Scored as the official `scripts/evaluate_vlm.py` of
github.com/tsb0601/MMVP does:

- consecutive rows form a pair (ids 2k-1 and 2k, same Type); each statement is prefixed with
  "a photo of " (`prefix`) and compared with both images of its pair;
- a statement picks image 1 iff softmax over the two images gives image 1 more than 0.5, i.e. iff
  s(statement, image 1) > s(statement, image 2); otherwise it picks image 2;
- a pair is right iff the first statement picks image 1 and the second picks image 2.

Ties are handled exactly as the official script handles them: a tie picks image 2, so it is wrong
for the first statement of a pair and right for the second. (The similarities are compared
directly, so a difference too small to survive the script's float32 softmax is still a difference.)

Metrics: pair accuracy per pattern (`pattern=<Type>/accuracy`, the official per-category number:
correct pairs / pairs in that pattern) and `accuracy`, their average over patterns, the number the
MMVP paper reports (with the release's 15 pairs per pattern, also the pooled accuracy). The official
script names its 9 categories by position (every 15 pairs); here a pattern is the `Type` column,
which in the release is the same grouping.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lift.data.samples import caption_problem
from lift.errors import ErrorPolicy, LiftError
from lift.evaluate import register
from lift.evaluate.context import EvalContext, make_result
from lift.evaluate.formats import read_utf8
from lift.evaluate.options import option
from lift.evaluate.results import EvalResult
from lift.evaluate.winoground import ImageNames, image_folder

QUESTIONS_FILE = "Questions.csv"
IMAGES_DIR = "MLLM_VLM Images"  # the release's image folder beside Questions.csv
CSV_COLUMNS = ("Question ID", "Type", "Statement")
# per-pattern numbers are rows: `pattern=Color/accuracy`
COLUMNS = [("accuracy", "Pair accuracy", "pairs")]


@dataclass
class MMVPConfig:
    annotations: str = option("", required=True, path="any", help="Questions.csv, or the folder holding it")
    images: str = option(
        "", path="dir",
        help="the folder of <Type>/<Question ID>.jpg (default: 'MLLM_VLM Images' beside Questions.csv)",
    )  # fmt: skip
    prefix: str = option("a photo of ", help="put before every statement, as the official script does")


@dataclass(frozen=True)
class MMVPPair:
    pattern: str
    ids: tuple[int, int]
    images: tuple[Path, Path] | None  # None: an image is absent (skipped, and counted in its pattern)
    statements: tuple[str, str]


def questions_path(annotations: str) -> Path:
    if not annotations:
        raise LiftError("mmvp: annotations (Questions.csv, or the folder holding it) is required")
    path = Path(annotations)
    if path.is_dir():
        path = path / QUESTIONS_FILE
    if not path.is_file():
        raise LiftError(f"{path}: MMVP-VLM questions file not found (expected {QUESTIONS_FILE})")
    return path


def _row_problem(row: dict[str, str]) -> str | None:
    try:
        int(row["Question ID"])
    except (TypeError, ValueError):
        return f"'Question ID' {row['Question ID']!r} is not a number"
    if not (row["Type"] or "").strip():
        return "empty 'Type'"
    problem = caption_problem(row["Statement"])
    return f"'Statement': {problem}" if problem else None


def _pair_problem(a: tuple[int, dict], b: tuple[int, dict] | None) -> tuple[int, str] | None:
    """(the line, what is wrong) with rows `a` and `b`, (line, row) each, as a pair; None if nothing."""
    if b is None:
        return a[0], "the last row has no partner (rows come in pairs)"
    for line, row in (a, b):
        problem = _row_problem(row)
        if problem:
            return line, problem
    (line, a), (_, b) = a, b
    first, second = int(a["Question ID"]), int(b["Question ID"])
    if first % 2 != 1 or second != first + 1:
        return line, (
            f"Question IDs {first} and {second} are not a pair: rows come in pairs (an odd id, then "
            "the next), the first statement true of the first image, as in MMVP-VLM's Questions.csv"
        )
    if a["Type"].strip() != b["Type"].strip():
        return line, f"the pair's rows have different Types ({a['Type']!r}, {b['Type']!r})"
    return None


def read_pairs(path: Path, folder: Path, policy: ErrorPolicy) -> tuple[list[MMVPPair], int]:
    """(the pairs of `path`, the number of bad pairs skipped); a bad pair or an absent image goes
    through the policy (stop: a LiftError naming the line; skip: counted)."""
    reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
    fields = [f.strip() for f in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in fields]
    if missing:
        raise LiftError(
            f"{path}: missing column(s) {missing} (MMVP-VLM's Questions.csv has {list(CSV_COLUMNS)})"
        )
    reader.fieldnames = fields
    rows = [(reader.line_num, row) for row in reader]
    names: dict[str, ImageNames] = {}
    pairs: list[MMVPPair] = []
    bad = 0
    for k in range(0, len(rows), 2):
        problem = _pair_problem(rows[k], rows[k + 1] if k + 1 < len(rows) else None)
        if problem:
            policy.fail(f"{path}: line {problem[0]}: {problem[1]}")
            bad += 1
            continue
        (line, a), (_, b) = rows[k], rows[k + 1]
        pattern = a["Type"].strip()
        if pattern not in names:
            names[pattern] = ImageNames(folder / pattern, prefer=("jpg",))
        ids = (int(a["Question ID"]), int(b["Question ID"]))
        found = [names[pattern].find(str(i)) if (folder / pattern).is_dir() else None for i in ids]
        absent = [i for i, p in zip(ids, found) if p is None]
        if absent:
            policy.fail(f"{path}: line {line}: no image for Question ID(s) {absent} in {folder / pattern}")
        pairs.append(
            MMVPPair(
                pattern=pattern,
                ids=ids,
                images=None if absent else (found[0], found[1]),
                statements=(a["Statement"].strip(), b["Statement"].strip()),
            )
        )
    if not pairs and not bad:
        raise LiftError(f"{path}: no questions")
    return pairs, bad


def pair_correct(s: torch.Tensor) -> torch.Tensor:
    """s: Tensor[N, 2, 2], s[n, t, i] = similarity of statement t and image i -> BoolTensor[N].

    The official rule: statement t picks image 1 iff s[t, 0] > s[t, 1], else image 2 (ties too).
    """
    picks_first = s[:, :, 0] > s[:, :, 1]  # [N, 2]
    return picks_first[:, 0] & ~picks_first[:, 1]


def _group_name(value: str) -> str:
    return value.replace("/", "-")


def check_mmvp(cfg: MMVPConfig, policy: ErrorPolicy) -> None:
    """Every pair well formed and every image present, before any model runs."""
    path = questions_path(cfg.annotations)
    read_pairs(path, image_folder(cfg.images, path, IMAGES_DIR), policy)


@register(
    "mmvp",
    MMVPConfig,
    help="MMVP-VLM's Questions.csv: pair accuracy per visual pattern and their average (official rule)",
    columns=COLUMNS,
    check=check_mmvp,
)
def evaluate_mmvp(model: Any, cfg: MMVPConfig, ctx: EvalContext) -> EvalResult:
    started = time.perf_counter()
    path = questions_path(cfg.annotations)
    folder = image_folder(cfg.images, path, IMAGES_DIR)
    pairs, bad_pairs = read_pairs(path, folder, ctx.policy)

    present = [p for p in pairs if p.images is not None]
    texts = list(dict.fromkeys(cfg.prefix + s for p in present for s in p.statements))
    text_emb = ctx.texts(model, texts)  # texts first: a broken text side fails before the image work
    text_row = {t: i for i, t in enumerate(texts)}
    paths = list(dict.fromkeys(f for p in present for f in p.images))
    img_emb, ok = ctx.images(model, paths, "mmvp images")
    image_row = {f: i for i, f in enumerate(paths)}

    keep = [p.images is not None and all(ok[image_row[f]] for f in p.images) for p in pairs]
    usable = [p for p, k in zip(pairs, keep) if k]
    correct = torch.zeros(0, dtype=torch.bool)
    if usable:
        img = img_emb[torch.tensor([[image_row[f] for f in p.images] for p in usable])]  # [N, 2 (image), D]
        txt = text_emb[torch.tensor([[text_row[cfg.prefix + s] for s in p.statements] for p in usable])]
        correct = pair_correct(torch.einsum("ntd,nid->nti", txt, img))

    metrics: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    patterns = list(dict.fromkeys(p.pattern for p in pairs))  # in file order, as the official table
    kept = torch.tensor(keep, dtype=torch.bool)
    row_of = torch.cumsum(kept.long(), 0) - 1
    for pattern in patterns:
        chosen = torch.tensor([p.pattern == pattern for p in pairs], dtype=torch.bool)
        rows = row_of[chosen & kept]
        prefix = f"pattern={_group_name(pattern)}"
        counts[f"{prefix}/pairs"] = {"n": len(rows), "skipped": int((chosen & ~kept).sum())}
        if len(rows):
            metrics[f"{prefix}/accuracy"] = 100.0 * int(correct[rows].sum()) / len(rows)
    per_pattern = [metrics[k] for k in metrics]
    counts["pairs"] = {"n": len(usable), "skipped": len(pairs) - len(usable) + bad_pairs}
    if per_pattern:
        metrics = {"accuracy": sum(per_pattern) / len(per_pattern), **metrics}
    notes = {"unique_images": len(paths), "unique_texts": len(texts), "patterns": patterns}
    return make_result("mmvp", model, cfg, ctx, metrics=metrics, counts=counts, started=started, notes=notes)
