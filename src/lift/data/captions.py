"""Caption sources: parquet, JSONL, CSV/TSV and webdataset tar shards, each file read as one shard.

The formats are a registry (`CAPTION_SOURCES`, chosen by `--format` or the file suffix). A source reader
yields (row, key, captions) with raw values, one caption per requested field (rows count data rows
from 0); `read_captions` checks every row (a key, a usable caption in every field as
`lift.data.samples.caption_problem` decides, no repeated key) and applies the stop/skip policy to bad
ones. Text files are decoded row by row (a bad byte spoils its row, not the file) and CSV is parsed
strictly (an open quote or a wrong number of fields is a bad row, named by its line).

    keys, captions, skipped, lost = read_captions("shard-00000.parquet", policy=ErrorPolicy("skip"))
    # several caption fields of the same rows (views): captions[v][r] is field v's caption of row r
    keys, captions, skipped, lost, views = read_captions(path, caption_field=["org_caption", "re_caption"])
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import tarfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lift.data.paths import expand_paths, is_url, shard_name
from lift.data.samples import caption_problem, member_kind, split_key
from lift.data.tars import check_tar_end
from lift.errors import ErrorPolicy, LiftError
from lift.registry import Registry

# (row number, key, captions) as found in the file: captions is one raw value per caption field (None
# when the row lacks it, a ValueError when it is unreadable), or a ValueError when the whole row is bad
Row = tuple[int, Any, Any]
Reader = Callable[[str, str, tuple[str, ...]], Iterator[Row]]
# bad bytes become lone surrogates, so one bad byte spoils one row (caught by `_row_problem`), not the file
TEXT_ENCODING = {"encoding": "utf-8-sig", "errors": "surrogateescape"}


@dataclass(frozen=True)
class CaptionSource:
    """A caption file format: its suffixes, its reader `read(path, key_field, caption_fields)`, and
    the key and caption fields used when none is given."""

    name: str
    suffixes: tuple[str, ...]
    read: Reader
    key_field: str = "key"
    caption_field: str = "caption"


CAPTION_SOURCES: Registry[CaptionSource] = Registry("caption format", flag="--format")


def register_source(
    name: str, suffixes: tuple[str, ...], *, help: str = "", **fields: str
) -> Callable[[Reader], Reader]:
    """Decorator: register a reader as the caption format `name` for files ending in `suffixes`."""

    def add(fn: Reader) -> Reader:
        CAPTION_SOURCES.add(name, CaptionSource(name, suffixes, fn, **fields), help=help or f"{name} files")
        return fn

    return add


class MissingField(LiftError):
    """A key or caption column the file does not have: a wrong option, never skipped as bad data."""


def _missing(path: str, what: str, field: str, have: list[str]) -> LiftError:
    shown = ", ".join(have[:20]) + (" ..." if len(have) > 20 else "")
    return MissingField(f"{path}: no {what} {field!r} (found: {shown or 'none'}); choose it with --{what}")


@register_source("parquet", (".parquet",), help="parquet tables (key and caption columns)")
def read_parquet(path: str, key_field: str, caption_fields: tuple[str, ...]) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        for field, what in ((key_field, "key-field"), *((f, "caption-field") for f in caption_fields)):
            if field not in names:
                raise _missing(path, what, field, names)
        row = 0
        # row groups bound memory on big files; to_pylist keeps nulls as None for the row checks
        for batch in pf.iter_batches(columns=list(dict.fromkeys([key_field, *caption_fields]))):
            keys = batch.column(key_field).to_pylist()
            caps = [batch.column(f).to_pylist() for f in caption_fields]
            for key, *row_caps in zip(keys, *caps):
                yield row, key, tuple(row_caps)
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise LiftError(f"{path}: cannot read parquet: {e}") from None


@register_source("jsonl", (".jsonl", ".ndjson", ".json"), help="JSON lines, one object per row")
def read_jsonl(path: str, key_field: str, caption_fields: tuple[str, ...]) -> Iterator[Row]:
    try:
        with open(path, **TEXT_ENCODING) as f:
            for row, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    yield row, None, ValueError(f"not valid JSON ({e})")
                    continue
                if not isinstance(obj, dict):
                    yield row, None, ValueError("not a JSON object")
                    continue
                captions = tuple(
                    obj[f] if f in obj else ValueError(f"no field {f!r}") for f in caption_fields
                )
                yield row, obj.get(key_field), captions
    except OSError as e:
        raise LiftError(f"{path}: cannot read JSONL: {e}") from None


class _Lines:
    """A file's lines for `csv.reader`, remembering those of the record being parsed: after a bad record
    (an open quote swallows the lines after it) parsing resumes at the line after the record's first."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.source, self.pending = iter(lines), deque[str]()
        self.record: list[str] = []
        self.next_line = 1  # 1-based number of the line __next__ returns
        self.record_line = 1

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.pending.popleft() if self.pending else next(self.source)
        self.record.append(line)
        self.next_line += 1
        return line

    def start_record(self) -> int:
        self.record, self.record_line = [], self.next_line
        return self.record_line

    def resume_after_first_line(self) -> None:
        self.pending.extendleft(reversed(self.record[1:]))
        self.next_line -= len(self.record[1:])
        self.record = []


