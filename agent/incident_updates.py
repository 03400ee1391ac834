"""When an incident event goes to the sink: the update contract (`IncidentGrouper` applies it).

A reader of the sink (a pager, a ticket, a dashboard) wants an incident's events to mean
something: one `open`, an `update` only when something a person would act on changed, and one
`resolved` carrying the true totals, not a resolve and a reopen every time a recurring problem
pauses. All times are the log's own clock (`IncidentGrouper.clock`).

- `open`: the incident's first event, always (also when held weak anomalies open it together).
- `update`, when one of these changed since the incident's last event (`notable`):
  a template joined, a new explanation kind came (a model newly agreed, a new fact), the first
  DANGER anomaly came, or its anomalous lines, all its lines or its entities reached twice what
  the last event said (the second host is news, the 600th is not). Rate-limited with a backoff:
  the n-th update since the incident was opened (or came back) comes no sooner than
  `update_every_secs` × 2^(n-1) after its last event (1, 2, 4, 8, … minutes), at most
  `update_backoff_max_secs` apart. A change that waits is told
  once the wait is over: by the incident's next anomaly, else by the first sweep of the log's
  clock after it (another anomaly's) or a live tick (`IncidentGrouper._wake`), else by its
  resolve. Two changes go out at once: the severity rising above any told before (at most three
  times: LOW → MEDIUM → HIGH → CRITICAL), and the incident coming back after it was told resolved
  (an anomaly at the log's clock joined it again).
- `resolved`, once the incident has gone quiet (the grouper's rule) and stayed so: an incident
  that came back after quiet gaps (resolved, then joined again: its episodes) is told resolved
  only once it has been quiet `resolve_hold` (`resolve_hold_factor` × its longest gap, at most
  `resolve_hold_max_secs`): a problem that keeps recurring is not resolved and reopened at every
  pause (flap damping). Coming back within the hold is no event at all. The resolved event
  carries the totals, so each incident's last event is its final state; a late line (behind the
  log's clock, in the incident's past) that joins an incident told resolved is no reopen: the
  incident is told resolved again, with the corrected totals, once it settles, only when
  something it says changed, and at the update backoff's pace (a live run ticks every second:
  each late line would otherwise be a resolve of its own). `close()` tells every incident still
  open or held resolved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from agent.types import Incident, IncidentSeverity

_MAX_DOUBLINGS = 40  # (2^40 × a minute is beyond any log's span: the cap applies long before)


class Told:
    """What the sink was last told of one incident, and when (the log's clock)."""

    __slots__ = ("anomalies", "at", "danger", "entities", "event", "kinds", "lines", "next_at", "release_at",
                 "severity", "templates", "updates")

    def __init__(self) -> None:
        self.event: Incident | None = None  # the last event emitted (None: not opened yet)
        self.at = -math.inf  # when (the log's clock)
        self.next_at = -math.inf  # no update before this (`backoff`), but for a rising severity
        self.updates = 0  # updates since it was opened or came back (the backoff's step)
        self.anomalies = 0
        self.lines = 0
        self.templates = 0
        self.entities = 0
        self.kinds = 0
        self.danger = False
        self.severity = IncidentSeverity.LOW  # the highest severity ever told
        self.release_at = math.inf  # when its held resolve is told (while held)

    def remember(self, event: Incident, at: float, wait: float, templates: int, entities: int, kinds: int,
                 danger: bool) -> None:
        """Record what `event` (just emitted at `at`) told; the next update waits `wait` after it."""
        self.event = event
        self.at = at
        self.next_at = at + wait
        self.anomalies = event.anomaly_count
        self.lines = event.line_count
        self.templates = templates
        self.entities = entities
        self.kinds = kinds
        self.danger = danger
        self.severity = max(self.severity, event.severity)


def backoff(updates: int, every: float, cap: float) -> float:
    """Seconds (log time) the next update waits after the last event, `updates` updates told
    since the incident opened or came back: `every` × 2^updates, at most `cap`."""
    return min(every * 2.0 ** min(updates, _MAX_DOUBLINGS), cap)


def resolve_hold(gap: float, factor: float, cap: float) -> float:
    """How long (log time) an incident that came back after quiet gaps of at most `gap` must be
    quiet after its last line before it is told resolved: `factor` × `gap`, at most `cap` (0 for
    one that never came back: its quiet period alone decides)."""
    return min(factor * gap, cap) if gap > 0 else 0.0


def longest_gap(episodes: Sequence[Sequence[float]]) -> float:
    """The longest quiet gap between an incident's episodes ([start, end] in time order)."""
    return max((later[0] - earlier[1] for earlier, later in pairwise(episodes)), default=0.0)


def notable(told: Told, anomalies: int, lines: int, templates: int, entities: int, kinds: int,
            danger: bool) -> bool:
    """Whether an incident with these counts says something its last event did not: a template or
    an explanation kind joined, the first DANGER came, or its anomalies, lines or entities
    doubled."""
    return (templates > told.templates or entities >= 2 * told.entities or kinds > told.kinds
            or (danger and not told.danger)
            or anomalies >= 2 * told.anomalies or lines >= 2 * told.lines)
