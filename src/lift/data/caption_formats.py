"""The caption file formats: their registry (`CAPTION_SOURCES`, `register_source`) and one reader per
format (parquet, JSON lines, CSV/TSV, webdataset tars), each yielding every row as found, unchecked
(`lift.data.captions.read_captions` checks the rows)."""

from __future__ import annotations

import csv
import itertools
import json
import tarfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lift.data.paths import is_url
from lift.data.samples import member_kind, split_key
from lift.data.tars import check_tar_end
from lift.errors import LiftError
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
