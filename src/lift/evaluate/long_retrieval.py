"""Long-caption retrieval: one long description per image, Recall@1/5/10 both ways, and how many
descriptions the text side cut at its token limit.

Each benchmark as it is distributed (`format`):
- `urban1k` (huggingface.co/datasets/BeichenZhang/Urban1k, Long-CLIP's `eval/retrieval/Urban1k.py`):
  `image/<name>.jpg` and `caption/<name>.txt`; the caption is the file's first line. `annotations`
  is the dataset folder (holding `caption/`) or the caption folder; `images` the image folder (or the
  dataset folder holding `image/`). An image of another extension with the same name is accepted.
- `sharegpt4v` (ShareGPT4V-1k, as Long-CLIP evaluates it): the first `limit` (default 1000) entries of
  `share-captioner_coco_lcs_sam_1246k_1107.json`, each {"image": path under `images`, "conversations":
  [human turn, {"value": caption}]}; newlines in the caption become spaces.
- `docci` (google.github.io/docci): `docci_descriptions.jsonlines`, one {"example_id", "split",
  "image_file", "description"} per line, `split` default test; `images` the unpacked `images/` folder.
- `dci` (github.com/facebookresearch/DCI): the `densely_captioned_images` folder with `annotations/*.json`
  ({"image", "short_caption", "extra_caption", ...}) and `splits.json` ({split: [annotation file]});
  the caption is DCI's extended caption, short_caption + "\\n" + extra_caption; `split` default: every
  split (as LoTLIP evaluates it); `images` the `photos/` folder.

The text side's length is explicit (`max_tokens`, `--max-tokens`; the paper embeds long captions at
323 tokens). LIFT: the frozen encoder's limit; by default what the checkpoint records. Another value
re-embeds the captions at that length with a warning (the head was trained on vectors of captions cut
at the recorded length; the text cache keys on the new one); beyond the encoder's own limit it is
refused. CLIP: its text tower's context (77 for the paper's); another value is refused. The captions
cut at that limit are counted by the same tokenizer (the frozen encoder's, or open_clip's BPE with its
start and end tokens) and reported as `truncated` beside the recalls. Ranking is
`lift.evaluate.retrieval`'s (ties are misses).
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lift.config import read_json
from lift.data.samples import caption_problem, is_image_ext, split_key
from lift.errors import ErrorPolicy, LiftError, LiftWarning
from lift.evaluate import register
from lift.evaluate.context import EvalContext, make_result
from lift.evaluate.formats import RetrievalData, heldout_entries, read_utf8, require_images, str_fields
from lift.evaluate.options import option
from lift.evaluate.results import EvalResult
from lift.evaluate.retrieval import COLUMNS as RETRIEVAL_COLUMNS
from lift.evaluate.retrieval import rank_gallery

SHAREGPT4V_COUNT = 1000  # ShareGPT4V-1k: the first 1000 entries, as Long-CLIP evaluates it
COLUMNS = [*RETRIEVAL_COLUMNS, ("truncated", "cut at max tokens", "texts", ".0f")]


class TextLengthWarning(LiftWarning):
    """Captions are embedded at another length than the one the model was trained with."""


@dataclass
class LongRetrievalConfig:
    annotations: str = option(
        "", required=True, path="any",
        help="urban1k: the dataset (or caption/) folder; sharegpt4v: its JSON; docci: "
        "docci_descriptions.jsonlines; dci: the densely_captioned_images folder",
    )  # fmt: skip
    images: str = option("", required=True, path="dir", help="the image folder the annotations refer to")
    format: str = option(
        "", required=True, choices=("dci", "docci", "sharegpt4v", "urban1k"), help="the layout"
    )
    split: str | None = option(
        None,
        help="docci: its split (default test); dci: a splits.json key (default every split); all: every one",
    )
    limit: int | None = option(
        None, ge=1, help="the first N images only (default: 1000 for sharegpt4v, else all)"
    )
    max_tokens: int | None = option(
        None, ge=2, metavar="N",
        help="the text side's maximum length in tokens (the paper: 323); LIFT: default what the checkpoint "
        "records, another value re-embeds at it with a warning; CLIP: its context, another is refused",
    )  # fmt: skip


# ---------------------------------------------------------------- readers


def _caption(text: Any, where: str, policy: ErrorPolicy) -> str | None:
    problem = caption_problem(text)
    if problem:
        policy.fail(f"{where}: {problem}")
        return None
    return text.strip()


def _inside(path: Path, name: str) -> Path:
    """`path/name` when that folder exists (a dataset folder was given), else `path` itself."""
    return path / name if (path / name).is_dir() else path


def _image_named(folder: Path, stem: str, files: dict[str, Path]) -> Path:
    """Urban1k's `<stem>.jpg`, else an image of another extension with the same name."""
    jpg = folder / f"{stem}.jpg"
    return jpg if jpg.is_file() else files.get(stem, jpg)


