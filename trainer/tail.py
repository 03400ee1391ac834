"""Thresholds beyond the data: peaks-over-threshold with a generalized Pareto tail (SPOT).

The threshold for a target false-positive rate q is the (1 − q) quantile of normal scores. With
n held-back scores the empirical quantile exists only for q ≥ 1/n; below that every level
collapses onto the largest score seen, and "low" and "medium" become the same operating point.
Extreme-value theory says how the tail continues: above a high initial threshold t the excesses
of almost any score distribution follow a generalized Pareto distribution (Pickands–Balkema–de
Haan), so (Siffer et al., "Anomaly Detection in Streams with Extreme Value Theory", KDD'17)

    z_q = t + σ/ξ · ((q·n / N_t)^(−ξ) − 1)        (ξ ≠ 0;  t − σ·ln(q·n / N_t) when ξ = 0)

with N_t the number of peaks (scores above t). SPOT fits (σ, ξ) by maximum likelihood; here the
probability-weighted-moments estimator (Hosking & Wallis 1987) is used instead: closed form,
numpy only, and less biased than maximum likelihood on the few dozen peaks small training sets
give.

Every estimate says how far the data supports it (`Support`):
- EMPIRICAL: at least `EMPIRICAL_MIN` held-back scores lie beyond the level; the plain quantile.
- EXTRAPOLATED: fewer, but the tail fit is usable and q is no more than `MAX_EXTRAPOLATION` times
  rarer than one score in n.
- UNSUPPORTED: the data cannot say where this level lies (too few scores, too few distinct peaks,
  or q far beyond 1/n). A threshold is still returned (the fit's extrapolation, or the largest
  score) so the bundle works, and the trainer says so plainly.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

EMPIRICAL_MIN = 5  # held-back scores beyond a level for the plain quantile to be trusted
MAX_EXTRAPOLATION = 20.0  # q may be at most this many times smaller than 1/n
MIN_PEAKS = 8  # distinct excesses needed to fit the tail
PEAK_SHARE = 0.1  # initial threshold at the (1 − PEAK_SHARE) quantile ...
MAX_PEAKS = 500  # ... with at most this many peaks (SPOT uses the 98 % quantile on large n)
SHAPE_BOUNDS = (-0.5, 0.9)  # ξ: beyond these the moment estimator is unreliable


class Support(enum.Enum):
    """How far the held-back data supports a threshold."""
    EMPIRICAL = "empirical"
    EXTRAPOLATED = "extrapolated"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class TailFit:
    """A generalized Pareto fit of the excesses over `initial` (None when no fit was possible)."""

    initial: float  # t
    peaks: int  # N_t
    n: int
    scale: float  # σ
    shape: float  # ξ

    def quantile(self, q: float) -> float:
        """The score exceeded with probability q (the POT quantile formula above)."""
        r = q * self.n / self.peaks
        if abs(self.shape) < 1e-6:
            return float(self.initial - self.scale * math.log(r))
        return float(self.initial + self.scale / self.shape * (r ** (-self.shape) - 1.0))

    def as_dict(self) -> dict[str, float | int]:
        """The fit as the manifest keeps it."""
        return {"initial": self.initial, "peaks": self.peaks, "n": self.n,
                "scale": round(self.scale, 6), "shape": round(self.shape, 4)}


@dataclass(frozen=True)
class TailThreshold:
    """A threshold for one target rate, with its support and the reason in words."""
    threshold: float
    support: Support
    reason: str  # one line a person can read; empty for EMPIRICAL


def fit_tail(scores: np.ndarray) -> TailFit | None:
    """POT fit of the upper tail of `scores`, or None when the data has no usable tail."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    s = s[np.isfinite(s)]
    n = len(s)
    if n < 2 * MIN_PEAKS:
        return None
    k = int(min(max(MIN_PEAKS, round(PEAK_SHARE * n)), MAX_PEAKS, n // 2))
    initial = float(s[n - k - 1])
    excess = s[s > initial] - initial
    if len(excess) < MIN_PEAKS or len(np.unique(excess)) < MIN_PEAKS // 2:
        return None  # ties: the "tail" is a handful of values, nothing to extrapolate from
    scale, shape = _pwm(excess)
    if not (scale > 0 and math.isfinite(scale) and math.isfinite(shape)):
        return None
    return TailFit(initial, len(excess), n, scale, shape)


def _pwm(excess: np.ndarray) -> tuple[float, float]:
    """Generalized Pareto (σ, ξ) by probability-weighted moments (Hosking & Wallis 1987)."""
    y = np.sort(excess)
    m = len(y)
    plotting = (np.arange(1, m + 1) - 0.35) / m
    a0 = float(y.mean())
    a1 = float(np.mean(y * (1.0 - plotting)))
    denom = a0 - 2.0 * a1
    if denom <= 0:
        return float("nan"), float("nan")
    shape = 2.0 - a0 / denom  # ξ (Hosking's k = −ξ)
    shape = min(max(shape, SHAPE_BOUNDS[0]), SHAPE_BOUNDS[1])
    scale = a0 * (1.0 - shape)  # mean excess = σ / (1 − ξ)
    return scale, shape


def empirical(scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold with at most `fpr` of `scores` strictly above it."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if len(s) == 0:
        return float("inf")
    k = int(np.floor(len(s) * (1.0 - fpr)))
    return float(s[min(max(k, 0), len(s) - 1)])


def tail_threshold(scores: np.ndarray, fpr: float, fit: TailFit | None = None) -> TailThreshold:
    """The threshold for target false-positive rate `fpr` on normal `scores`, with its support."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n == 0:
        return TailThreshold(float("inf"), Support.UNSUPPORTED, "no held-back scores")
    plain = empirical(s, fpr)
    beyond = fpr * n
    if beyond >= EMPIRICAL_MIN:
        return TailThreshold(plain, Support.EMPIRICAL, "")
    top = float(s.max())
    if fit is None:
        why = (f"{n} held-back scores without a tail to fit (too few, or few distinct values); "
               f"a {fpr:g} rate needs {math.ceil(EMPIRICAL_MIN / fpr):,}")
        return TailThreshold(max(plain, top) if beyond < 1 else plain, Support.UNSUPPORTED, why)
    z = max(fit.quantile(fpr), fit.initial)
    if beyond * MAX_EXTRAPOLATION < 1:
        why = (f"{n} held-back scores cannot support a {fpr:g} rate (extrapolating "
               f"{1 / beyond:.0f}x beyond the data; needs {math.ceil(1 / (fpr * MAX_EXTRAPOLATION)):,})")
        return TailThreshold(z, Support.UNSUPPORTED, why)
    return TailThreshold(z, Support.EXTRAPOLATED, f"generalized Pareto tail over {fit.peaks} peaks")
