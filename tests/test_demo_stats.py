"""The demo's intervals against hand computations."""

import math

import numpy as np
import pytest

from lift.demo.stats import Interval, paired_bootstrap, seed_interval, verdict


def test_seed_interval_is_student_t_by_hand():
    diffs = [2.0, 4.0, 6.0]
    got = seed_interval(diffs)
    sd = math.sqrt(((2 - 4) ** 2 + 0 + (6 - 4) ** 2) / 2)  # 2.0
    half = 4.303 * sd / math.sqrt(3)
    assert got.estimate == 4.0 and got.low == pytest.approx(4 - half) and got.high == pytest.approx(4 + half)
    one = seed_interval([1.5])
    assert (one.estimate, one.low, one.high) == (1.5, None, None)


def test_paired_bootstrap_estimate_is_the_mean_of_group_means_difference():
    # seed 0: group g1 a=[1,1,0,1] b=[0,1,0,0] -> 0.5; group g2 a=[1,0] b=[1,1] -> -0.5; mean 0.0
    # seed 1: g1 a=[1,1] b=[0,0] -> 1.0; g2 a=[0] b=[0] -> 0.0; mean 0.5 ; over seeds 0.25 -> 25 %
    a = [
        {"g1": {"i": 1, "j": 1, "k": 0, "l": 1}, "g2": {"x": 1, "y": 0}},
        {"g1": {"i": 1, "j": 1}, "g2": {"x": 0}},
    ]
    b = [
        {"g1": {"i": 0, "j": 1, "k": 0, "l": 0}, "g2": {"x": 1, "y": 1}},
        {"g1": {"i": 0, "j": 0}, "g2": {"x": 0}},
    ]
    got = paired_bootstrap(a, b, draws=500, seed=1)
    assert got.estimate == pytest.approx(25.0)
    assert got.low <= 25.0 <= got.high
    assert paired_bootstrap(a, b, draws=500, seed=1) == got  # seeded: the same interval every time


def test_paired_bootstrap_by_hand_on_one_group():
    """Every draw's statistic is the mean of resampled paired differences: compare with numpy's."""
    rng = np.random.default_rng(0)
    xa, xb = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    a, b = (
        [{"g": {str(i): int(v) for i, v in enumerate(xa)}}],
        [{"g": {str(i): int(v) for i, v in enumerate(xb)}}],
    )
    got = paired_bootstrap(a, b, draws=400, seed=7)
    ids = sorted(str(i) for i in range(200))  # the items' order inside the bootstrap
    d = np.array([xa[int(i)] - xb[int(i)] for i in ids], float)
    r = np.random.default_rng(7)
    by_hand = [100 * d[r.integers(0, 200, 200)].mean() for _ in range(400)]
    assert got.low == pytest.approx(np.percentile(by_hand, 2.5)) and got.high == pytest.approx(
        np.percentile(by_hand, 97.5)
    )
    assert got.estimate == pytest.approx(100 * d.mean())


def test_identical_models_are_not_distinguishable_and_a_clear_win_is():
    same = [{"g": {str(i): i % 2 for i in range(100)}}]
    tie = paired_bootstrap(same, same, draws=200)
    assert tie.estimate == 0 and verdict(tie, seed_interval([0.0])).startswith("not distinguishable")
    better = [{"g": {str(i): 1 for i in range(100)}}]
    win = paired_bootstrap(better, same, draws=200)
    assert win.excludes_zero and "one seed" in verdict(win, seed_interval([50.0]))
    assert verdict(win, seed_interval([50.0, 48.0, 52.0])) == "distinguishable from zero (items and seeds)"
    assert verdict(win, Interval(1.0, -2.0, 4.0)) == "distinguishable on these items, but not across seeds"
