"""How token states become one vector per text: the `--pooling` registry, and `auto` resolution.

Each pooling maps hidden states [B, T, D] and the attention mask [B, T] to [B, D]. `model` is
special: the model's own `encode` does everything (NV-Embed-V2 style), so it has no function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from lift.errors import LiftError
from lift.registry import Registry

PoolFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AUTO = "auto"
MODEL = "model"  # the model's own encode(); needs trust_remote_code

# Every `--pooling` choice. `auto` and `model` hold no function: `auto` is resolved to another entry
# before encoding, and `model` runs the model's own encode().
POOLING_REGISTRY: Registry[PoolFn | None] = Registry("pooling", flag="--pooling")
POOLING_REGISTRY.add(
    AUTO,
    None,
    help="the folder's sentence-transformers pooling, else last for decoder LLMs and mean for encoders",
)
POOLING_REGISTRY.add(
    MODEL, None, help="the model's own encode() (NV-Embed-V2 style; needs trust_remote_code)"
)


class _PoolFunctions(Mapping[str, "PoolFn | None"]):
    """Read-only `name -> function` view of the registry without `auto` (never left after resolving)."""

    def __getitem__(self, name: str) -> PoolFn | None:
        if name == AUTO or name not in POOLING_REGISTRY:
            raise KeyError(name)
        return POOLING_REGISTRY.get(name)

    def __iter__(self) -> Iterator[str]:
        return (name for name in POOLING_REGISTRY.names() if name != AUTO)

    def __len__(self) -> int:
        return len(POOLING_REGISTRY.names()) - 1


POOLINGS: Mapping[str, PoolFn | None] = _PoolFunctions()
POOLING_CHOICES = POOLING_REGISTRY  # argparse `choices` (iterable, `in`); kept for older imports


def register_pooling(name: str, *, help: str = "") -> Callable[[PoolFn], PoolFn]:
    """Decorator on `fn(hidden [B, T, D], mask [B, T]) -> [B, D]`; help: its docstring's first line."""

    def add(fn: PoolFn) -> PoolFn:
        POOLING_REGISTRY.add(name, fn, help=help or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return add


@register_pooling("mean")
def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the non-padding tokens."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


@register_pooling("cls")
def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's state (BERT's [CLS]); only meaningful with right padding."""
    return hidden[:, 0]


@register_pooling("last")
def last_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last non-padding token's state, for left and right padding alike.

    argmax of position * mask is the highest position holding a real token, wherever the padding is.
    """
    positions = torch.arange(mask.shape[1], device=mask.device)  # [T]
    last = (mask.long() * positions).argmax(dim=1)  # [B]
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


# sentence-transformers 1_Pooling/config.json flags -> our pooling names
_ST_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last",
}
_ST_UNSUPPORTED = (
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
)


def _sentence_transformers_pooling(folder: Path) -> str | None:
    """The pooling a sentence-transformers folder declares, or None when it has no pooling module."""
    config = folder / "1_Pooling" / "config.json"
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in json.loads(modules.read_text())}
        except (ValueError, AttributeError, TypeError):
            raise LiftError(f"{modules}: not valid sentence-transformers modules JSON") from None
        if "Pooling" in types:
            config = folder / types["Pooling"].get("path", "") / "config.json"
        extra = sorted(set(types) - {"Transformer", "Pooling", "Normalize"})
        if extra:  # e.g. a Dense projection: our vectors would silently differ from the model's own
            raise LiftError(
                f"{modules}: modules {', '.join(extra)} after pooling are not applied by lift; pass --pooling "
                "explicitly to embed with the transformer and pooling alone"
            )
    if not config.is_file():
        return None
    try:
        flags = json.loads(config.read_text())
    except ValueError:
        raise LiftError(f"{config}: not valid JSON") from None
    chosen = [name for key, name in _ST_MODES.items() if flags.get(key)]
    odd = [key for key in _ST_UNSUPPORTED if flags.get(key)]
    if odd or len(chosen) != 1:
        raise LiftError(
            f"{config}: pooling {', '.join(odd + chosen) or 'none'} is not supported by --pooling auto; "
            f"pass --pooling one of {', '.join(POOLINGS)}"
        )
    return chosen[0]


def is_decoder(config: Any) -> bool:
    """Decoder-only LLMs (causal LM architectures) attend left-to-right: only the last token saw everything."""
    archs = getattr(config, "architectures", None) or []
    return bool(getattr(config, "is_decoder", False)) or any(
        a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs
    )


def resolve_pooling(pooling: str, folder: Path, config: Any) -> str:
    """`auto` -> the folder's sentence-transformers pooling, else last (decoder) or mean (encoder)."""
    if pooling != AUTO:
        POOLING_REGISTRY.entry(pooling)  # an unknown name: the registry's one-line error
        return pooling
    return _sentence_transformers_pooling(folder) or ("last" if is_decoder(config) else "mean")