def read_urban1k(cfg: LongRetrievalConfig, policy: ErrorPolicy) -> RetrievalData:
    captions_dir = _inside(Path(cfg.annotations), "caption")
    images_dir = _inside(Path(cfg.images), "image")
    txts = sorted(p for p in captions_dir.iterdir() if p.suffix == ".txt" and not p.name.startswith("."))
    if not txts:
        raise LiftError(
            f"{captions_dir}: no caption files (Urban1k layout: caption/<name>.txt beside image/)"
        )
    images = {}
    for p in images_dir.iterdir():
        parts = split_key(p.name)
        if parts is not None and is_image_ext(parts[1]):
            images.setdefault(parts[0], p)
    out = RetrievalData(images=[], captions=[])
    for txt in txts:
        lines = read_utf8(txt).splitlines()
        caption = _caption(lines[0] if lines else "", str(txt), policy)
        if caption is None:
            out.skipped_captions += 1
            continue
        out.images.append(_image_named(images_dir, txt.stem, images))
        out.captions.append([caption])
        out.ids.append(txt.stem)
    return out


def read_sharegpt4v(cfg: LongRetrievalConfig, policy: ErrorPolicy) -> RetrievalData:
    path = Path(cfg.annotations)
    data = read_json(path)
    if not isinstance(data, list):
        raise LiftError(f"{path}: expected ShareGPT4V's JSON list of {{image, conversations}} entries")
    out = RetrievalData(images=[], captions=[])
    for i, entry in enumerate(data[: cfg.limit or SHAREGPT4V_COUNT]):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "image" not in entry or "conversations" not in entry:
            policy.fail(f"{where}: needs keys 'image' and 'conversations'")
            continue
        turns = entry["conversations"]
        answer = turns[1] if isinstance(turns, list) and len(turns) > 1 else None
        text = answer.get("value") if isinstance(answer, dict) else None
        caption = _caption(
            text.replace("\n", " ") if isinstance(text, str) else text, f"{where}: caption", policy
        )
        if caption is None:
            out.skipped_captions += 1
            continue
        out.images.append(Path(cfg.images) / entry["image"])
        out.captions.append([caption])
        out.ids.append(entry.get("id", i))
    return out


def read_docci(cfg: LongRetrievalConfig, policy: ErrorPolicy) -> RetrievalData:
    path = Path(cfg.annotations)
    if path.is_dir():
        path = path / "docci_descriptions.jsonlines"
    split = cfg.split or "test"
    before = policy.skipped
    out = RetrievalData(images=[], captions=[])
    for n, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            policy.fail(f"{path}: line {n}: not JSON")
            continue
        fields = str_fields(entry, ("example_id", "split", "image_file"), f"{path}: line {n}", policy)
        if fields is None:
            continue
        if split != "all" and fields["split"] != split:
            continue
        caption = _caption(entry.get("description"), f"{path}: line {n}: description", policy)
        if caption is None:
            out.skipped_captions += 1
            continue
        out.images.append(Path(cfg.images) / fields["image_file"])
        out.captions.append([caption])
        out.ids.append(fields["example_id"])
    if not out.images and policy.skipped == before:
        raise LiftError(f"{path}: no descriptions with split {split!r}")
    return out


