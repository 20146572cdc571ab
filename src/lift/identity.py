"""Provenance checks: every store, checkpoint and result records the text encoder's identity
(a dict: model folder name, weights hash, pooling, max length, instruction, normalisation, dim),
and artifacts made with different encoders must never be mixed silently."""

from __future__ import annotations

from typing import Any

from lift.errors import LiftError


def identity_diff(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Keys whose values differ, as `key: expected != found` strings (empty when identical)."""
    keys = sorted(set(expected) | set(found))
    return [f"{k}: {expected.get(k)!r} != {found.get(k)!r}" for k in keys if expected.get(k) != found.get(k)]


def check_same_encoder(
    expected: dict[str, Any], found: dict[str, Any], *, expected_from: str, found_from: str
) -> None:
    """Raise a one-line LiftError naming what differs between two encoder identities."""
    diff = identity_diff(expected, found)
    if diff:
        raise LiftError(
            f"text encoder mismatch between {expected_from} and {found_from} ({'; '.join(diff)}); "
            "they were made with different text encoders or settings"
        )
