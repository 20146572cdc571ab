"""The `lift embed` stage: every caption embedded once by the frozen text encoder into a store.

One output shard per input file, in the same order, so shard i of the store sits beside shard i of
the images. Several caption fields of the same rows (`caption_field="org_caption,re_caption"`)
become the store's views: one vector per field and key, the fields' texts deduplicated together.
Under torchrun each rank embeds shards rank::world_size and writes only those; rank 0 completes the
manifest once all exist. A rerun skips finished shards, so a killed job ends, after the same command
again, with the store an uninterrupted run writes.

A finished shard counts as done only for the job that made it: each records its input file's
fingerprint (absolute path, size, modification time) and the read settings (format, key and caption
fields, so the list of views); the store header holds the encoder identity, dtype and views. A rerun
whose inputs or settings differ is refused, naming what differs. The fingerprint is a `stat`, not a
content hash: a rerun must not read terabytes of tars again to learn what is already done, and an
edit, a replaced file or a copy under the same name changes the size or the modification time.
Shards written before fingerprints existed are kept as done (their read settings are checked against
the old manifest when it has them) and counted in the summary as unchecked.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lift.data.captions import (
    check_caption_fields,
    parse_caption_fields,
    read_captions,
    resolve_caption_fields,
    source_files,
    source_for,
)
from lift.data.paths import is_url, shard_name
from lift.distributed import barrier, init_process_group, shards_for_rank
from lift.errors import ErrorPolicy, LiftError, os_error_reason
from lift.outputs import check_output_folder
from lift.store import StoreWriter, ViewsDiffer
from lift.store.format import MANIFEST, read_json
from lift.text import TextEncoder


class _Progress:
    """A bar of distinct captions embedded per second; its total (hence the ETA) is extrapolated from
    the shards read so far, since counting rows first would read every file twice."""

    def __init__(self, num_shards: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.num_shards, self.seen_shards, self.seen_rows = num_shards, 0, 0
        self.bar = tqdm(
            unit="caption", desc="lift embed", disable=not enabled, dynamic_ncols=True, file=sys.stderr
        )

    def shard_read(self, rows: int) -> None:
        self.seen_shards += 1
        self.seen_rows += rows
        self.bar.total = round(self.seen_rows / self.seen_shards * self.num_shards)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _sum_across_ranks(values: list[int]) -> list[int]:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces only GPU tensors
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


def _gather_lists(items: list[str]) -> list[str]:
    """Every rank's items, in rank order (only the caller's own without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return items
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part or []]


def read_settings(path: str, *, fmt: str, key_field: str | None, caption_field: str | None) -> dict[str, Any]:
    """How `path` is read, defaults filled in (so `--caption-field txt` and the tar default are one job).

    `caption_field` is recorded as the comma-separated list of the views it reads ("caption" for one),
    so a rerun with other views, or the same in another order, differs."""
    source = source_for(path, fmt)
    fields = resolve_caption_fields(source, caption_field)
    return {
        "format": source.name,
        "key_field": key_field or source.key_field,
        "caption_field": ",".join(fields),
    }


