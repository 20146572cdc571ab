"""Parsers for the benchmarks' official file layouts.

- SugarCrepe: `DIR/{add_obj,...}.json`, each {"0": {"filename", "caption", "negative_caption"}, ...};
  optional `DIR/heldout.json` ({subset: [item ids]}) from the synth world.
- ImageFolder: one folder per class (sorted names = label order) + a class-name file (one name per
  line, in folder order) or ImageNet's `imagenet_class_index.json` ({"0": ["n01440764", "tench"]}).
- COCO captions: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}.
- Flickr30K: `flickr_annotations_30k.csv` (UTF-8) with columns raw (JSON list of captions), split,
  filename.

Structural problems (a missing file, JSON without the required top-level keys, a CSV that is not
UTF-8) raise LiftError; problems with one entry go through the error policy (stop: LiftError naming
it; skip: counted). A caption must be usable by the rule training and embedding use
(`lift.data.samples.caption_problem`: an empty one would be a query matching nothing in particular).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lift.config import read_json
from lift.data.samples import caption_problem, is_image_ext, split_key
from lift.errors import ErrorPolicy, LiftError

HELDOUT_FILE = "heldout.json"


@dataclass(frozen=True)
class SugarCrepeItem:
    id: str
    filename: str
    caption: str
    negative_caption: str


def _str_fields(entry: Any, keys: tuple[str, ...], where: str, policy: ErrorPolicy) -> dict[str, str] | None:
    """The entry's string fields, or None after reporting what is wrong with it."""
    if not isinstance(entry, dict):
        policy.fail(f"{where}: expected an object, got {type(entry).__name__}")
        return None
    missing = [k for k in keys if k not in entry]
    if missing:
        policy.fail(f"{where}: missing key(s) {missing}")
        return None
    bad = [k for k in keys if not isinstance(entry[k], str) or not entry[k].strip()]
    if bad:
        policy.fail(f"{where}: key(s) {bad} must be non-empty strings")
        return None
    return {k: entry[k] for k in keys}


# the public names of the entry helpers, for the other evaluators' readers
str_fields = _str_fields


def require_images(paths: Any, policy: ErrorPolicy) -> None:
    """Each distinct image an annotation file names must exist: a missing one is named (or, under skip,
    left for the run to count) before any model runs."""
    for path in dict.fromkeys(Path(p) for p in paths):
        if not path.is_file():
            policy.fail(f"{path}: image not found")


def read_sugarcrepe_file(path: Path, policy: ErrorPolicy) -> list[SugarCrepeItem]:
    data = read_json(path)
    if isinstance(data, list):
        data = {str(i): v for i, v in enumerate(data)}
    if not isinstance(data, dict):
        raise LiftError(f'{path}: expected a dict of items keyed "0", "1", ..., got {type(data).__name__}')
    items = []
    for key, entry in data.items():
        fields = _str_fields(
            entry, ("filename", "caption", "negative_caption"), f"{path}: item {key!r}", policy
        )
        if fields is not None:
            items.append(SugarCrepeItem(id=str(key), **fields))
    return items


def read_heldout(ann_dir: str | Path) -> dict[str, set[str]] | None:
    """Item ids per subset that involve held-out concepts, when the folder has `heldout.json`."""
    path = Path(ann_dir) / HELDOUT_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise LiftError(f"{path}: expected {{subset: [item ids]}}")
    return {subset: {str(i) for i in ids} for subset, ids in data.items()}


def _heldout_json(folder: str | Path, key: str) -> list | None:
    """`folder/heldout.json`'s list under `key` (the synth world marks held-out concepts so), or None."""
    path = Path(folder) / HELDOUT_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise LiftError(f"{path}: expected a list under key {key!r}")
    return data[key]


def heldout_entries(folder: str | Path, key: str) -> list | None:
    """`folder/heldout.json`'s list under `key` (held-out concepts of the synth world), or None."""
    return _heldout_json(folder, key)


# ---------------------------------------------------------------- ImageFolder (zero-shot)


