"""Which samples the training data holds, and the one rule that decides which are trained on.

`index_data` reads tar headers and folder listings (tar shards or image folders, with parquet
metadata) and judges nothing; `select_samples` applies one rule for both methods, so LIFT and CLIP
skip (and count) exactly what `lift embed` skips; what no sample uses is counted too
(`DataIndex.unused_note`), never dropped quietly. What a sample is follows `lift.data.samples`
(webdataset keys for tar members and folder files alike; one image, at most one .txt caption and
one .json).
"""

from __future__ import annotations

import itertools
import json
import os
import tarfile
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lift.data.paths import expand_paths, is_url, shard_name
from lift.data.samples import caption_problem, is_image_ext, member_kind, split_key
from lift.data.tars import check_tar_end
from lift.data.views import caption_of
from lift.errors import ErrorPolicy, LiftError

SIDECARS = ("txt", "json")  # what a sample may hold beside its image: its caption, its metadata


@dataclass
class Sample:
    """Where one training sample lives. `members` maps an extension as named (`png`, `v2.txt`) to
    (offset, size) inside the tar `source`, or to a file path for image folders. `captions` holds
    the parquet metadata's captions (and the sidecars' once read); `problem` says why the key cannot
    be trained on (no image, two images, ...)."""

    key: str
    source: str
    members: dict[str, Any]
    captions: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def members_of(self, kind: str) -> list[str]:
        return [ext for ext in self.members if member_kind(ext) == kind]

    @property
    def images(self) -> list[str]:
        return [ext for ext in self.members if is_image_ext(ext)]

    @property
    def in_tar(self) -> bool:
        return not isinstance(next(iter(self.members.values())), str)


@dataclass
class DataIndex:
    """What the training data holds: its samples (some with a `problem`), the shards that could not be
    read to their end (one line each), and the files or tar members that belong to no sample, counted
    by what they are."""

    samples: list[Sample] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    unused: Counter[str] = field(default_factory=Counter)
    unused_examples: list[str] = field(default_factory=list)

    def not_used(self, what: str, where: str) -> None:
        self.unused[what] += 1
        if len(self.unused_examples) < 5:
            self.unused_examples.append(where)

    def unused_note(self) -> str | None:
        """One line on what the data holds that training does not use (None when nothing)."""
        if not self.unused:
            return None
        kinds = ", ".join(f"{n} {what}" for what, n in self.unused.most_common())
        total = sum(self.unused.values())
        things = "file or tar member" if total == 1 else "files or tar members"
        return f"not used: {total} {things} ({kinds}); e.g. {self.unused_examples[0]}"


def _captions_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """Every caption-like field of a metadata row, by its name (the views a sample can be trained on);
    None counts as absent, "" as an empty caption."""
    return {k: v for k, v in row.items() if k != "key" and v is not None}


def read_metadata(paths: list[str]) -> dict[str, dict[str, Any]]:
    """key -> {field: caption} from parquet files with a `key` column."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for unreadable files
            raise LiftError(f"{path}: cannot read parquet metadata: {e}") from None
        if "key" not in table.column_names:
            raise LiftError(f"{path}: parquet metadata has no 'key' column (columns: {table.column_names})")
        for row in table.to_pylist():
            out[str(row["key"])] = _captions_from_row(row)
    return out


def members_problem(members: dict[str, Any]) -> str | None:
    """Why a key's members make no sample: it holds exactly one image and at most one of each sidecar."""
    named = ", ".join("." + ext for ext in members)
    images = [ext for ext in members if is_image_ext(ext)]
    if len(images) != 1:
        return f"{len(images) or 'no'} images ({named}); a sample holds one image"
    for kind in SIDECARS:
        if len([ext for ext in members if member_kind(ext) == kind]) > 1:
            return f"more than one .{kind} ({named}); a sample holds one"
    return None


