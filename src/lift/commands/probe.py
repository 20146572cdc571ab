"""What a frozen text encoder can teach, on text alone: no images, no training, minutes on a CPU.

LIFT's image tower learns to land on the frozen encoder's vector of its caption, so captions whose
vectors (nearly) coincide are distinctions no tower can learn from those targets. The probe reports:
- per SugarCrepe task file in --annotations: cosine(positive, negative caption), mean and 5/25/50/75/95%
  quantiles, and the share of pairs at cosine >= 1 - margin (too close for training to resolve);
- for --classnames: the nearest-neighbour cosine between class prompt vectors (mean, max, the share
  >= 1 - margin, the closest pairs named);
- for --captions (a COCO captions JSON, a .txt file of one caption per line, or any caption file
  `lift embed` reads): anisotropy (mean cosine of all pairs), effective rank (exp of the entropy of
  the covariance eigenvalues), and per caption the cosine of its nearest caption of another image
  (COCO) or other text: how many captions the encoder can barely tell from another one;
- for each --store: the same figures through the store's encoder AND transform (the targets training
  sees), and the anisotropy and effective rank of a seeded sample of its stored vectors.

Columns, side by side: one per --text-encoder (the raw encoder with --pooling/--max-tokens/
--instruction) and one per --store (its recorded encoder settings and transform); with neither, the
default encoder. A store's encoder folder is the one it records, or the --text-encoder holding the
same weights (that folder is then also shown raw, the comparison worth seeing).
The default margin 0.01 (cosine 0.99) is a convention, not a law; the quantiles are shown beside it.

Examples:
  lift probe --annotations world/sugarcrepe --classnames world/zeroshot/classnames.txt \\
      --captions world/retrieval/captions.json
  lift probe --store emb/recap --store emb/recap-white --annotations world/sugarcrepe
  lift probe --text-encoder default --text-encoder /models/bge-base-en-v1.5 --annotations sugarcrepe \\
      --captions coco/captions_val2017.json --json --out probe.json
  lift probe --text-encoder /models/NV-Embed-v2 --pooling model --trust-remote-code --max-tokens 323 \\
      --annotations sugarcrepe
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from lift.commands.argtypes import int_at_least, nonnegative_int, positive_int
from lift.errors import LiftError

NAME = "probe"
HELP = "measure what a frozen text encoder (or store) can teach: text only, no images"
ORDER = 15

_ENCODER_FLAGS = {"pooling": "--pooling", "max_tokens": "--max-tokens", "instruction": "--instruction"}


def _margin(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 2), got {text!r}") from None
    if not 0 < value < 2 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be in (0, 2) (cosine >= 1 - margin counts), got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lift.probe import DEFAULT_MARGIN, DEFAULT_SAMPLE
    from lift.text.pooling import POOLING_CHOICES

    what = parser.add_argument_group("what is probed (one column each)")
    what.add_argument(
        "--text-encoder", action="append", default=[], metavar="ENC",
        help="'default' (all-MiniLM-L6-v2, packaged) or a local Hugging Face model folder; repeat for several",
    )  # fmt: skip
    what.add_argument(
        "--store", action="append", default=[], metavar="STORE",
        help="an embedding store: probe through its encoder and transform; repeat for several",
    )  # fmt: skip
    enc = parser.add_argument_group("raw encoder settings (--text-encoder columns; a store records its own)")
    enc.add_argument("--pooling", choices=POOLING_CHOICES, default=None, help="default: auto")
    enc.add_argument("--max-tokens", type=int_at_least(2), default=None, help="default: 77")
    enc.add_argument("--instruction", default=None, help="text prepended to every caption (default none)")
    enc.add_argument(
        "--trust-remote-code", action="store_true", help="allow a model folder's own code (--pooling model)"
    )
    enc.add_argument("--batch-size", type=positive_int, default=128, help="texts per forward pass")
    enc.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    data = parser.add_argument_group("texts")
    data.add_argument(
        "--annotations", metavar="DIR", help="folder of SugarCrepe files add_obj.json ... swap_att.json"
    )
    data.add_argument(
        "--classnames", metavar="FILE", help="class names: txt (one per line) or imagenet_class_index.json"
    )
    data.add_argument(
        "--templates", metavar="FILE",
        help="prompt templates ({label} placeholder), one per line (default: lift's zero-shot template)",
    )  # fmt: skip
    data.add_argument(
        "--captions", metavar="FILE",
        help="a COCO captions JSON (grouped by image), a .txt of captions, or a caption file/folder lift embed reads",
    )  # fmt: skip
    data.add_argument("--caption-field", default=None, help="the caption column of a --captions table")
    data.add_argument(
        "--sample", type=positive_int, default=DEFAULT_SAMPLE,
        help="probe at most this many captions (and store rows), a seeded sample (default %(default)s)",
    )  # fmt: skip
    data.add_argument(
        "--store-sample", type=nonnegative_int, default=None,
        help="stored vectors sampled per --store for anisotropy and rank (default: --sample; 0: none)",
    )  # fmt: skip
    data.add_argument("--seed", type=int, default=0, help="the sampling seed (default 0)")
    out = parser.add_argument_group("result")
    out.add_argument(
        "--margin", type=_margin, default=DEFAULT_MARGIN,
        help="pairs at cosine >= 1 - margin count as too close to resolve (default %(default)s)",
    )  # fmt: skip
    out.add_argument("--out", metavar="FILE", help="write the result JSON here")
    out.add_argument(
        "--json", action="store_true", help="print the result as one JSON object on the last line"
    )


def _is_probe_report(path: Path) -> bool:
    from lift.config import read_json
    from lift.probe import REPORT_FORMAT

    try:
        data = read_json(path)
    except LiftError:
        return False
    return isinstance(data, dict) and data.get("format") == REPORT_FORMAT


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that would be ignored are refused."""
    if not args.text_encoder:
        given = [flag for dest, flag in _ENCODER_FLAGS.items() if getattr(args, dest) is not None]
        if given and args.store:
            raise LiftError(
                f"{', '.join(given)} set(s) a raw --text-encoder column, and none is given: a store's encoder "
                "settings are the ones it records. Add --text-encoder ENC, or drop the flag"
            )
    if not (args.annotations or args.classnames or args.captions or args.store):
        raise LiftError("nothing to probe: give --annotations, --classnames or --captions (or a --store)")
    if args.store_sample is not None and not args.store:
        raise LiftError("--store-sample: it samples a store's vectors; give --store STORE too")