def _read_delimited(
    path: str, key_field: str, caption_fields: tuple[str, ...], delimiter: str
) -> Iterator[Row]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        with open(path, newline="", **TEXT_ENCODING) as f:
            lines = _Lines(f)
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            try:
                names = next(reader, [])
            except csv.Error as e:
                raise LiftError(f"{path}: cannot read the {kind} header (line 1): {e}") from None
            for field, what in ((key_field, "key-field"), *((f, "caption-field") for f in caption_fields)):
                if field not in names:
                    raise _missing(path, what, field, names)
                if names.count(field) > 1:
                    raise LiftError(
                        f"{path}: column {field!r} appears {names.count(field)} times in the header"
                    )
            ki, cis = names.index(key_field), [names.index(f) for f in caption_fields]
            row = 0
            while True:
                line = lines.start_record()
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    # strict parsing: an unclosed quote would otherwise merge the next rows into this caption
                    yield row, None, ValueError(f"line {line}: malformed {kind} ({e}; an unclosed quote?)")
                    lines.resume_after_first_line()
                    row += 1
                    continue
                if not fields:  # a blank line
                    continue
                if len(fields) != len(names):
                    key = fields[ki] if ki < len(fields) else None
                    problem = f"line {line}: {len(fields)} fields where the header has {len(names)}"
                    yield row, key, ValueError(problem)
                else:
                    yield row, fields[ki], tuple(fields[ci] for ci in cis)
                row += 1
    except OSError as e:
        raise LiftError(f"{path}: cannot read {kind}: {e}") from None


@register_source("csv", (".csv",), help="comma-separated values with a header row")
def read_csv(path: str, key_field: str, caption_fields: tuple[str, ...]) -> Iterator[Row]:
    return _read_delimited(path, key_field, caption_fields, ",")


@register_source("tsv", (".tsv",), help="tab-separated values with a header row")
def read_tsv(path: str, key_field: str, caption_fields: tuple[str, ...]) -> Iterator[Row]:
    return _read_delimited(path, key_field, caption_fields, "\t")


@register_source(
    "wds", (".tar",), help="webdataset tar shards (KEY.txt members)", key_field="__key__", caption_field="txt"
)
def read_wds(path: str, key_field: str, caption_fields: tuple[str, ...]) -> Iterator[Row]:
    """Caption members of a webdataset tar (as img2dataset writes them), keyed as webdataset and
    `lift train` key them (`lift.data.samples.split_key`): `dir/KEY.txt` and `dir/KEY.v2.txt` are both
    the txt caption of `dir/KEY` (the extension's last part decides), unless `v2.txt` is itself one
    of the caption fields. A key with two caption members for one field is a bad row; a key with
    members of some fields only lacks the others. Images are not read."""
    from webdataset import gopen

    if key_field != "__key__":
        raise LiftError(
            f"{path}: webdataset shards are keyed by __key__; --key-field {key_field!r} is not supported"
        )
    row, kinds = 0, set()
    try:
        with gopen(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            # webdataset groups consecutive members by key into one sample; so do we
            members = _caption_members(tar, caption_fields, kinds)
            for key, group in itertools.groupby(members, key=lambda m: m[0]):
                found = list(group)
                by_field = [[m for m in found if m[2] == v] for v in range(len(caption_fields))]
                yield row, key, tuple(map(_member_caption, by_field))
                row += 1
            end = tar.offset
        if not is_url(path):
            check_tar_end(path, end)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise LiftError(f"{path}: cannot read tar (after {row} captions): {e}") from None
    if row == 0 and kinds:  # samples, but not one member of the field: the option, not the data, is wrong
        fields = ", ".join(f".{f}" for f in caption_fields)
        raise MissingField(
            f"{path}: no member ends in {fields} (found: {', '.join(f'.{k}' for k in sorted(kinds))}); choose the "
            "caption member with --caption-field, or read the parquet beside the shard with --format parquet"
        )


def _member_caption(found: list[tuple[str, str, int, bytes]]) -> Any:
    """One field's caption of a sample from its members: None without one, a ValueError with several."""
    if len(found) > 1:
        names = ", ".join(name for _, name, _, _ in found)
        return ValueError(f"{len(found)} caption members ({names}); keep only one")
    if not found:
        return None
    try:
        return found[0][3].decode("utf-8")
    except UnicodeDecodeError:
        return ValueError("caption is not UTF-8 text")


def _caption_members(
    tar: tarfile.TarFile, caption_fields: tuple[str, ...], kinds: set[str]
) -> Iterator[tuple[str, str, int, bytes]]:
    """(key, member name, field index, bytes) of each caption member, in tar order; `kinds` collects
    the kind of every member seen."""
    want = [f.lower() for f in caption_fields]
    for member in tar:
        split = split_key(member.name) if member.isfile() else None
        if split is None:
            continue
        key, ext = split
        kinds.add(member_kind(ext))
        # `--caption-field v2.txt` picks that exact extension, `txt` every other *.txt member
        ext, kind = ext.lower(), member_kind(ext)
        field = want.index(ext) if ext in want else want.index(kind) if kind in want else None
        if field is not None:
            yield key, member.name, field, tar.extractfile(member).read()


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
