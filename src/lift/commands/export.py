"""Export a trained model to where encoders go next: a Hugging Face CLIPVisionModel folder (the
vision tower of LLaVA-style multimodal models) or an open_clip model folder.

RUN_OR_CHECKPOINT is a run folder (its latest checkpoint), a checkpoint folder, or a `.pt` file in
the reference implementation's layout (the paper's released checkpoints).

The formats (--format) are listed at the end. A format exports only what it has a slot for (a
CLIPVisionModel has none for LIFT's MLP head) or refuses the model, and says so; the printed notes
and the exported README.md say how to pool and load the result.

Examples:
  lift export runs/lift-demo --format hf-clip-vision --out exports/lift-demo-hf
  lift export lift_vitb16_datacomp.pt --format hf-clip-vision --out exports/lift-b16-hf
  lift export runs/clip-demo/checkpoints/step-001000 --format open_clip --out exports/clip-demo
  lift export clip_vitb16_datacomp.pt --format open_clip --out exports/clip-b16 --overwrite
  lift export logs/run/checkpoints/epoch_32.pt --format open_clip --out exports/run   # reads logs/run/params.txt
  lift export tiny.pt --vision-heads 4 --text-heads 4 --format open_clip --out exports/tiny

--overwrite replaces only a folder an earlier `lift export` wrote (it holds a .lift-output.json marker),
and never the source, a folder holding it, or the working directory.

Then, in Python:
  transformers.CLIPVisionModel.from_pretrained("exports/lift-demo-hf")
  open_clip.create_model_and_transforms("local-dir:exports/clip-demo")
"""

from __future__ import annotations

import argparse

from lift.commands.eval import add_reference_arguments, reference_kwargs

NAME = "export"
HELP = "export a model: Hugging Face CLIPVisionModel (LLaVA vision tower) or open_clip folder"
ORDER = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lift.interop.export import FORMATS
    from lift.registry import describe

    parser.epilog = f"formats (--format):\n{describe(FORMATS)}"
    parser.add_argument(
        "source", metavar="RUN_OR_CHECKPOINT", help="run folder, checkpoint folder or reference .pt"
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to export to (listed below)")
    parser.add_argument(
        "--out", required=True, help="the folder to write (written aside, then renamed into place)"
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace --out if it exists and is an earlier lift export (never the source, nor a folder "
        "holding it or the working directory)",
    )  # fmt: skip
    add_reference_arguments(
        parser.add_argument_group(
            "reference .pt checkpoints", "what their weights do not say (docs/interop.md)"
        )
    )


def run(args: argparse.Namespace) -> int:
    from lift.interop.export import export_model

    report = export_model(
        args.source, fmt=args.format, out=args.out, overwrite=args.overwrite, **reference_kwargs(args)
    )
    print(f"exported {report.exported} to {report.out} ({args.format}): {', '.join(report.files)}")
    print(f"load it with: {report.usage}")
    for note in report.notes:
        print(f"note: {note}")
    return 0