def run(args: argparse.Namespace) -> int:
    import time

    from lift.atomic import write_json
    from lift.outputs import check_output_file
    from lift.probe import (
        encoder_subject,
        markdown_report,
        probe_report,
        probe_subject,
        read_inputs,
        store_subject,
    )

    started = time.perf_counter()
    _check_flags(args)
    if args.out:  # before any work: a result is never computed and then lost
        check_output_file(
            args.out, flag="--out", replaceable=_is_probe_report, what="a lift probe result JSON"
        )
    inputs = read_inputs(
        annotations=args.annotations, classnames=args.classnames, templates=args.templates,
        captions=args.captions, caption_field=args.caption_field, sample=args.sample, seed=args.seed,
    )  # fmt: skip
    runtime = {
        "trust_remote_code": args.trust_remote_code,
        "device": args.device,
        "batch_size": args.batch_size,
    }
    settings = {
        "pooling": args.pooling or "auto", "max_tokens": args.max_tokens or 77,
        "instruction": args.instruction if args.instruction is not None else "",
    }  # fmt: skip
    names = args.text_encoder or ([] if args.store else ["default"])
    encoders = [encoder_subject(name, **settings, **runtime) for name in names]
    subjects = list(encoders)
    for path in args.store:  # stores of one encoder share it, and each text is embedded once for all
        subjects.append(store_subject(path, loaded=subjects, **runtime))
    store_sample = args.sample if args.store_sample is None else args.store_sample
    columns = [
        probe_subject(s, inputs, margin=args.margin, store_sample=store_sample, seed=args.seed)
        for s in subjects
    ]
    report = probe_report(
        columns, inputs, margin=args.margin, seed=args.seed, sample=args.sample,
        store_sample=store_sample if args.store else None,
    )  # fmt: skip
    report["seconds"] = round(time.perf_counter() - started, 3)
    if args.out:
        write_json(args.out, report)
    print(markdown_report(report))
    print(
        f"probe: {len(columns)} column(s) in {report['seconds']:.1f}s"
        + (f"; wrote {args.out}" if args.out else "")
    )
    if args.json:
        print(json.dumps(report, default=str), flush=True)
    return 0
