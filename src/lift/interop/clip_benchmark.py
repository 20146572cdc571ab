"""Evaluate LIFT and CLIP models with `clip_benchmark` (pip install clip_benchmark).

clip_benchmark's model-loader contract: `load(model_name, pretrained, cache_dir, device)` returns
`(model, transform, tokenizer)`, and it calls `model.encode_text(tokenizer(texts).to(device))` and
`model.encode_image(transform(images))`. A LIFT model has no token ids: its text side is the frozen
encoder, which reads strings. So our "tokenizer" returns the strings themselves (a list that also
answers `.to(device)`), and `lift.load`'s `encode_text` takes them as they are, for CLIP too (it
tokenizes with open_clip's tokenizer inside).

From the shell (registers the `lift` model type, then runs clip_benchmark's own CLI):

    python -m lift.interop.clip_benchmark eval --model_type lift --model lift --pretrained runs/lift-b16 \\
        --dataset cifar10 --dataset_root data/cifar10 --output result.json

`--pretrained` is a run folder, checkpoint folder or reference `.pt`; `--model` is `lift` (use the
text encoder the checkpoint records), or, for a reference LIFT `.pt`, the frozen encoder's folder.
From Python: `register()` adds the type to clip_benchmark's registry (`TYPE2FUNC`, `MODEL_TYPES`).

`register()` also mends one clip_benchmark 1.6.2 bug, only where it bites: its top-k `accuracy()`
calls float() on a 1-element array, which NumPy >= 2.4 refuses (every zero-shot classification run
fails). The replacement computes the same numbers; a fixed clip_benchmark is left alone.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch

MODEL_TYPE = "lift"
RECORDED_ENCODER = "lift"  # --model value meaning "the text encoder the checkpoint records"


class TextBatch(list):
    """The texts, standing in for token ids: `.to(device)` is a no-op, `encode_text` reads the strings."""

    def to(self, *args: Any, **kwargs: Any) -> TextBatch:
        return self


def tokenize(texts: str | Iterable[str]) -> TextBatch:
    return TextBatch([texts] if isinstance(texts, str) else texts)


def load_lift(
    model_name: str = RECORDED_ENCODER,
    pretrained: str = "",
    cache_dir: str | None = None,
    device: str | torch.device = "cpu",
    **load_kwargs: Any,
) -> tuple[Any, Callable, Callable[[Iterable[str]], TextBatch]]:
    """clip_benchmark's loader signature -> (the `lift.load` model, its preprocess, `tokenize`).

    cache_dir is unused: nothing is downloaded. load_kwargs go to `lift.load` (pooling=,
    trust_remote_code=, ... for a reference `.pt`'s text encoder).
    """
    from lift.api import load

    if model_name and model_name != RECORDED_ENCODER:
        load_kwargs.setdefault("text_encoder", model_name)
    model = load(pretrained, device=device, **load_kwargs)
    return model, model.preprocess, tokenize


def _accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)) -> list[float]:
    """clip_benchmark's top-k accuracy (output: [N, C] logits, target: [N]), with `.item()` for the scalar."""
    pred = output.topk(max(topk), 1, True, True)[1].t()  # [k, N]
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def _mend_accuracy() -> None:
    """Swap in `_accuracy` where clip_benchmark's own fails on this NumPy (see the module docstring)."""
    from clip_benchmark.metrics import linear_probe, zeroshot_classification

    broken = zeroshot_classification.accuracy
    try:
        broken(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))
    except TypeError:
        for module in (zeroshot_classification, linear_probe):
            if getattr(module, "accuracy", None) is broken:
                module.accuracy = _accuracy


def register(**load_kwargs: Any) -> None:
    """Make `--model_type lift` known to clip_benchmark (its registry and its CLI's choices)."""
    from clip_benchmark import models

    _mend_accuracy()
    models.TYPE2FUNC[MODEL_TYPE] = functools.partial(load_lift, **load_kwargs) if load_kwargs else load_lift
    if MODEL_TYPE not in models.MODEL_TYPES:
        models.MODEL_TYPES.append(MODEL_TYPE)  # the CLI's --model_type choices are this very list


def main(argv: list[str] | None = None) -> int:
    """`clip_benchmark` with the `lift` model type registered; argv as for `clip_benchmark`."""
    register()
    from clip_benchmark.cli import main as clip_benchmark_main

    saved = sys.argv
    sys.argv = ["clip_benchmark", *(sys.argv[1:] if argv is None else argv)]
    try:
        clip_benchmark_main()
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
