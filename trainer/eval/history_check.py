"""Incidents found in a labelled training history against its real alert spans.

`train` lists the suspect periods it set aside without looking at labels; on a labelled history
(BGL) this says how good that list is: how many real alert spans it covers, and how many listed
periods hold no alert at all (normal periods held back for nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainer.history import HistoryReport


@dataclass(frozen=True)
class HistoryCheck:
    """How the listed suspect periods match the labelled alert spans."""

    alert_spans: int
    alert_spans_found: int
    alert_lines: int
    alert_lines_in_found_spans: int
    listed_periods: int
    listed_periods_normal: int

    def note(self) -> str:
        """The closing note of `eval bgl --contaminated`."""
        return (f"incidents found in the training history: {self.listed_periods} suspect period(s) listed, "
                f"{self.listed_periods_normal} of them held no alert; they cover {self.alert_spans_found} of "
                f"{self.alert_spans} real alert spans ({self.alert_lines_in_found_spans:,} of "
                f"{self.alert_lines:,} alert lines)")

    def to_json(self) -> dict[str, int]:
        """The figures for --json."""
        return {k: int(v) for k, v in self.__dict__.items()}


def _spans(intervals: Sequence[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def compare(report: HistoryReport, times: np.ndarray, alerts: np.ndarray, gap: float = 3600.0) -> HistoryCheck:
    """`times` and `alerts` are the training lines' timestamps and labels (True = alert); alert
    spans are runs of alert lines split by `gap` seconds of quiet, as the report's periods are."""
    periods = [(p.start, p.end) for p in report.periods]
    alert_times = np.sort(times[alerts])
    spans = _spans([(float(t), float(t)) for t in alert_times], gap)

    def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[1] and b[0] <= a[1]

    found = [s for s in spans if any(overlaps(s, p) for p in periods)]
    lines_found = sum(int(((alert_times >= s[0]) & (alert_times <= s[1])).sum()) for s in found)
    normal = sum(1 for p in periods if not ((alert_times >= p[0]) & (alert_times <= p[1])).any())
    return HistoryCheck(len(spans), len(found), len(alert_times), lines_found, len(periods), normal)
