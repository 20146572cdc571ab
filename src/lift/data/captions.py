"""Caption sources: parquet, JSONL, CSV/TSV and webdataset tar shards, each file read as one shard.

The formats are a registry (`CAPTION_SOURCES`, chosen by `--format` or the file suffix), kept with
their readers in `lift.data.caption_formats`. A source reader yields (row, key, captions) with raw
values, one caption per requested field (rows count data rows from 0); `read_captions` checks every
row (a key, a usable caption in every field as `lift.data.samples.caption_problem` decides, no repeated
key) and applies the stop/skip policy to bad ones. Text files are decoded row by row (a bad byte spoils
its row, not the file) and CSV is parsed strictly (an open quote or a wrong number of fields is a bad
row, named by its line).

    keys, captions, skipped, lost = read_captions("shard-00000.parquet", policy=ErrorPolicy("skip"))
    # several caption fields of the same rows (views): captions[v][r] is field v's caption of row r
    keys, captions, skipped, lost, views = read_captions(path, caption_field=["org_caption", "re_caption"])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from lift.data.caption_formats import (
    CAPTION_SOURCES,
    TEXT_ENCODING,
    CaptionSource,
    MissingField,
    Reader,
    Row,
    read_csv,
    read_jsonl,
    read_parquet,
    read_tsv,
    read_wds,
    register_source,
)
from lift.data.paths import expand_paths, is_url, shard_name
from lift.data.samples import caption_problem
from lift.errors import ErrorPolicy, LiftError

# importing the formats registers them; their names stay importable from here, beside the row checks
__all__ = [
    "CAPTION_SOURCES",
    "FOLDER_PREFERENCE",
    "NOT_CAPTIONS",
    "TEXT_ENCODING",
    "CaptionSource",
    "Captions",
    "MissingField",
    "Reader",
    "Row",
    "ViewCaptions",
    "caption_suffixes",
    "check_caption_fields",
    "parse_caption_fields",
    "read_captions",
    "read_csv",
    "read_jsonl",
    "read_parquet",
    "read_tsv",
    "read_wds",
    "register_source",
    "resolve_caption_fields",
    "source_files",
    "source_for",
]


def source_for(path: str, fmt: str = "auto") -> CaptionSource:
    """The registered source for `fmt`, or the one whose suffix `path` ends with."""
    if fmt != "auto":
        if fmt not in CAPTION_SOURCES:
            raise LiftError(f"--format must be auto or one of {', '.join(CAPTION_SOURCES)}, got {fmt!r}")
        return CAPTION_SOURCES.get(fmt)
    for _, source in CAPTION_SOURCES.items():
        if path.lower().endswith(source.suffixes):
            return source
    raise LiftError(
        f"{path}: unknown caption file type (known: {', '.join(caption_suffixes())}); pass --format"
    )


def caption_suffixes() -> tuple[str, ...]:
    return tuple(s for _, src in CAPTION_SOURCES.items() for s in src.suffixes)


def parse_caption_fields(caption_field: str | Sequence[str] | None) -> list[str] | None:
    """The caption fields named by `--caption-field` (None: the source's default): one name, a
    comma-separated list ("org_caption,re_caption") or a list of names. Empty or repeated names are
    refused in one line."""
    if caption_field is None:
        return None
    if isinstance(caption_field, str):
        fields = [f.strip() for f in caption_field.split(",")] if "," in caption_field else [caption_field]
    elif isinstance(caption_field, Sequence) and all(isinstance(f, str) for f in caption_field):
        fields = list(caption_field)
    else:
        raise LiftError(f"--caption-field must be a name or a list of names, got {caption_field!r}")
    shown = ",".join(fields)
    if not fields or any(not f.strip() for f in fields):
        raise LiftError(
            f"--caption-field {shown!r}: a caption field name is empty; separate names with commas"
        )
    if len(set(fields)) != len(fields):
        dup = next(f for f in fields if fields.count(f) > 1)
        raise LiftError(f"--caption-field {shown!r} names {dup!r} twice; name each caption field once")
    return fields


def resolve_caption_fields(source: CaptionSource, caption_field: str | Sequence[str] | None) -> list[str]:
    """The caption fields (views) a file is read with, the source's default filled in."""
    return parse_caption_fields(caption_field) or [source.caption_field]


def _not_utf8(value: Any) -> bool:
    """Text holding undecodable bytes (read with surrogateescape)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _row_problem(key: Any, captions: Any, seen: set[str], views: list[str]) -> tuple[str, bool] | None:
    """(what is wrong with a row, whether it is about the key), or None for a good row. With several
    views, a caption's problem names its view."""
    if isinstance(captions, ValueError):
        return str(captions), False
    if key is None or (isinstance(key, str) and not key.strip()):
        return "missing key", True
    named = len(views) > 1
    for view, caption in zip(views, captions):
        problem = str(caption) if isinstance(caption, ValueError) else caption_problem(caption)
        if problem:  # caption_problem: the one rule embed and both training methods share
            return (f"{view}: {problem}" if named else problem), False
    if _not_utf8(key):
        return "key is not valid UTF-8 text", True
    for view, caption in zip(views, captions):
        if _not_utf8(caption):
            return (f"{view}: " if named else "") + "caption is not valid UTF-8 text", False
    if str(key) in seen:
        return f"key {str(key)!r} appears twice", True
    return None


class Captions(NamedTuple):
    """What one caption file gave for one caption field: its good rows, how many rows were skipped, and
    why the file could not be read to its end (None when it was), under `--on-error skip`."""

    keys: list[str]
    captions: list[str]
    skipped: int
    lost: str | None = None


class ViewCaptions(NamedTuple):
    """What one caption file gave for several caption fields (views) of the same rows: `captions[v][r]`
    is view v's caption of row r (`keys[r]`); a row is kept only when every view's caption is usable."""

    keys: list[str]
    captions: list[list[str]]
    skipped: int
    lost: str | None
    views: list[str]

    def of(self, view: str) -> list[str]:
        """One view's captions, in row order."""
        return self.captions[self.views.index(view)]


def check_caption_fields(
    path: str,
    *,
    fmt: str = "auto",
    key_field: str | None = None,
    caption_field: str | Sequence[str] | None = None,
) -> None:
    """Raise MissingField when `path` has no such key or caption field (a wrong option, which no
    `--on-error skip` should turn into an empty store): reads up to its first row."""
    source = source_for(path, fmt)
    rows = source.read(
        path, key_field or source.key_field, tuple(resolve_caption_fields(source, caption_field))
    )
    try:
        next(iter(rows), None)
    except MissingField:
        raise
    except LiftError:
        pass  # damage is the job's to report (stop, or skip and count), row by row
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


def read_captions(
    path: str,
    *,
    fmt: str = "auto",
    key_field: str | None = None,
    caption_field: str | Sequence[str] | None = None,
    policy: ErrorPolicy | None = None,
) -> Captions | ViewCaptions:
    """(keys, captions, skipped rows, lost) of one file; a bad row is named (file, row, key) and stops or
    is skipped and counted.

    `caption_field`: one field (or None: the format's default) gives `Captions`, captions a list of
    strings; a list of fields, or several in one comma-separated string, gives `ViewCaptions`, captions
    one list per field (view). A row with a bad caption in any view is one skipped row, named with
    the view.
    A file that cannot be read at all (or breaks part-way) stops the job, or under skip is reported in
    `lost` (the rows read before the damage are kept); its unread rows are not counted as skipped.
    """
    policy = policy or ErrorPolicy()
    source = source_for(path, fmt)
    views = resolve_caption_fields(source, caption_field)
    keys: list[str] = []
    captions: list[list[str]] = [[] for _ in views]
    seen: set[str] = set()
    skipped, lost = 0, None
    rows = source.read(path, key_field or source.key_field, tuple(views))
    try:
        for row, key, row_captions in rows:
            found = _row_problem(key, row_captions, seen, views)
            if found:
                problem, about_key = found
                where = f"{path}: row {row}" + (
                    f" (key {key!r})" if key is not None and not about_key else ""
                )
                policy.fail(f"{where}: {problem}")
                skipped += 1
                continue
            key = str(key)
            seen.add(key)
            keys.append(key)
            for column, caption in zip(captions, row_captions):
                column.append(caption)
    except MissingField:
        raise  # skipping a wrong option would skip every row
    except LiftError as e:
        if policy.mode == "stop":
            raise
        lost = str(e)
    one_field = caption_field is None or (isinstance(caption_field, str) and "," not in caption_field)
    if one_field:
        return Captions(keys, captions[0], skipped, lost)
    return ViewCaptions(keys, captions, skipped, lost, views)


# img2dataset writes NNNNN_stats.json beside each shard: download statistics, never captions
NOT_CAPTIONS = ("_stats.json",)
# when a folder holds several files of one shard (img2dataset: NNNNN.tar beside NNNNN.parquet), the
# first format here is read: the tars are where `lift train` reads the images and their keys from
FOLDER_PREFERENCE = ("wds", "parquet", "jsonl", "csv", "tsv")


def _folder_files(folder: Path, fmt: str) -> list[str]:
    """A folder's caption files, one per shard name, of `fmt` (auto: see FOLDER_PREFERENCE)."""
    suffixes = source_for("", fmt).suffixes if fmt != "auto" else caption_suffixes()
    files = [f for f in expand_paths(str(folder), suffixes=suffixes) if not f.endswith(NOT_CAPTIONS)]
    if not files:
        raise LiftError(f"{folder}: folder has no caption files ({', '.join(suffixes)})")
    by_shard: dict[str, list[str]] = {}
    for f in files:
        by_shard.setdefault(shard_name(f), []).append(f)
    chosen = []
    for name, group in by_shard.items():
        rank = {f: FOLDER_PREFERENCE.index(source_for(f, fmt).name) for f in group}
        best = [f for f in group if rank[f] == min(rank.values())]
        if len(best) > 1:
            raise LiftError(
                f"{folder}: {' and '.join(Path(f).name for f in best)} are both shard {name!r}; "
                "name the files to read, or use --format"
            )
        chosen.append(best[0])
    return sorted(chosen)


def source_files(sources: list[str] | str, fmt: str = "auto") -> list[str]:
    """Every caption file named by paths, folders, globs or brace patterns, in order; a folder gives
    one file per shard (the tars of an img2dataset folder, or its parquets with fmt="parquet")."""
    specs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    out: list[str] = []
    for spec in map(os.fspath, specs):
        folder = Path(spec).expanduser()
        if not is_url(spec) and folder.is_dir():
            out.extend(_folder_files(folder, fmt))
        else:
            out.extend(expand_paths(spec, suffixes=caption_suffixes()))
    return out