def read_dci(cfg: LongRetrievalConfig, policy: ErrorPolicy) -> RetrievalData:
    root = _inside(Path(cfg.annotations), "densely_captioned_images")
    ann_dir = root / "annotations"
    if not ann_dir.is_dir():
        raise LiftError(f"{root}: no annotations/ folder (DCI layout: densely_captioned_images/annotations)")
    splits_file = root / "splits.json"
    if splits_file.is_file():
        splits = read_json(splits_file)
        if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
            raise LiftError(f"{splits_file}: expected {{split: [annotation file names]}}")
        if cfg.split not in (None, "all") and cfg.split not in splits:
            raise LiftError(f"{splits_file}: no split {cfg.split!r}; known: {sorted(splits)}")
        names = [n for k, v in splits.items() if cfg.split in (None, "all", k) for n in v]
    elif cfg.split not in (None, "all"):
        raise LiftError(f"{splits_file}: file not found (needed for split {cfg.split!r})")
    else:
        names = sorted(p.name for p in ann_dir.glob("*.json"))
    out = RetrievalData(images=[], captions=[])
    for name in names[: cfg.limit]:
        entry = read_json(ann_dir / name)
        fields = str_fields(entry, ("image", "short_caption"), str(ann_dir / name), policy)
        if fields is None:
            continue
        extra = entry.get("extra_caption") or ""
        caption = _caption(f"{fields['short_caption']}\n{extra}", str(ann_dir / name), policy)
        if caption is None:
            out.skipped_captions += 1
            continue
        out.images.append(Path(cfg.images) / fields["image"])
        out.captions.append([caption])
        out.ids.append(Path(name).stem)
    return out


FORMATS: dict[str, Callable[[LongRetrievalConfig, ErrorPolicy], RetrievalData]] = {
    "dci": read_dci,
    "docci": read_docci,
    "sharegpt4v": read_sharegpt4v,
    "urban1k": read_urban1k,
}


def read_long_captions(cfg: LongRetrievalConfig, policy: ErrorPolicy) -> RetrievalData:
    data = FORMATS[cfg.format](cfg, policy)
    if cfg.limit is not None and cfg.format not in ("sharegpt4v", "dci"):  # those two cut before reading
        data = RetrievalData(data.images[: cfg.limit], data.captions[: cfg.limit], data.ids[: cfg.limit],
                             data.skipped_captions)  # fmt: skip
    return data


def check_long_retrieval(cfg: LongRetrievalConfig, policy: ErrorPolicy) -> None:
    """The annotations readable and every image present, before any model runs."""
    require_images(read_long_captions(cfg, policy).images, policy)


# ---------------------------------------------------------------- the text side's length


@dataclass(frozen=True)
class TextSide:
    max_tokens: int | None  # None: the model says nothing about its text length
    tokenizer: str  # whose tokens are counted
    count_cut: Callable[[list[str]], int] | None  # texts -> how many are cut at max_tokens


@contextmanager
def text_side(model: Any, max_tokens: int | None) -> Iterator[TextSide]:
    """The model's text side at `max_tokens` (None: its own length), for the duration of the block."""
    method = getattr(model, "method_cls", None)
    if method is not None and method.uses_text_encoder:  # a frozen encoder (LIFT)
        with _frozen_encoder_at(model, max_tokens) as side:
            yield side
    elif method is not None and "text_context_length" in (model.config or {}).get("model", {}):  # CLIP
        yield _clip_context(model, max_tokens)
    elif hasattr(model, "count_truncated"):  # another model: `text_max_tokens`, `count_truncated(texts)`
        own = model.text_max_tokens
        if max_tokens not in (None, own):
            raise LiftError(f"long-retrieval: this model's text side cuts at {own} tokens; --max-tokens "
                            f"{max_tokens} cannot be applied to it")  # fmt: skip
        yield TextSide(own, type(model).__name__, model.count_truncated)
    else:
        if max_tokens is not None:
            raise LiftError(f"long-retrieval: this model exposes no text length; --max-tokens {max_tokens} "
                            "cannot be applied to it")  # fmt: skip
        yield TextSide(None, "unknown", None)