class _Grouper:
    """Sorts file or member names into samples by webdataset's key convention, counting what it leaves.
    Groups are (folder, key): image folders pair files within one folder; a tar passes folder ""."""

    def __init__(self, index: DataIndex) -> None:
        self.index = index
        self.groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.repeated: dict[tuple[str, str], str] = {}

    def add(self, name: str, location: Any, where: str, *, folder: str = "") -> None:
        parts = split_key(name)
        if parts is None:
            self.index.not_used("hidden or without an extension", where)
            return
        key, ext = parts
        if not (is_image_ext(ext) or member_kind(ext) in SIDECARS):
            self.index.not_used(f".{member_kind(ext)}", where)
            return
        members = self.groups.setdefault((folder, key), {})
        if ext in members:
            self.repeated[folder, key] = f"{name!r} appears twice"
        members[ext] = location

    def keep_before(self, size: int) -> None:
        """Forget the tar members whose data runs past `size` bytes (a shard cut short)."""
        for group, members in list(self.groups.items()):
            self.groups[group] = {ext: (o, n) for ext, (o, n) in members.items() if o + n <= size}
            if not self.groups[group]:
                del self.groups[group]

    def samples(self, source: Callable[[dict[str, Any]], str], where: Callable[[str, str, Any], str]) -> None:
        """Every group with an image or a caption becomes a sample; the others are counted as unused."""
        for group, members in self.groups.items():
            key = group[1]
            if not any(is_image_ext(ext) or member_kind(ext) == "txt" for ext in members):
                for ext, location in members.items():
                    self.index.not_used(
                        "without an image or caption for their key", where(key, ext, location)
                    )
                continue
            problem = self.repeated.get(group) or members_problem(members)
            self.index.samples.append(
                Sample(key=key, source=source(members), members=members, problem=problem)
            )


def _index_tar(path: str, index: DataIndex) -> None:
    """The samples of one tar (key = member path up to the first dot of its name). A shard that ends
    early is recorded in `index.damaged`, keeping the samples before the damage as `lift embed` keeps
    their captions."""
    grouper = _Grouper(index)
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                where = f"{path}:{info.name}"
                if info.isfile():
                    grouper.add(info.name, (info.offset_data, info.size), where)
                elif not info.isdir():
                    index.not_used("links or special members", where)
            end = tar.offset
        check_tar_end(path, end)
    except (LiftError, tarfile.TarError, OSError) as e:
        index.damaged.append(str(e) if isinstance(e, LiftError) else f"{path}: not a readable tar shard: {e}")
        grouper.keep_before(os.path.getsize(path) if os.path.isfile(path) else 0)
    grouper.samples(source=lambda members: path, where=lambda key, ext, location: f"{path}:{key}.{ext}")


def _index_folder(paths: list[str], index: DataIndex, *, skip: set[str]) -> None:
    """Image folders (img2dataset `files` layout): KEY.jpg with KEY.txt / KEY.json beside it; the key is
    the file name up to its first dot, and files pair up within one folder."""
    grouper = _Grouper(index)
    for path in paths:
        if os.path.abspath(path) not in skip:  # the --metadata parquet may sit among the images
            p = Path(path)
            grouper.add(p.name, str(p), str(p), folder=str(p.parent))
    for (folder, key), members in grouper.groups.items():
        for side in SIDECARS:  # sidecars a glob of images did not name
            sidecar = Path(folder, f"{key}.{side}")
            if not any(member_kind(e) == side for e in members) and sidecar.is_file():
                members[side] = str(sidecar)
    grouper.samples(
        source=lambda members: next((members[e] for e in members if is_image_ext(e)), next(iter(members.values()))),
        where=lambda key, ext, location: location,
    )  # fmt: skip


