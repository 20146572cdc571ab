"""How sure a difference between two methods is: paired intervals over test items and over seeds.

A demo metric is a mean of group means (SugarCrepe-style: the mean of the seven tasks' accuracies;
retrieval: the mean of image->text and text->image R@1; zero-shot: top-1 over all images), averaged
over the world seeds. Two models are evaluated on the same items, so their difference is paired:

- `paired_bootstrap`: the items of each (seed, group) are resampled with replacement, the same draw for
  both models, and the metric of the difference recomputed; the 2.5 and 97.5 percentiles of 2,000
  draws (seeded) are the 95% interval. It measures how much the test items' sampling could move the
  difference, for these trained models.
- `seed_interval`: the per-seed differences' mean and a Student-t 95% interval over seeds (needs two
  seeds or more). It measures how much training itself (initialisation, data order, world) moves it.

A difference is called distinguishable from zero when the item interval excludes zero and, with two
or more seeds, the seed interval does too (`verdict`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# two-sided 95% Student-t quantiles by degrees of freedom (a table: no scipy needed for 1..30)
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]  # fmt: skip

Items = Mapping[str, Mapping[str, float]]  # group -> item id -> outcome (0/1 or a score)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 1.96


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def seed_interval(differences: Sequence[float]) -> Interval:
    """Mean of per-seed differences and its Student-t 95% interval (none with a single seed)."""
    mean, sd = mean_std(differences)
    if sd is None:
        return Interval(mean, None, None)
    half = t95(len(differences) - 1) * sd / math.sqrt(len(differences))
    return Interval(mean, mean - half, mean + half)


def _aligned(a: Items, b: Items) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group, the two models' outcomes on the items both have, in one order."""
    out = []
    for group in sorted(set(a) & set(b)):
        ids = sorted(set(a[group]) & set(b[group]))
        if ids:
            out.append(
                (np.array([a[group][i] for i in ids], float), np.array([b[group][i] for i in ids], float))
            )
    return out


def paired_bootstrap(
    a: Sequence[Items], b: Sequence[Items], *, draws: int = 2000, seed: int = 0, scale: float = 100.0
) -> Interval:
    """The metric of model a minus model b (in `scale` units, % by default), with the 95% interval of a
    paired bootstrap over items: `a[s]` / `b[s]` are the two models' per-item outcomes on seed s."""
    strata = [_aligned(x, y) for x, y in zip(a, b)]  # seed -> groups -> (a outcomes, b outcomes)
    if not any(strata):
        return Interval(float("nan"), None, None)

    def metric(pick: list[list[np.ndarray]] | None) -> float:
        per_seed = []
        for s, groups in enumerate(strata):
            if not groups:
                continue
            diffs = [
                (xa - xb).mean() if pick is None else (xa[pick[s][g]] - xb[pick[s][g]]).mean()
                for g, (xa, xb) in enumerate(groups)
            ]
            per_seed.append(float(np.mean(diffs)))
        return scale * float(np.mean(per_seed))

    rng = np.random.default_rng(seed)
    estimate = metric(None)
    samples = np.empty(draws)
    for d in range(draws):
        pick = [[rng.integers(0, len(xa), len(xa)) for xa, _ in groups] for groups in strata]
        samples[d] = metric(pick)
    low, high = np.percentile(samples, [2.5, 97.5])
    return Interval(estimate, float(low), float(high))


def verdict(items: Interval, seeds: Interval) -> str:
    """In words: whether the difference is distinguishable from zero, and by which evidence."""
    if not items.excludes_zero:
        return "not distinguishable from zero"
    if seeds.low is None:
        return "distinguishable from zero on these items (one seed: training noise not measured)"
    if not seeds.excludes_zero:
        return "distinguishable on these items, but not across seeds"
    return "distinguishable from zero (items and seeds)"
