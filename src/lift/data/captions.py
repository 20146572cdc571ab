"""Caption sources: parquet, JSONL, CSV/TSV and webdataset tar shards, each file read as one shard.

A source reader yields (row, key, caption) with raw values (rows count data rows from 0); `read_captions` checks every row
(a key, a non-empty caption, no repeated key) and applies the stop/skip policy to bad ones.

    keys, captions, skipped = read_captions("shard-00000.parquet", policy=ErrorPolicy("skip"))
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lift.data.paths import expand_paths, is_url
from lift.errors import ErrorPolicy, LiftError

Row = tuple[int, Any, Any]  # (row number, key, caption) as found in the file
Reader = Callable[[str, str, str], Iterator[Row]]


@dataclass(frozen=True)
class CaptionSource:
    name: str
    suffixes: tuple[str, ...]
    read: Reader
    key_field: str = "key"
    caption_field: str = "caption"


CAPTION_SOURCES: dict[str, CaptionSource] = {}


def register_source(name: str, suffixes: tuple[str, ...], **fields: str) -> Callable[[Reader], Reader]:
    def add(fn: Reader) -> Reader:
        CAPTION_SOURCES[name] = CaptionSource(name, suffixes, fn, **fields)
        return fn

    return add


class MissingField(LiftError):
    """A key or caption column the file does not have: a wrong option, never skipped as bad data."""


def _missing(path: str, what: str, field: str, have: list[str]) -> LiftError:
    shown = ", ".join(have[:20]) + (" ..." if len(have) > 20 else "")
    return MissingField(f"{path}: no {what} {field!r} (found: {shown or 'none'}); choose it with --{what}")


@register_source("parquet", (".parquet",))
def read_parquet(path: str, key_field: str, caption_field: str) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        for field, what in ((key_field, "key-field"), (caption_field, "caption-field")):
            if field not in names:
                raise _missing(path, what, field, names)
        row = 0
        # row groups bound memory on big files; to_pylist keeps nulls as None for the row checks
        for batch in pf.iter_batches(columns=[key_field, caption_field]):
            keys, caps = batch.column(key_field).to_pylist(), batch.column(caption_field).to_pylist()
            for key, cap in zip(keys, caps):
                yield row, key, cap
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise LiftError(f"{path}: cannot read parquet: {e}") from None


@register_source("jsonl", (".jsonl", ".ndjson", ".json"))
def read_jsonl(path: str, key_field: str, caption_field: str) -> Iterator[Row]:
    try:
        with open(path, encoding="utf-8") as f:
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
                caption = (
                    obj[caption_field] if caption_field in obj else ValueError(f"no field {caption_field!r}")
                )
                yield row, obj.get(key_field), caption
    except (OSError, UnicodeDecodeError) as e:
        raise LiftError(f"{path}: cannot read JSONL: {e}") from None


def _read_delimited(path: str, key_field: str, caption_field: str, delimiter: str) -> Iterator[Row]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            names = list(reader.fieldnames or [])
            for field, what in ((key_field, "key-field"), (caption_field, "caption-field")):
                if field not in names:
                    raise _missing(path, what, field, names)
            for row, rec in enumerate(reader):
                yield row, rec.get(key_field), rec.get(caption_field)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LiftError(f"{path}: cannot read {'TSV' if delimiter == chr(9) else 'CSV'}: {e}") from None


@register_source("csv", (".csv",))
def read_csv(path: str, key_field: str, caption_field: str) -> Iterator[Row]:
    return _read_delimited(path, key_field, caption_field, ",")


@register_source("tsv", (".tsv",))
def read_tsv(path: str, key_field: str, caption_field: str) -> Iterator[Row]:
    return _read_delimited(path, key_field, caption_field, "\t")


@register_source("wds", (".tar",), key_field="__key__", caption_field="txt")
def read_wds(path: str, key_field: str, caption_field: str) -> Iterator[Row]:
    """`KEY.txt` members of a webdataset tar (as img2dataset writes them); keys are webdataset's
    `__key__` (the member path up to the first dot of its name). Images are not read."""
    from webdataset import gopen

    if key_field != "__key__":
        raise LiftError(
            f"{path}: webdataset shards are keyed by __key__; --key-field {key_field!r} is not supported"
        )
    suffix = "." + caption_field
    row = 0
    try:
        with gopen(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                name = member.name
                base = name.rsplit("/", 1)[-1]
                if not member.isfile() or "." not in base or base.startswith("."):
                    continue
                key = name[: len(name) - len(base)] + base.split(".", 1)[0]
                if base[len(base.split(".", 1)[0]) :] != suffix:
                    continue
                data = tar.extractfile(member).read()
                try:
                    yield row, key, data.decode("utf-8")
                except UnicodeDecodeError:
                    yield row, key, ValueError("caption is not UTF-8 text")
                row += 1
            end = tar.offset
        if not is_url(path):
            _check_tar_end(path, end)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise LiftError(f"{path}: cannot read tar (after {row} captions): {e}") from None


def _check_tar_end(path: str, offset: int) -> None:
    """tarfile ends quietly at a header cut short; a complete tar has its zero end blocks there."""
    with open(path, "rb") as f:
        f.seek(offset)
        marker = f.read(2 * tarfile.BLOCKSIZE)
    if len(marker) < 2 * tarfile.BLOCKSIZE or marker.strip(b"\0"):
        raise tarfile.ReadError(f"truncated at byte {offset} (no end-of-archive marker)")


def source_for(path: str, fmt: str = "auto") -> CaptionSource:
    """The registered source for `fmt`, or the one whose suffix `path` ends with."""
    if fmt != "auto":
        if fmt not in CAPTION_SOURCES:
            raise LiftError(f"--format must be auto or one of {', '.join(CAPTION_SOURCES)}, got {fmt!r}")
        return CAPTION_SOURCES[fmt]
    for source in CAPTION_SOURCES.values():
        if path.lower().endswith(source.suffixes):
            return source
    known = ", ".join(s for src in CAPTION_SOURCES.values() for s in src.suffixes)
    raise LiftError(f"{path}: unknown caption file type (known: {known}); pass --format")


def caption_suffixes() -> tuple[str, ...]:
    return tuple(s for src in CAPTION_SOURCES.values() for s in src.suffixes)


def _row_problem(key: Any, caption: Any, seen: set[str]) -> str | None:
    if isinstance(caption, ValueError):
        return str(caption)
    if key is None or (isinstance(key, str) and not key.strip()):
        return "missing key"
    if caption is None:
        return "missing caption"
    if not isinstance(caption, str):
        return f"caption is {type(caption).__name__}, not text"
    if not caption.strip():
        return "empty caption"
    if str(key) in seen:
        return f"key {str(key)!r} appears twice"
    return None


def read_captions(
    path: str,
    *,
    fmt: str = "auto",
    key_field: str | None = None,
    caption_field: str | None = None,
    policy: ErrorPolicy | None = None,
) -> tuple[list[str], list[str], int]:
    """(keys, captions, skipped) of one file; a bad row is named (file, row, key) and stops or is skipped.

    A file that cannot be read at all (or breaks part-way) is one bad item: under skip the rows read
    before the damage are kept.
    """
    policy = policy or ErrorPolicy()
    source = source_for(path, fmt)
    before = policy.skipped
    keys: list[str] = []
    captions: list[str] = []
    seen: set[str] = set()
    rows = source.read(path, key_field or source.key_field, caption_field or source.caption_field)
    try:
        for row, key, caption in rows:
            problem = _row_problem(key, caption, seen)
            if problem:
                where = f"{path}: row {row}" + (
                    f" (key {key!r})" if key is not None and "key" not in problem else ""
                )
                policy.fail(f"{where}: {problem}")
                continue
            key = str(key)
            seen.add(key)
            keys.append(key)
            captions.append(caption)
    except MissingField:
        raise  # skipping a wrong option would skip every row
    except LiftError as e:
        policy.fail(str(e))
    return keys, captions, policy.skipped - before


def source_files(sources: list[str] | str) -> list[str]:
    """Every caption file named by paths, folders, globs or brace patterns, in order."""
    return expand_paths(sources, suffixes=caption_suffixes())