def index_data(train_data: str | list[str], metadata: str | None = None) -> DataIndex:
    """Every sample of `train_data` (tar shards or image folders), with parquet captions merged in.

    Captions come from, in order: `metadata` parquet files, a parquet beside each tar (img2dataset
    writes `00000.parquet` next to `00000.tar`), then the sample's own .txt / .json when read.
    Nothing is judged here: `select_samples` applies the error policy to what is wrong.
    """
    specs = [train_data] if isinstance(train_data, str) else list(train_data)
    if any(is_url(s) for s in specs):
        raise LiftError(
            f"{train_data}: URLs are not supported by the indexed loader; copy or mount the shards locally"
        )
    index = DataIndex()
    meta_paths = expand_paths(metadata, suffixes=(".parquet",)) if metadata else []
    tars = [s for s in specs if s.endswith(".tar") or Path(s).is_dir() and any(Path(s).glob("*.tar"))]
    for shard in expand_paths(tars, suffixes=(".tar",)) if tars else []:
        before = len(index.samples)
        _index_tar(shard, index)
        sidecar = Path(shard).with_suffix(".parquet")
        if sidecar.is_file():
            meta = read_metadata([str(sidecar)])
            for s in index.samples[before:]:
                s.captions.update(meta.get(s.key, {}))
    folders = [s for s in specs if s not in tars]
    if folders:
        files = []
        for spec in folders:
            p = Path(spec)
            files.extend(
                sorted(str(f) for f in p.rglob("*") if f.is_file()) if p.is_dir() else expand_paths(spec)
            )
        _index_folder(files, index, skip={os.path.abspath(m) for m in meta_paths})
    if meta_paths:
        meta = read_metadata(meta_paths)
        for s in index.samples:
            s.captions.update(meta.get(s.key, {}))
    if not index.samples:
        note = index.damaged[0] if index.damaged else index.unused_note()
        raise LiftError(f"{train_data}: no image-text samples found" + (f" ({note})" if note else ""))
    keys = [s.key for s in index.samples]
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))
        raise LiftError(f"{train_data}: key {dup!r} appears in more than one sample; keys must be unique")
    return index


def build_index(train_data: str | list[str], metadata: str | None = None) -> list[Sample]:
    """The samples of `index_data`, refusing a damaged shard (callers without an error policy)."""
    index = index_data(train_data, metadata)
    if index.damaged:
        raise LiftError(index.damaged[0])
    return index.samples


def select_samples(
    index: DataIndex, *, store: Any = None, views: list[str] | None = None, policy: ErrorPolicy
) -> list[Sample]:
    """The samples training uses: one rule for LIFT (`store` given) and CLIP, so both skip the samples
    `lift embed` skips. Each bad item goes through `policy` once, before training starts:

    - a shard that ends early (its samples before the damage stay, as `lift embed` keeps their captions);
    - a key without exactly one image, or with two captions;
    - LIFT: a sample without an embedding (its caption was refused by `lift embed`), an embedding
      without a sample;
    - CLIP: a caption `lift embed` would refuse (`samples.caption_problem`) in any of the `views` it
      trains on (names or aliases, see `lift.data.views`; every one is checked, so a random draw never
      changes which samples exist).
    """
    for message in index.damaged:
        policy.fail(message)
    good = []
    for s in index.samples:
        if s.problem:
            policy.fail(f"{s.source}: sample {s.key!r}: {s.problem}")
        else:
            good.append(s)
    if store is not None:
        return _join(good, index.samples, store, policy)
    fields = tuple(views or ("short",))
    kept = []
    for source, group in itertools.groupby(good, key=lambda s: s.source):
        group = list(group)
        with open(source, "rb") if group[0].in_tar else nullcontext() as f:
            for s in group:
                s.captions = resolve_captions(s, fields, f)
                if problem := next(
                    filter(None, (caption_field_problem(s.captions, c) for c in fields)), None
                ):
                    policy.fail(f"{s.source}: sample {s.key!r}: {problem}")
                else:
                    kept.append(s)
    return kept


