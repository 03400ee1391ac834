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

The count survives a restart of the agent (`OngoingState`): with a `state_dir` it is saved on
the online miner's snapshot timer and at shutdown (`held_back.json`, plain JSON written
atomically, for this bundle's history only), and a pipeline started on the same `state_dir` goes
on counting from it: the first line after a restart is not "the first since the history" again, and the next
raise is the next doubling. A missing file starts from the history's count; an unreadable one
too, with a warning counted in `logdetect_state_unreadable_total{file="held_back.json"}`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from agent import metrics
from agent.atomic import write_atomic
from agent.save_timer import SaveTimer
from agent.types import Explanation, ExplanationKind

log = structlog.get_logger(__name__)

HELD_BACK_STATE = "held_back.json"  # in `state_dir`: the ongoing incident's count (`OngoingState`)
_STATE_VERSION = 1


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

    def position(self) -> tuple[int, float, int, bool]:
        """Where the count stands: (count, latest line's time, count last raised at, over)."""
        return self.count, self.last, self.raised_at, self.over

    def resume(self, count: int, last: float, raised_at: int, over: bool) -> None:
        """Go on from a `position` saved before a restart."""
        self.count, self.last, self.raised_at, self.over = count, last, raised_at, over

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


class OngoingState:
    """The ongoing incident's count in `state_dir` (see the module): `load` once at start,
    `save` with the online miner's snapshot (it writes only when the count moved). The file
    names the bundle and the history it counts for; a count saved for another bundle or
    history is not resumed."""

    def __init__(self, path: Path, bundle_id: str, interval_secs: float) -> None:
        self.path = path
        self.bundle_id = bundle_id
        self._saved: tuple[int, float, int, bool] | None = None
        self._timer = SaveTimer(interval_secs)

    def _history(self, ongoing: OngoingIncident) -> dict[str, Any]:
        h = ongoing.history
        return {"templates": sorted(h.templates), "lines": h.lines, "start": _finite(h.start),
                "end": _finite(h.end)}

    def load(self, ongoing: OngoingIncident) -> bool:
        """Resume `ongoing` from the saved count; True when it did. A missing file, or a count
        for another bundle or history, leaves it at the history's count; an unreadable file too,
        with a counted warning."""
        self._saved = ongoing.position()  # nothing to save until it moves
        if not self.path.is_file():
            return False
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if state.get("version") != _STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}, not {_STATE_VERSION}")
            if state.get("bundle") != self.bundle_id or state.get("history") != self._history(ongoing):
                log.info("held_back_state_not_this_bundle", path=str(self.path))
                return False
            count, raised_at = int(state["count"]), int(state["raised_at"])
            last, over = math.nan if state["last"] is None else float(state["last"]), state["over"]
            if not isinstance(over, bool) or count < ongoing.history.lines or not 0 <= raised_at <= count:
                raise ValueError("count out of range")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # a state we cannot read must not stop the agent: it counts from the history again
            log.warning("held_back_state_unreadable", path=str(self.path), error=str(exc))
            metrics.state_unreadable.labels(file=HELD_BACK_STATE).inc()
            return False
        ongoing.resume(count, last, raised_at, over)
        self._saved = ongoing.position()
        return True

    def maybe_save(self, ongoing: OngoingIncident, now: float) -> int:
        """`save` on the online miner's snapshot timer (`SaveTimer`); bytes written."""
        return self.save(ongoing) if self._timer.due(now) else 0

    def save(self, ongoing: OngoingIncident) -> int:
        """Write the count when it moved since the last save or load; bytes written."""
        position = ongoing.position()
        if position == self._saved:
            return 0
        count, last, raised_at, over = position
        data = json.dumps({"version": _STATE_VERSION, "bundle": self.bundle_id, "history": self._history(ongoing),
                           "count": count, "last": last if math.isfinite(last) else None,
                           "raised_at": raised_at, "over": over}).encode("utf-8")
        write_atomic(self.path, data)
        self._saved = position
        return len(data)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