def file_fingerprint(path: str) -> dict[str, Any]:
    """The input file as a rerun compares it: absolute path, size and modification time (a URL as given)."""
    if is_url(path):
        return {"path": path}  # nothing to stat: the URL is all there is to compare
    try:
        st = os.stat(path)
    except OSError as e:
        raise LiftError(f"{path}: cannot read the caption file ({os_error_reason(e)})") from None
    return {"path": os.path.abspath(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def shard_inputs(path: str, **read_options: Any) -> dict[str, Any]:
    """What a shard is made from: its input file's fingerprint and every read setting."""
    return {"file": file_fingerprint(path), **read_settings(path, **read_options)}


_FLAGS = {"format": "--format", "key_field": "--key-field", "caption_field": "--caption-field"}


def _input_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between the inputs a shard recorded and this job's, in words."""
    changes = [f"{_FLAGS.get(k, k)} {recorded.get(k)!r} then, {current.get(k)!r} now"
               for k in ("format", "key_field", "caption_field") if recorded.get(k) != current.get(k)]  # fmt: skip
    was, now = recorded.get("file") or {}, current["file"]
    if was.get("path") != now["path"]:
        changes.append(f"input file {was.get('path')} then, {now['path']} now")
    elif was != now:
        what = [
            f"{k} {was.get(k)} -> {now.get(k)}" for k in ("bytes", "mtime_ns") if was.get(k) != now.get(k)
        ]
        changes.append(f"{now['path']} changed since ({', '.join(what)})")
    return changes


def _replaced_damaged_file(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    """The shard lost rows to a damaged input file, which has since changed in place (same path, same
    read settings): embedding it again is finishing this job, not mixing two."""
    same_path = (recorded.get("file") or {}).get("path") == current["file"]["path"]
    return (
        bool(recorded.get("damaged"))
        and same_path
        and not _input_changes({**recorded, "file": current["file"]}, current)
    )


def _legacy_read_options(out: Path) -> dict[str, Any] | None:
    """The read options an earlier lift recorded in a finished store's manifest (None: unknown)."""
    try:
        extra = read_json(out / MANIFEST, "manifest").get("extra")
    except LiftError:
        return None
    if not isinstance(extra, dict):
        return None
    return {"fmt": extra.get("fmt") or "auto", "key_field": extra.get("key_field"),
            "caption_field": extra.get("caption_field")}  # fmt: skip


def _shards_to_embed(
    writer: StoreWriter, mine: list[tuple[int, str]], inputs: dict[int, dict[str, Any]]
) -> tuple[list[tuple[int, str]], int]:
    """(this rank's shards still to embed, done shards whose input files could not be checked);
    refuses a done shard made from other inputs or with other settings.

    A shard whose input file could not be read to its end (`--on-error skip`) is embedded again once
    that file has changed (re-downloaded, repaired). A shard written before shards recorded their
    inputs is kept: its read settings are compared with those the old manifest recorded, when there
    is one; its input file cannot be checked.
    """
    todo, unchecked, changed = [], 0, []
    legacy: dict[str, Any] | None = None
    for i, path in mine:
        entry = writer.done_entry(i)
        if entry is None:
            todo.append((i, path))
            continue
        recorded = entry.get("inputs")
        if recorded is None:
            unchecked += 1
            if legacy is None:
                legacy = _legacy_read_options(writer.root) or {}
            if not legacy:
                continue
            try:
                recorded = {**read_settings(path, **legacy), "file": inputs[i]["file"]}
            except LiftError:  # an old option this lift no longer knows: nothing to compare
                continue
        diff = _input_changes(recorded, inputs[i])
        if diff and _replaced_damaged_file(recorded, inputs[i]):
            todo.append((i, path))
        elif diff:
            changed.append(f"shard {i} ({writer.shard_names[i]}): {'; '.join(diff)}")
    if changed:
        more = f" (and {len(changed) - 1} more shard(s))" if len(changed) > 1 else ""
        raise LiftError(
            f"{writer.root}: the finished {changed[0]}{more}; its vectors would not be this job's. "
            "Write to a new --out, or rerun with the store's inputs and settings"
        )
    return todo, unchecked


def _embed_shards(
    todo: list[tuple[int, str]], enc: TextEncoder, writer: StoreWriter, policy: ErrorPolicy, bar: _Progress,
    read_options: dict[str, Any], inputs: dict[int, dict[str, Any]],
) -> tuple[dict[str, int], list[str], list[str]]:  # fmt: skip
    """Read, embed and write each (index, path) shard; returns (caption counts, files lost entirely,
    files cut short)."""
    counts = {"rows": 0, "captions": 0, "unique": 0, "skipped": 0, "truncated": 0, "files_lost": 0,
              "files_cut_short": 0}  # fmt: skip
    lost, cut_short = [], []
    for i, path in todo:
        fields = inputs[i]["caption_field"].split(",")  # this file's views, its format's default filled in
        options = {**read_options, "caption_field": fields}
        keys, per_view, skipped, damage, _ = read_captions(path, policy=policy, **options)
        # row-major, views inner: the encoder embeds each distinct text of the shard once, whatever view
        captions = [text for row in zip(*per_view) for text in row]
        unique = len(set(captions))
        bar.shard_read(unique)
        # [N * V, dim], [N * V]
        emb, cut = enc.encode(captions, progress=bar.bar.update, return_truncated=True)
        truncated = int(cut.sum())  # every caption of every view
        made_from = {**inputs[i], "damaged": damage} if damage else inputs[i]
        vectors = emb.numpy().reshape(len(keys), len(fields), enc.dim)  # [N, V, dim]
        writer.write_shard(i, keys, vectors, skipped=skipped, truncated=truncated, inputs=made_from)
        if damage:
            (cut_short if keys or skipped else lost).append(damage)
        counts["rows"] += len(keys)
        counts["captions"] += len(captions)
        counts["unique"] += unique
        counts["skipped"] += skipped
        counts["truncated"] += truncated
    counts["files_lost"], counts["files_cut_short"] = len(lost), len(cut_short)
    return counts, lost, cut_short


def embed_captions(
    *,
    sources: list[str] | str,
    out: str | os.PathLike,
    text_encoder: str | os.PathLike | TextEncoder = "default",
    store_dtype: str = "float16",
    key_field: str | None = None,
    caption_field: str | Sequence[str] | None = None,
    fmt: str = "auto",
    on_error: str = "stop",
    progress: bool = True,
    **encoder_options: Any,
) -> dict[str, Any]:
    """Embed every caption of `sources` into the store at `out`; returns the job summary.

    `text_encoder`: "default", a model folder, or a loaded TextEncoder; `encoder_options` go to
    `TextEncoder.from_pretrained` (pooling, max_tokens, instruction, normalize, append_eos, dtype,
    device, batch_size, trust_remote_code).
    `caption_field`: one field, or several (a list, or comma-separated: "org_caption,re_caption"),
    each embedded as one view of the store; a row is kept only when every view's caption is usable.
    Exact duplicate captions are embedded once per shard (across its views too): deduplicating across
    shards would make a shard's bytes depend on which shards ran before it, and a resumed job could then
    differ.
    A folder in `sources` gives one caption file per shard (an img2dataset folder: its tars, or its
    parquets with fmt="parquet"; `*_stats.json` are ignored).
    """
    policy = ErrorPolicy(on_error)
    started_group = not _dist_initialized()
    info = init_process_group()
    try:
        paths = source_files(sources, fmt)
        fields = parse_caption_fields(caption_field)
        read_options = {
            "fmt": fmt,
            "key_field": key_field,
            "caption_field": ",".join(fields) if fields else None,
        }
        inputs = {i: shard_inputs(p, **read_options) for i, p in enumerate(paths)}
        # named once for the store: several fields are named by the job; one default may differ by format
        # (txt for tars, caption for tables), and the first file's names the view
        views = inputs[0]["caption_field"].split(",") if paths else ["caption"]
        check_output_folder(out)  # a file or an unwritable place: refused before the encoder loads
        if paths:  # a field the inputs do not have: refused before the store folder exists
            check_caption_fields(paths[0], **read_options)
        if isinstance(text_encoder, TextEncoder):
            if encoder_options:
                raise TypeError(
                    f"encoder options {sorted(encoder_options)} given with an already loaded encoder"
                )
            enc = text_encoder
        else:
            enc = TextEncoder.from_pretrained(text_encoder, **encoder_options)
        writer = _open_writer(
            out,
            identity=enc.identity,
            dim=enc.dim,
            dtype=store_dtype,
            shard_names=[shard_name(p) for p in paths],
            views=views,
            sources=paths,
            # absolute (symlinks kept: the folder's name is part of the identity), so `lift train` and
            # `lift eval` find the encoder from any working directory
            extra={"text_encoder_path": os.path.abspath(enc.path), **read_options},
        )
        mine = shards_for_rank(paths, info)
        todo, unchecked = _shards_to_embed(writer, mine, inputs)
        bar = _Progress(len(todo), progress and info.is_main)
        start = time.perf_counter()
        try:
            counts, lost, cut_short = _embed_shards(todo, enc, writer, policy, bar, read_options, inputs)
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        barrier()
        summed = _sum_across_ranks([*counts.values(), len(mine) - len(todo), unchecked])
        totals = dict(zip(counts, summed))
        already_done, unchecked = summed[-2:]
        lost, cut_short = _gather_lists(lost), _gather_lists(cut_short)
        manifest = writer.finalize() if info.is_main else None
        barrier()  # nobody returns before the store is complete
    finally:
        if started_group and _dist_initialized():
            import torch.distributed as dist

            dist.destroy_process_group()
    return {
        "store": str(out),
        "views": views,
        **totals,
        "max_tokens": enc.max_tokens,
        "shards": len(paths),
        "shards_already_done": already_done,
        "shards_unchecked": unchecked,
        "rows_in_store": manifest["rows"] if manifest else None,
        "seconds": round(seconds, 3),
        "captions_per_s": round(totals["captions"] / seconds, 1) if seconds > 0 else 0.0,
        "skipped_examples": policy.examples,
        "lost_files": lost,
        "cut_short_files": cut_short,
        "world_size": info.world_size,
    }


def _open_writer(out: str | os.PathLike, **settings: Any) -> StoreWriter:
    """The store writer; a store of other views is refused in the words of the flag that names them."""
    try:
        return StoreWriter(out, **settings)
    except ViewsDiffer as e:
        theirs = e.store_views
        then, now = ",".join(theirs) if isinstance(theirs, list) else repr(theirs), ",".join(e.job_views)
        raise LiftError(
            f"{out}: the store holds the views of --caption-field {then!r} then, {now!r} now; its vectors "
            "would not be this job's. Write to a new --out, or rerun with the store's inputs and settings"
        ) from None


def _dist_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def summary_line(summary: dict[str, Any]) -> str:
    s = summary
    done = f", {s['shards_already_done']} shard(s) already done" if s["shards_already_done"] else ""
    lost = f", {s['files_lost']} file(s) lost entirely" if s["files_lost"] else ""
    short = f", {s['files_cut_short']} file(s) cut short" if s["files_cut_short"] else ""
    views = s["views"]
    of_views = f" of {s['rows']} rows in {len(views)} views ({', '.join(views)})" if len(views) > 1 else ""
    return (
        f"lift embed: {s['captions']} captions{of_views} ({s['unique']} unique, {s['skipped']} skipped, "
        f"{s['truncated']} truncated at {s['max_tokens']} tokens){lost}{short} in {s['seconds']:.1f} s, "
        f"{s['captions_per_s']:.1f} captions/s{done} -> {s['store']}"
    )


def summary_notes(summary: dict[str, Any]) -> list[str]:
    """The lines printed under the summary: what was lost or skipped, and what was not checked."""
    notes = [f"  lost: {m}" for m in summary["lost_files"]]
    notes += [f"  cut short: {m}" for m in summary["cut_short_files"]]
    notes += [f"  skipped: {m}" for m in summary["skipped_examples"]]
    if summary["shards_unchecked"]:
        notes.append(
            f"  note: {summary['shards_unchecked']} finished shard(s) were written by an earlier lift that "
            "recorded no input fingerprint; kept without checking their input files (re-embed them into a "
            "new --out to be sure)"
        )
    return notes
