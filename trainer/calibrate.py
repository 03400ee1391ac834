"""Thresholds from held-back normal data: one implementation for every model.

A threshold for a target false-positive rate is the (1 − fpr) quantile of the scores the
model gives to normal data it was not trained on; where the held-back data is too small for
that quantile, the generalized Pareto tail fitted to it (`trainer/tail.py`) extrapolates, and
`calibration.support` says per sensitivity whether the data supports the level.
`--sensitivity low|medium|high` picks one of three points on that curve; the whole curve is
kept in the bundle for other choices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.tail import fit_tail, tail_threshold

# sensitivity -> target false-positive rate on normal data. Per-line rates: at 50k lines a day,
# 0.001 is ~50 flagged normal lines before grouping, which is what an operator will tolerate.
DEFAULT_TARGETS = {"low": 0.0001, "medium": 0.001, "high": 0.01}
CURVE_FPRS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def threshold_at(scores: np.ndarray, fpr: float) -> float:
    """The threshold for `fpr` on normal `scores`: empirical where the data reaches, the fitted
    tail beyond."""
    s = np.asarray(scores, dtype=np.float64)
    return tail_threshold(s, fpr, fit_tail(s)).threshold


def level_targets(medium_fpr: float | None = None) -> dict[str, float]:
    """Target false-positive rate per sensitivity: low 10x stricter than medium, high 10x looser."""
    if medium_fpr is None:
        return dict(DEFAULT_TARGETS)
    return {"low": medium_fpr / 10, "medium": medium_fpr, "high": min(medium_fpr * 10, 0.5)}


def calibrate(normal_scores: np.ndarray, medium_fpr: float | None = None) -> dict[str, Any]:
    """`thresholds` per sensitivity and the `calibration` curve, for a manifest model section."""
    targets = level_targets(medium_fpr)
    scores = np.asarray(normal_scores, dtype=np.float64)
    fit = fit_tail(scores)
    levels = {name: tail_threshold(scores, fpr, fit) for name, fpr in targets.items()}
    thresholds: dict[str, float] = {}
    step = _smallest_step(scores)
    for name in sorted(targets, key=lambda k: -targets[k]):  # loosest first
        # A stricter level is stricter: where the data cannot tell two levels apart (ties at the
        # largest score, no tail to fit) it sits one smallest score step above the looser one.
        looser = max(thresholds.values(), default=-np.inf)
        t = levels[name].threshold
        thresholds[name] = t if t > looser or not np.isfinite(looser) else looser + step
    return {
        "thresholds": {name: thresholds[name] for name in targets},
        "target_fpr": targets,
        "calibration": {
            "support": {name: t.support.value for name, t in levels.items()},
            "support_reason": {name: t.reason for name, t in levels.items() if t.reason},
            "tail": fit.as_dict() if fit is not None else None,
            "fpr": list(CURVE_FPRS),
            "threshold": [tail_threshold(scores, f, fit).threshold for f in CURVE_FPRS],
            "n_normal": len(scores),
            "score_mean": float(scores.mean()) if len(scores) else 0.0,
            "score_std": float(scores.std()) if len(scores) else 0.0,
        },
    }


def _smallest_step(scores: np.ndarray) -> float:
    values = np.unique(scores[np.isfinite(scores)])
    gaps = np.diff(values)
    gaps = gaps[gaps > 0]
    return float(gaps.min()) if len(gaps) else 1.0
