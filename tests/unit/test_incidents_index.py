"""The incident index changes nothing: the grouper assigns every anomaly of a real stream to the
same incident, emits the same events and decides the same repeats as a scan of every open
incident (the matcher before the index, kept here as the reference), and the sweep for quiet
incidents off the last-seen heap resolves the same ones in the same order as a scan."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from agent.incidents import IncidentConfig, IncidentGrouper, _Open
from agent.types import (
    Anomaly,
    Explanation,
    ExplanationKind,
    Incident,
    Level,
    ParsedLine,
    TemplatedLine,
    Verdict,
)

_VAR = re.compile(r"\S*\d\S*")
_STRONG = (Explanation(ExplanationKind.NEW_TEMPLATE, "NEW TEMPLATE"),)
_WEAK = (Explanation(ExplanationKind.UNUSUAL_TIME, "UNUSUAL TIME"),)


class ScanGrouper(IncidentGrouper):
    """The matcher before the index: every open incident is a candidate, in open order, and
    the stalest and the quiet ones are found by a scan."""

    def _candidates(self, anomaly: Anomaly, words: frozenset[str]) -> Sequence[_Open]:
        return list(self._open.values())

    def _stalest(self) -> _Open:
        return min(self._open.values(), key=lambda i: i.last_seen)

    def _quiet(self, now: float) -> list[_Open]:
        """The quiet incidents by a scan of every open one (the sweep before the heap)."""
        quiet = [i for i in self._open.values() if self._is_stale(i, now)]
        return sorted(quiet, key=lambda i: i.first_seen)


def bgl_anomalies(path: Path) -> list[Anomaly]:
    """Every BGL line as an anomaly: its node as entity, its digit-bearing tokens as parameters
    (node names, addresses), its first sighting new; alert lines DANGER, the rest weak
    (held, isolated or joined), a few with no timestamp-ordered time (lines out of order)."""
    out: list[Anomaly] = []
    ids: dict[str, int] = {}
    for n, raw in enumerate(path.read_text(errors="replace").splitlines()):
        parts = raw.split(" ", 9)
        if len(parts) < 10:
            continue
        label, t, node, message = parts[0], float(parts[1]), parts[3], parts[9]
        template = _VAR.sub("<*>", message)
        params = tuple(_VAR.findall(message))
        new = template not in ids
        tid = ids.setdefault(template, len(ids) + 1)
        if n % 97 == 0:
            t -= 400.0  # a late line
        entity = "bgl" if n % 5 == 0 else node  # some lines only name their stream
        parsed = ParsedLine(raw, message, t, Level.FATAL if label != "-" else Level.INFO, entity, "bgl", n)
        line = TemplatedLine(parsed, tid, template, params, 0 if new else tid, new, t)
        alert = label != "-"
        out.append(Anomaly(line, 2.0, Verdict.DANGER if alert else Verdict.WATCH, (),
                           _STRONG if alert or new else _WEAK))
    return out


def replay(grouper: IncidentGrouper, stream: list[Anomaly]) -> tuple[list[object], list[Incident]]:
    """Each anomaly's incident id and emit decision, the decided events in order, every event."""
    trace: list[object] = []
    events: list[Incident] = []
    for k, a in enumerate(stream):
        if k % 7 == 0:
            trace.append(grouper.should_emit(a))  # the prediction before add
        iid, ev = grouper.add(a)
        trace.append((iid, grouper.should_emit(a)))
        events.extend(ev)
        if k % 1000 == 0:
            events.extend(grouper.tick(a.line.time))
    events.extend(grouper.close())
    trace.append([(a.line.line.line_no, iid) for a, iid in grouper.drain()])
    trace.append((grouper.suppressed, grouper.isolated))
    return trace, events


@pytest.mark.parametrize(
    "config",
    [
        IncidentConfig(),
        IncidentConfig(gap_secs=30.0, quiet_secs=3600.0, max_open=40, hold_weak=False),
        IncidentConfig(gap_secs=120.0, quiet_secs=86400.0, related_word_overlap=0.6, max_values=5),
    ],
    ids=["default", "small-open-cap", "long-quiet"],
)
def test_indexed_matcher_groups_bgl_like_the_scan(data_dir: Path, config: IncidentConfig) -> None:
    """BGL_14k through the indexed and the scanning matcher: identical ids, decisions, events."""
    stream = bgl_anomalies(data_dir / "bgl" / "BGL_14k.log")
    indexed_trace, indexed_events = replay(IncidentGrouper(config), stream)
    scan_trace, scan_events = replay(ScanGrouper(config), stream)
    assert indexed_trace == scan_trace
    assert indexed_events == scan_events
    opened = {iid for iid, _ in (x for x in indexed_trace if isinstance(x, tuple) and len(x) == 2)
              if isinstance(iid, str)}
    assert len(opened) > 20  # a real grouping: many incidents, not one


def test_indexed_matcher_with_training_companions(data_dir: Path) -> None:
    """Templates related by the profile's transitions are found through the index as well."""
    stream = bgl_anomalies(data_dir / "bgl" / "BGL_14k.log")
    tids = sorted({a.line.template_id for a in stream})
    profile = {"templates": {str(t): {"next": {str(u): 0.5 for u in tids[i + 1:i + 4]}}
                             for i, t in enumerate(tids)}}
    config = replace(IncidentConfig(), gap_secs=60.0)
    assert replay(IncidentGrouper(config, profile), stream) == replay(ScanGrouper(config, profile), stream)
