"""Thresholds from held-back normal data: one implementation for every model.

A threshold for a target false-positive rate is the (1 − fpr) quantile of the scores the
model gives to normal data it was not trained on. `--sensitivity low|medium|high` picks one of
three points on that curve; the whole curve is kept in the bundle for other choices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# sensitivity -> target false-positive rate on normal data. Per-line rates: at 50k lines a day,
# 0.001 is ~50 flagged normal lines before grouping, which is what an operator will tolerate.
DEFAULT_TARGETS = {"low": 0.0001, "medium": 0.001, "high": 0.01}
CURVE_FPRS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def threshold_at(scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold with at most `fpr` of `scores` strictly above it."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if len(s) == 0:
        return float("inf")
    k = int(np.floor(len(s) * (1.0 - fpr)))
    k = min(max(k, 0), len(s) - 1)
    return float(s[k])


def calibrate(normal_scores: np.ndarray, medium_fpr: float | None = None) -> dict[str, Any]:
    """`thresholds` per sensitivity and the `calibration` curve, for a manifest model section."""
    targets = dict(DEFAULT_TARGETS)
    if medium_fpr is not None:
        targets = {"low": medium_fpr / 10, "medium": medium_fpr, "high": min(medium_fpr * 10, 0.5)}
    scores = np.asarray(normal_scores, dtype=np.float64)
    return {
        "thresholds": {name: threshold_at(scores, fpr) for name, fpr in targets.items()},
        "target_fpr": targets,
        "calibration": {
            "fpr": list(CURVE_FPRS),
            "threshold": [threshold_at(scores, f) for f in CURVE_FPRS],
            "n_normal": len(scores),
            "score_mean": float(scores.mean()) if len(scores) else 0.0,
            "score_std": float(scores.std()) if len(scores) else 0.0,
        },
    }
