"""The suspected incident a history ends in, going on in the scanned lines: one incident, loud once.

The history check (`trainer/history.py`) holds back the templates of a suspected incident so the
novelty rule flags them. When the history *ends* in that incident (its last suspect period has no
hour of quiet before the history's last line: `profile.json` `held_back_ongoing`), the lines that
follow are very likely the same incident going on: Hadoop_2k's network outage began in the last
1.5 minutes of its training half (142 held-back lines of 8 templates) and fills the scanned half
(957 lines of 4 of those templates). Every one of those lines is a line the history already had,
of an incident the history already had; flagging each one is 957 alerts for one outage.

One incident, loud once, as a burst is (`Explainer.burst_alert`): the ongoing incident's lines
are counted together, from the history's count, per incident and not per template (the history
held its templates back together, as one incident). A line of one of its templates raises on its
own when it is the first since the history ended (the incident is still going on) and when it
brings the count to `escalation` times the count last raised at; the others are counted in the
incident that holds the raised ones (`IncidentGrouper.count_burst_line`), which lists their
templates and says how many lines the incident reached. Once no line of it comes for `gap_secs`
(an episode's quiet hour, `agent/episodes.py`) the incident is over, and its templates are judged
as any held-back template again (each line raises). Decided once per line in log order, so a scan
and a live replay raise the same lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.types import Explanation, ExplanationKind


@dataclass(frozen=True)
class OngoingHistory:
    """What the profile says of the suspected incident the history ends in."""

    templates: frozenset[int]
    lines: int  # its held-back lines in the history
    start: float
    end: float

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> OngoingHistory | None:
        """From `profile.json` `held_back_ongoing` (None when the history ends quiet)."""
        found = profile.get("held_back_ongoing")
        if not found:
            return None
        templates = frozenset(int(t) for t in found.get("templates") or {})
        if not templates:
            return None
        return cls(templates, int(found.get("lines") or 0), float(found.get("start", math.nan)),
                   float(found.get("end", math.nan)))


class OngoingIncident:
    """The count of the history's last suspected incident as its lines keep coming (see the module)."""

    def __init__(self, history: OngoingHistory, gap_secs: float, escalation: float) -> None:
        self.history = history
        self.templates = history.templates
        self.gap_secs = gap_secs
        self.escalation = escalation
        self.count = history.lines  # lines of the incident so far, the history's included
        self.last = history.end  # the latest of its lines (the log's clock)
        self.raised_at = 0  # the count last raised at (0: none since the history ended)
        self.over = not math.isfinite(history.end)

    def judge(self, t: float) -> tuple[bool, int] | None:
        """Count a line of one of its templates at time `t`: (whether it raises on its own, the
        incident's count with it), or None when the incident is over (the line is judged as any
        held-back line)."""
        if self.over or not math.isfinite(t):
            return None
        if abs(t - self.last) > self.gap_secs:  # an hour of quiet (either way): the incident ended
            self.over = True
            return None
        self.last = max(self.last, t)
        self.count += 1
        if self.raised_at == 0 or self.count >= self.escalation * self.raised_at:
            self.raised_at = self.count
            return True, self.count
        return False, self.count

    def fact(self, count: int) -> Explanation:
        """What a line raised at `count` says: the incident the history ends in is still going on,
        and how big it has got."""
        h = self.history
        since = datetime.fromtimestamp(h.start, UTC).strftime("%Y-%m-%d %H:%M:%S") if math.isfinite(h.start) else "?"
        return Explanation(
            ExplanationKind.BURST,
            f"STILL GOING ON: the suspected incident your history ends in ({h.lines:,} held-back lines since "
            f"{since} UTC) goes on: {count:,} lines so far, {count - h.lines:,} of them since the history ended",
            (("held_back_ongoing", True), ("count", count), ("history_lines", h.lines),
             ("since", h.start)),
        )
