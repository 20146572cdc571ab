"""Timing on a shared, noisy machine: methods run in interleaved rounds and each keeps its best.

A burst of load from other processes then lands on every method alike instead of on one of them,
and the best round is the least disturbed estimate of what the code itself costs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def best_of_interleaved(
    methods: dict[str, Callable[[], Any]], *, repeats: int, count: int, unit: str, label: str
) -> dict[str, tuple[float, Any]]:
    """{name: (best seconds, its last result)} over `repeats` rounds of every method in turn."""
    best = dict.fromkeys(methods, float("inf"))
    results: dict[str, Any] = {}
    for r in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            results[name] = fn()
            seconds = time.perf_counter() - start
            best[name] = min(best[name], seconds)
            print(
                f"[bench {label}] round {r}: {name} {count / seconds:.1f} {unit}/s",
                file=sys.stderr,
                flush=True,
            )
    return {name: (best[name], results[name]) for name in methods}
