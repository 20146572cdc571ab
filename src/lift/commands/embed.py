"""Embed every caption once with the frozen text encoder, into an embedding store.

Reads parquet, JSONL, CSV/TSV or webdataset tar shards (`KEY.txt` members); each input file
becomes one store shard, in order, so store shard i lines up with image shard i. A folder gives one
file per shard: an img2dataset folder is read from its tars (`--format parquet`: its parquets), and
its `*_stats.json` are ignored. The store records the encoder's identity (folder name, weights hash,
pooling, max tokens, instruction), and training refuses a store made by another encoder.
Rerunning the same command skips finished shards (safe after a crash or kill); a rerun whose input
files, fields, format or encoder settings differ is refused (write to a new --out). The summary
counts skipped rows, captions truncated at --max-tokens, and input files lost or cut short.
Under torchrun each rank embeds its share of the shards.
Several caption fields of the same rows (`--caption-field org_caption,re_caption`) are embedded as
the store's views: each key holds one vector per field, and a row is kept only when every field's
caption is usable (`lift store info` lists the views).

Examples:
  lift embed 'data/train/*.parquet' --caption-field re_caption --out emb/recap
  lift embed 'data/train/*.parquet' --caption-field org_caption,re_caption --out emb/both
  lift embed 'shards/{00000..00099}.tar' --out emb/short --store-dtype int8 --on-error skip
  torchrun --nproc_per_node 8 -m lift embed meta/ --out emb/nv --text-encoder /models/NV-Embed-v2 \\
      --pooling model --trust-remote-code --max-tokens 323 --dtype float16
"""

from __future__ import annotations

import argparse

from lift.errors import ON_ERROR_CHOICES

NAME = "embed"
HELP = "embed captions once with the frozen text encoder into an embedding store"
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the choices live beside torch and transformers: imported here so other commands never pay for them
    from lift.data.captions import CAPTION_SOURCES
    from lift.store.codecs import CODECS
    from lift.text.encoder import DTYPES
    from lift.text.pooling import POOLING_CHOICES

    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCES",
        help="caption files, folders, globs or brace patterns (one store shard per file)",
    )
    parser.add_argument("--out", required=True, metavar="STORE", help="the store folder (created or resumed)")
    enc = parser.add_argument_group("text encoder")
    enc.add_argument(
        "--text-encoder",
        "--encoder",  # its earlier name; --text-encoder is the one every command takes
        dest="text_encoder",
        default="default",
        help="'default' (all-MiniLM-L6-v2, packaged) or a local Hugging Face model folder",
    )
    enc.add_argument(
        "--pooling",
        choices=POOLING_CHOICES,
        default="auto",
        help="auto: the folder's sentence-transformers pooling, else last (decoders) or mean",
    )
    enc.add_argument(
        "--max-tokens",
        type=int,
        default=77,
        help="truncate captions to this many tokens (at most the model's limit)",
    )
    enc.add_argument(
        "--instruction", default="", help="text prepended to every caption (instruction-tuned embedders)"
    )
    enc.add_argument(
        "--append-eos",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="append the EOS token (default: yes for last-token pooling when the tokenizer does not)",
    )
    enc.add_argument(
        "--no-normalize", dest="normalize", action="store_false", help="keep vectors un-normalised"
    )
    enc.add_argument("--dtype", choices=tuple(DTYPES), default="float32", help="the encoder's compute dtype")
    enc.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    enc.add_argument("--batch-size", type=int, default=128)
    enc.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the model folder's own Python code (needed by --pooling model)",
    )
    data = parser.add_argument_group("captions and store")
    data.add_argument(
        "--key-field", default=None, help="key column/field (default: key; __key__ for tar shards)"
    )
    data.add_argument(
        "--caption-field",
        default=None,
        help="caption column/field (default: caption; the txt member for tar shards); several, "
        "comma-separated (org_caption,re_caption), are embedded as the store's views, one vector each",
    )
    data.add_argument(
        "--format",
        dest="fmt",
        choices=("auto", *CAPTION_SOURCES.names()),
        default="auto",
        help="input format (auto: from the file suffix; in a folder holding tars and parquets, the tars)",
    )
    data.add_argument(
        "--store-dtype", choices=CODECS.names(), default="float16", help="how vectors are stored on disk"
    )
    data.add_argument(
        "--on-error",
        choices=ON_ERROR_CHOICES,
        default="stop",
        help="bad rows: stop with an error naming them, or skip and count them",
    )
    data.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lift.embed import embed_captions, summary_line, summary_notes

    summary = embed_captions(
        sources=args.sources, out=args.out, text_encoder=args.text_encoder, pooling=args.pooling, max_tokens=args.max_tokens,
        instruction=args.instruction, normalize=args.normalize, append_eos=args.append_eos, dtype=args.dtype,
        device=args.device, batch_size=args.batch_size, trust_remote_code=args.trust_remote_code,
        store_dtype=args.store_dtype, key_field=args.key_field, caption_field=args.caption_field, fmt=args.fmt,
        on_error=args.on_error, progress=args.progress,
    )  # fmt: skip
    if summary["rows_in_store"] is not None:  # only rank 0 prints
        print(summary_line(summary))
        for note in summary_notes(summary):
            print(note)
    return 0
