"""Detection metrics, one implementation for every `eval` dataset.

Rows have the fixed shape of `logdetect eval --json`:
`{"level", "detector", "precision", "recall", "f1", "tp", "fp", "fn", "tn"}`; datasets may add
fields (e.g. `precision_adjusted`, `f1_adjusted`), never rename these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Row:
    """One result row of `logdetect eval --json` (fields may be added, never renamed)."""

    level: str  # "line" | "window" | "session"
    detector: str  # "ensemble" or a detector name
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    tn: int
    precision_adjusted: float | None = None
    f1_adjusted: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON, leaving out the fields a dataset does not report."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    """True positives, false positives, false negatives and true negatives."""
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    return int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum()), int((~t & ~p).sum())


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def f1_of(p: float, r: float) -> float:
    """Harmonic mean of precision and recall (0 when both are 0)."""
    return _ratio(2 * p * r, p + r)


def adjusted_precision(tpr: float, fpr: float, prevalence: float) -> float:
    """Precision at a real anomaly rate p: TPR·p / (TPR·p + FPR·(1−p))."""
    return _ratio(tpr * prevalence, tpr * prevalence + fpr * (1 - prevalence))


def row(
    level: str, detector: str, y_true: np.ndarray, y_pred: np.ndarray, prevalence: float | None = None
) -> Row:
    """A result row from labels and predictions, with adjusted precision when a prevalence is given."""
    tp, fp, fn, tn = confusion(y_true, y_pred)
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    pa = fa = None
    if prevalence is not None:
        pa = adjusted_precision(r, _ratio(fp, fp + tn), prevalence)
        fa = f1_of(pa, r)
    return Row(level, detector, p, r, f1_of(p, r), tp, fp, fn, tn, pa, fa)


def format_table(rows: list[Row], reference: dict[str, float] | None = None) -> str:
    """A plain-text table of rows (and published reference F1s, when given)."""
    adjusted = any(r.f1_adjusted is not None for r in rows)
    head = f"{'level':8} {'detector':28} {'P':>6} {'R':>6} {'F1':>6}"
    head += f" {'P_adj':>6} {'F1_adj':>6}" if adjusted else ""
    head += f" {'tp':>6} {'fp':>6} {'fn':>6} {'tn':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        s = f"{r.level:8} {r.detector:28} {r.precision:6.3f} {r.recall:6.3f} {r.f1:6.3f}"
        if adjusted:
            s += f" {r.precision_adjusted or 0:6.3f} {r.f1_adjusted or 0:6.3f}"
        s += f" {r.tp:6d} {r.fp:6d} {r.fn:6d} {r.tn:7d}"
        lines.append(s)
    if reference:
        lines.append("")
        lines.append("published F1 for scale (not measured here): " + ", ".join(
            f"{k} {v:.3f}" for k, v in reference.items()))
    return "\n".join(lines)