def join_store(samples: list[Sample], store: Any, policy: ErrorPolicy) -> list[Sample]:
    """Keep the samples that have an embedding; a sample without one is a bad input (policy).

    An embedding without an image is one too, checked shard by shard where the store's shards are
    named like the data's (as `lift embed` writes them): so training on a subset of the shards
    with the full store stays allowed.
    """
    return _join(samples, samples, store, policy)


def _join(samples: list[Sample], known: list[Sample], store: Any, policy: ErrorPolicy) -> list[Sample]:
    """`join_store`, with `known` the data's keys already reported otherwise (not counted twice)."""
    kept = []
    for s in samples:
        if s.key in store:
            kept.append(s)
        else:
            policy.fail(f"{s.source}: sample {s.key!r} has no embedding in the store")
    have_by_shard: dict[str, set[str]] = {}
    for s in known:
        if s.key in store:
            have_by_shard.setdefault(shard_name(s.source), set()).add(s.key)
    for i, name in enumerate(getattr(store, "shard_names", [])):
        if name in have_by_shard and store.shard_len(i) > len(have_by_shard[name]):
            for key in store.shard_keys(i):
                if key not in have_by_shard[name]:
                    policy.fail(f"store shard {name}: key {key!r} has an embedding but no image in the data")
    return kept


def read_member(sample: Sample, ext: str, f: IO[bytes] | None = None) -> bytes:
    """A member's bytes; `f` is the sample's tar, already open, when many members are read in a row."""
    where = sample.members[ext]
    if isinstance(where, str):
        return Path(where).read_bytes()
    offset, size = where
    with nullcontext(f) if f is not None else open(sample.source, "rb") as tar:
        tar.seek(offset)
        data = tar.read(size)
    if len(data) != size:
        raise OSError(f"{sample.key}.{ext} is cut short ({len(data)} of {size} bytes)")
    return data


def resolve_captions(s: Sample, fields: tuple[str, ...], f: IO[bytes] | None = None) -> dict[str, Any]:
    """`s.captions` completed from its .txt (view `txt`) and .json sidecars until every one of `fields`
    (view names or aliases) is found; a sidecar that cannot be read or decoded leaves a ValueError
    saying so in place of the captions it would have given."""
    captions = dict(s.captions)

    def missing() -> list[str]:
        return [c for c in fields if caption_of(captions, c) is None]

    def read(ext: str) -> bytes | ValueError:
        try:
            return read_member(s, ext, f)
        except OSError as e:
            return ValueError(f"cannot read {s.key}.{ext}: {e}")

    if missing() and "txt" not in captions and (txt := s.members_of("txt")):
        data = read(txt[0])
        try:
            captions["txt"] = data if isinstance(data, ValueError) else data.decode("utf-8").strip()
        except UnicodeDecodeError:
            captions["txt"] = ValueError(f"{s.key}.{txt[0]} is not UTF-8 text")
    if missing() and (js := s.members_of("json")):
        data = read(js[0])
        try:
            row = data if isinstance(data, ValueError) else json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            row = ValueError(f"{s.key}.{js[0]} is not valid JSON ({e})")
        if isinstance(row, dict):
            captions = {**_captions_from_row(row), **captions}
        else:
            bad = row if isinstance(row, ValueError) else ValueError(f"{s.key}.{js[0]} is not a JSON object")
            captions.update({c: bad for c in missing()})
    return captions


def caption_field_problem(captions: dict[str, Any], kind: str) -> str | None:
    """Why the `kind` caption (a view or an alias) cannot be trained on, by the rule `lift embed`
    applies (None if it can)."""
    value = caption_of(captions, kind)
    if isinstance(value, ValueError):
        return str(value)
    if value is None:
        found = sorted(k for k, v in captions.items() if v is not None)
        return f"no {kind} caption (found: {', '.join(found) or 'none'})"
    problem = caption_problem(value)
    return f"{problem} ({kind})" if problem else None