@dataclass
class ImageFolderData:
    root: Path
    folders: list[str]  # sorted class folder names: label i is folders[i]
    classnames: list[str]  # the names put into prompts, same order
    samples: list[tuple[Path, int]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # class folders without images (skipped)


def _is_image(path: Path) -> bool:
    """Any file Pillow can decode, by webdataset's key convention (`x.v2.png` is a png; `.hidden` is not)."""
    parts = split_key(path.name)
    return parts is not None and is_image_ext(parts[1]) and path.is_file()


def read_classnames(path: str | Path, folders: list[str]) -> list[str]:
    """Class names in folder order from a txt file (one per line) or `imagenet_class_index.json`."""
    path = Path(path)
    if path.suffix == ".json":
        data = read_json(path)
        try:
            by_folder = {wnid: name for wnid, name in data.values()}
        except (AttributeError, TypeError, ValueError):
            raise LiftError(
                f'{path}: expected imagenet_class_index.json\'s {{"0": [wnid, name]}} layout'
            ) from None
        unknown = [f for f in folders if f not in by_folder]
        if unknown:
            raise LiftError(f"{path}: no class name for folder(s) {unknown[:5]}")
        return [by_folder[f].replace("_", " ") for f in folders]
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise LiftError(f"{path}: cannot read class names: {e}") from None
    if len(names) != len(folders):
        raise LiftError(
            f"{path}: {len(names)} class names for {len(folders)} class folders (need one per folder)"
        )
    return names


def read_imagefolder(root: str | Path, classnames: str | Path | None, policy: ErrorPolicy) -> ImageFolderData:
    root = Path(root)
    if not root.is_dir():
        raise LiftError(f"{root}: not a folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise LiftError(f"{root}: no class folders (expected ImageFolder layout ROOT/CLASS/IMAGE)")
    names = read_classnames(classnames, folders) if classnames else [f.replace("_", " ") for f in folders]
    data = ImageFolderData(root=root, folders=folders, classnames=names)
    for label, folder in enumerate(folders):
        files = sorted(p for p in (root / folder).iterdir() if _is_image(p))
        if not files:
            policy.fail(f"{root / folder}: class folder has no images")
            data.empty.append(folder)
        data.samples += [(p, label) for p in files]
    return data


def read_heldout_folders(root: str | Path, folders: list[str]) -> list[int] | None:
    """Labels of the held-out classes listed in `root/heldout.json` ({"folders": [...]}), or None."""
    held = _heldout_json(root, "folders")
    if held is None:
        return None
    unknown = [f for f in held if f not in folders]
    if unknown:
        raise LiftError(
            f"{Path(root) / HELDOUT_FILE}: held-out folder(s) {unknown[:5]} are not class folders"
        )
    return [folders.index(f) for f in held]


def read_templates(path: str | Path) -> list[str]:
    """Prompt templates, one per line (or a JSON list), each with `{label}` or `{}` for the class name."""
    path = Path(path)
    if path.suffix == ".json":
        templates = read_json(path)
    else:
        try:
            templates = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except OSError as e:
            raise LiftError(f"{path}: cannot read templates: {e}") from None
    if not isinstance(templates, list) or not templates:
        raise LiftError(f"{path}: expected a non-empty list of templates")
    for i, t in enumerate(templates):
        if not isinstance(t, str) or ("{label}" not in t and "{}" not in t):
            raise LiftError(f"{path}: template {i} ({t!r}) has no {{label}} or {{}} placeholder")
    return templates


# ---------------------------------------------------------------- retrieval (COCO, Flickr30K)


@dataclass
class RetrievalData:
    images: list[Path]
    captions: list[list[str]]  # captions[i]: the ground-truth captions of images[i], in file order
    ids: list[Any] = field(default_factory=list)  # the file's image ids (COCO id, Flickr img_id)
    skipped_captions: int = 0  # unusable captions skipped (the error policy counted them too)


def read_coco_captions(ann_file: str | Path, images_dir: str | Path, policy: ErrorPolicy) -> RetrievalData:
    ann_file, images_dir = Path(ann_file), Path(images_dir)
    data = read_json(ann_file)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise LiftError(f"{ann_file}: COCO captions JSON needs top-level keys 'images' and 'annotations'")
    order: dict[Any, str] = {}
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            policy.fail(f"{ann_file}: images[{i}]: needs keys 'id' and 'file_name'")
            continue
        order[entry["id"]] = entry["file_name"]
    captions: dict[Any, list[str]] = {k: [] for k in order}
    bad_captions = 0
    for i, entry in enumerate(data["annotations"]):
        if not isinstance(entry, dict) or "image_id" not in entry:
            policy.fail(f"{ann_file}: annotations[{i}]: needs keys 'image_id' and 'caption' (a string)")
            continue
        problem = caption_problem(entry.get("caption"))
        if problem:
            policy.fail(f"{ann_file}: annotations[{i}]: {problem}")
            bad_captions += 1
            continue
        if entry["image_id"] not in captions:
            policy.fail(f"{ann_file}: annotations[{i}]: image_id {entry['image_id']!r} is not in 'images'")
            continue
        captions[entry["image_id"]].append(entry["caption"].strip())
    out = RetrievalData(images=[], captions=[], skipped_captions=bad_captions)
    for image_id, file_name in order.items():
        if not captions[image_id]:
            policy.fail(f"{ann_file}: image id {image_id!r} ({file_name}) has no captions")
            continue
        out.images.append(images_dir / file_name)
        out.captions.append(captions[image_id])
        out.ids.append(image_id)
    return out


FLICKR_COLUMNS = ("raw", "split", "filename")


def _read_utf8(path: Path) -> str:
    """The file's text (UTF-8, a BOM allowed); not UTF-8 -> one line naming the line and byte."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LiftError(f"{path}: file not found") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # byte offsets below count the BOM too
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise LiftError(
            f"{path}: not UTF-8 at line {line}, byte {e.start} ({data[e.start : e.start + 1]!r}); "
            "re-save it as UTF-8"
        ) from None


read_utf8 = _read_utf8


def read_heldout_image_ids(ann_file: str | Path) -> set | None:
    """Image ids listed in `heldout.json` beside the annotations ({"image_ids": [...]}), or None."""
    held = _heldout_json(Path(ann_file).parent, "image_ids")
    return None if held is None else set(held)


def read_flickr_csv(
    csv_file: str | Path, images_dir: str | Path, split: str | None, policy: ErrorPolicy
) -> RetrievalData:
    csv_file, images_dir = Path(csv_file), Path(images_dir)
    reader = csv.DictReader(io.StringIO(_read_utf8(csv_file), newline=""))
    missing = [c for c in FLICKR_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise LiftError(f"{csv_file}: missing column(s) {missing} (flickr_annotations_30k.csv layout)")
    out = RetrievalData(images=[], captions=[])
    for row in reader:
        line = reader.line_num  # the row's last physical line (1 is the header)
        if split is not None and row["split"] != split:
            continue
        try:
            caps = json.loads(row["raw"])
        except (json.JSONDecodeError, TypeError):
            caps = None
        if not isinstance(caps, list) or not caps:
            policy.fail(f"{csv_file}: line {line}: 'raw' must be a JSON list of captions")
            continue
        kept = []
        for j, c in enumerate(caps):
            problem = caption_problem(c)
            if problem:
                policy.fail(f"{csv_file}: line {line}: caption {j}: {problem}")
                out.skipped_captions += 1
            else:
                kept.append(c.strip())
        if not kept:
            policy.fail(f"{csv_file}: line {line}: no usable caption; image {row['filename']} left out")
            continue
        out.images.append(images_dir / row["filename"])
        out.captions.append(kept)
        out.ids.append(row.get("img_id", line))
    if not out.images and policy.skipped == 0:
        raise LiftError(f"{csv_file}: no rows with split {split!r}")
    return out
