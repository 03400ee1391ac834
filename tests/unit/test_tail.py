"""Thresholds beyond the held-back data (peaks-over-threshold, generalized Pareto tail), on a
real score distribution: the lengths of the 4,855 normal HDFS sessions."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.calibrate import calibrate
from trainer.tail import Support, empirical, fit_tail, tail_threshold


@pytest.fixture(scope="module")
def lengths(hdfs: tuple[list[list[int]], dict[int, int]]) -> np.ndarray:
    """Lengths of the normal HDFS sessions: a real, bounded, heavy-ish score distribution."""
    return np.asarray([len(s) for s in hdfs[0]], dtype=np.float64)


def test_levels_stay_distinct_on_small_held_back_sets(lengths: np.ndarray) -> None:
    """With a few hundred held-back scores the plain quantile puts low and medium both on the
    largest score; the fitted tail keeps three different thresholds."""
    rng = np.random.default_rng(1)
    for n in (200, 500, 1000):
        for _ in range(3):
            sample = rng.choice(lengths, n, replace=False)
            assert empirical(sample, 0.0001) == empirical(sample, 0.001) == sample.max()  # the old collapse
            t = calibrate(sample)["thresholds"]
            assert t["low"] > t["medium"] > t["high"], (n, t)


def test_extrapolated_thresholds_hold_their_rate_on_unseen_sessions(lengths: np.ndarray) -> None:
    """Fit on 500 sessions, measure the false-positive rate on the other 4,355."""
    rng = np.random.default_rng(2)
    medium, high = [], []
    for _ in range(7):
        idx = rng.permutation(len(lengths))
        fit_on, rest = lengths[idx[:500]], lengths[idx[500:]]
        t = calibrate(fit_on)["thresholds"]
        medium.append(float((rest > t["medium"]).mean()))
        high.append(float((rest > t["high"]).mean()))
    assert np.median(medium) <= 0.005  # target 0.001: within a few times, never the 10x of "high"
    assert 0.002 <= np.median(high) <= 0.03  # target 0.01


def test_support_says_plainly_what_the_data_cannot_support(lengths: np.ndarray) -> None:
    """Support is empirical, extrapolated or unsupported with a reason; more data, more support."""
    small = lengths[:200]
    cal = calibrate(small)["calibration"]
    assert cal["support"] == {"low": "unsupported", "medium": "extrapolated", "high": "extrapolated"}
    assert "needs 500" in cal["support_reason"]["low"]
    assert cal["tail"]["peaks"] >= 8
    big = calibrate(lengths)["calibration"]["support"]
    assert big == {"low": "extrapolated", "medium": "extrapolated", "high": "empirical"}  # 0.001 x 4,855 < 5


def test_scores_without_a_tail_are_unsupported_not_invented(hdfs: tuple[list[list[int]], dict[int, int]]) -> None:
    """A 0/1 score (was this session's template set seen before?) has no tail to fit."""
    sessions = hdfs[0]
    seen = {frozenset(s) for s in sessions[:3000]}
    scores = np.asarray([0.0 if frozenset(s) in seen else 1.0 for s in sessions[3000:3300]])
    assert fit_tail(scores) is None
    level = tail_threshold(scores, 0.001)
    assert level.support is Support.UNSUPPORTED and "without a tail" in level.reason