@contextmanager
def _frozen_encoder_at(model: Any, max_tokens: int | None) -> Iterator[TextSide]:
    from lift.text.encoder import token_limit

    enc = model.open_text_encoder()
    own = enc.max_tokens

    def cut_by(encoder: Any) -> Callable[[list[str]], int]:
        return lambda texts: int(encoder.tokenize_and_count(texts)[1].sum())

    if max_tokens is None or max_tokens == own:
        yield TextSide(own, f"the frozen encoder {enc.path.name}", cut_by(enc))
        return
    limit = token_limit(enc.model.config, enc.tokenizer)
    if limit and max_tokens > limit[0]:
        raise LiftError(f"{enc.path}: --max-tokens {max_tokens} is beyond this model's limit of {limit[0]} tokens "
                        f"({limit[1]}); use --max-tokens {limit[0]} or less")  # fmt: skip
    warnings.warn(
        TextLengthWarning(
            f"long-retrieval: the model was trained against its frozen encoder's vectors of captions cut at "
            f"{own} tokens; embedding these at {max_tokens} tokens"
        ),
        stacklevel=3,
    )
    other = copy.copy(enc)  # the same weights and tokenizer, another length
    other.max_tokens = max_tokens
    # `encode_text` and the text cache read the encoder and its identity from the model: swap them
    # for this evaluation only, so the method's own encode_text (adapter included) does the work
    saved = (model._text_encoder, model.text_identity)
    model._text_encoder, model.text_identity = other, other.identity
    try:
        yield TextSide(max_tokens, f"the frozen encoder {enc.path.name}", cut_by(other))
    finally:
        model._text_encoder, model.text_identity = saved


def _clip_context(model: Any, max_tokens: int | None) -> TextSide:
    from lift.config import config_from_dict
    from lift.models import ModelConfig, get_tokenizer

    config = config_from_dict(ModelConfig, model.config["model"], where="model config")
    context = config.text_context_length
    if max_tokens not in (None, context):
        raise LiftError(f"long-retrieval: --max-tokens {max_tokens}: a CLIP model's text tower has {context} "
                        f"positions; omit --max-tokens or give {context}")  # fmt: skip
    tokenizer = get_tokenizer(config)
    # open_clip adds a start and an end token and cuts the rest at the context length
    return TextSide(
        context, "open_clip's BPE", lambda texts: sum(len(tokenizer.encode(t)) + 2 > context for t in texts)
    )


# ---------------------------------------------------------------- the evaluator


@register("long-retrieval", LongRetrievalConfig, columns=COLUMNS, check=check_long_retrieval)
def evaluate_long_retrieval(model: Any, cfg: LongRetrievalConfig, ctx: EvalContext) -> EvalResult:
    started = time.perf_counter()
    before = ctx.policy.skipped
    data = read_long_captions(cfg, ctx.policy)
    # the synth world's Urban1k-layout split marks images of held-out concepts in heldout.json
    root = _inside(Path(cfg.annotations), "caption").parent
    held = heldout_entries(root, "images") if cfg.format == "urban1k" else None
    with text_side(model, cfg.max_tokens) as side:
        metrics, counts, texts = rank_gallery(
            model, data, ctx, parse_skipped=ctx.policy.skipped - before, desc="long-retrieval images",
            heldout_ids=None if held is None else set(held),
        )  # fmt: skip
        cut = side.count_cut(texts) if side.count_cut is not None else None
    if cut is not None and metrics:
        metrics["truncated"] = float(cut)  # a count, not a percentage
    notes = {"format": cfg.format, "max_tokens": side.max_tokens, "tokenizer": side.tokenizer,
             "truncated": cut, "captions": len(texts)}  # fmt: skip
    return make_result(
        "long-retrieval", model, cfg, ctx, metrics=metrics, counts=counts, started=started, notes=notes
    )
