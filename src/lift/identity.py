"""Provenance checks: every store, checkpoint and result records the text encoder's identity
(a dict: model folder name, weights hash, pooling, max length, instruction, normalisation, dim),
and artifacts made with different encoders must never be mixed silently.

The folder's name is recorded for people; the weights hash decides. A folder that was moved or
renamed but holds the same weights (same `weights_sha256`) is the same encoder: accepted with an
`EncoderRenamedWarning`, never refused.
"""

from __future__ import annotations

import warnings
from typing import Any

from lift.errors import LiftError, LiftWarning

NAME_KEY, WEIGHTS_KEY = "name", "weights_sha256"


class EncoderRenamedWarning(LiftWarning):
    """The text encoder's folder has another name than recorded, with the same weights."""


def identity_diff(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Keys whose values differ, as `key: expected != found` strings (empty when identical)."""
    keys = sorted(set(expected) | set(found))
    return [f"{k}: {expected.get(k)!r} != {found.get(k)!r}" for k in keys if expected.get(k) != found.get(k)]


def _renamed_only(expected: dict[str, Any], found: dict[str, Any]) -> bool:
    """True when only the folder name differs and both record the same (non-empty) weights hash."""
    same_weights = bool(expected.get(WEIGHTS_KEY)) and expected.get(WEIGHTS_KEY) == found.get(WEIGHTS_KEY)
    rest = [k for k in set(expected) | set(found) if k != NAME_KEY and expected.get(k) != found.get(k)]
    return same_weights and not rest


def _transform_name(t: dict[str, Any] | None) -> str:
    return "none" if t is None else f"{' + '.join(t.get('chain') or [])} ({str(t.get('sha256'))[:12]})"


def check_same_transform(
    expected: dict[str, Any] | None, found: dict[str, Any] | None, *, expected_from: str, found_from: str
) -> None:
    """Refuse two artifacts whose stored vectors went through different fitted maps (`lift store
    transform`); None is the encoder's own vectors."""
    if (expected or {}).get("sha256") != (found or {}).get("sha256"):
        raise LiftError(
            f"text transform mismatch between {expected_from} ({_transform_name(expected)}) and {found_from} "
            f"({_transform_name(found)}); they map the encoder's vectors differently"
        )


def check_same_encoder(
    expected: dict[str, Any], found: dict[str, Any], *, expected_from: str, found_from: str
) -> None:
    """Raise a one-line LiftError naming what differs between two encoder identities; a renamed folder
    with the same weights is only warned about (once per place, by Python's warnings)."""
    diff = identity_diff(expected, found)
    if not diff:
        return
    if _renamed_only(expected, found):
        warnings.warn(
            f"text encoder folder names differ: {expected.get(NAME_KEY)!r} ({expected_from}) vs "
            f"{found.get(NAME_KEY)!r} ({found_from}); the weights are the same (sha256 "
            f"{str(found.get(WEIGHTS_KEY))[:12]}...), so it is the same encoder, moved or renamed",
            EncoderRenamedWarning,
            stacklevel=2,
        )
        return
    raise LiftError(
        f"text encoder mismatch between {expected_from} and {found_from} ({'; '.join(diff)}); "
        "they were made with different text encoders or settings"
    )
