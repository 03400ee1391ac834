"""The operator's text view: seed 002's scan summary and its ANOMALY DETECTED blocks.

`render_summary` prints what `logdetect scan` shows a human:

    Scanned 145,892 log lines
    Found 23 anomalies in 3 incident groups

    Incident 1 (03:42:15 - 03:47:22): Database connection pool exhausted [CRITICAL]
      └─ 15 anomalous lines, started with "Connection timeout..."

followed, for each serious incident, by the block of its leading anomaly (the most explained) with
its explanations and the related anomalies of the same incident. `render_anomaly` is that block
alone (watch mode). With `color` the output carries ANSI colours (the caller decides: a terminal
yes, a pipe no); without, it is plain text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from agent.explain_models import raised_by
from agent.lines import actor_of
from agent.types import Anomaly, Incident, IncidentSeverity, SessionVerdict
from agent.wording import burst_more, clip, plural

MAX_INCIDENTS_SHOWN = 20
MAX_BLOCKS = 5  # incidents (the most severe) shown with their full ANOMALY DETECTED block
MAX_RELATED = 3
MAX_SESSIONS = 5  # session verdicts named in the summary, each with what raised it
_RULE = "━" * 30

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_SEVERITY_COLOR = {
    IncidentSeverity.CRITICAL: "\x1b[1;97;41m",  # bold white on red
    IncidentSeverity.HIGH: "\x1b[1;31m",
    IncidentSeverity.MEDIUM: "\x1b[1;33m",
    IncidentSeverity.LOW: "\x1b[36m",
}
_RED = "\x1b[1;31m"
_YELLOW = "\x1b[33m"


class _Paint:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text


def _time(t: float, with_date: bool, with_year: bool = True) -> str:
    """UTC time of day, with the date when asked; without the year when the log never said it
    (syslog lines: "Jun 14 15:16:01", as the line itself writes it)."""
    if not math.isfinite(t):
        return "??:??:??"
    try:
        dt = datetime.fromtimestamp(t, UTC)
    except (OverflowError, OSError, ValueError):
        return "??:??:??"
    if not with_date:
        return dt.strftime("%H:%M:%S")
    return dt.strftime("%Y-%m-%d %H:%M:%S" if with_year else "%b %d %H:%M:%S")


def _printable(text: str) -> str:
    """Control characters (binary input) escaped, so they never reach the terminal raw."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else "\ufffd" for c in text)


def _quote(text: str, limit: int = 60) -> str:
    return f'"{clip(_printable(" ".join(text.split())), limit, "...")}"'


def _day(t: float) -> str:
    return _time(t, True)[:10]


def render_anomaly(
    anomaly: Anomaly, color: bool, related: Sequence[Anomaly] = (), year_known: bool = True
) -> str:
    """The ANOMALY DETECTED block for one anomaly (and up to 3 related ones). `year_known` False:
    the log's lines carry no year, so dates are shown without one."""
    paint = _Paint(color)
    line = anomaly.line
    stamp = _time(line.time, True, year_known or line.time_from_arrival)
    if line.time_from_arrival:
        stamp += " (arrival time: the line carries no timestamp)"
    raised = raised_by(anomaly.scores, anomaly.explanations)
    out = [
        paint("ANOMALY DETECTED", _RED) + f"  {anomaly.verdict.value.upper()} ({raised})",
        _RULE,
        f"Timestamp: {stamp}",
        f"Entity:    {_printable(line.line.entity)}",
        f"Log Line:  {_quote(line.line.message, 120)}",
    ]
    actor = actor_of(line.line)
    if actor and actor != line.line.entity:  # the entity is the stream: say which service spoke
        out.insert(4, f"Component: {_printable(actor)}")
    if anomaly.explanations:
        out += ["", "Anomaly Factors:"]
        for e in anomaly.explanations:
            first, *rest = e.text.splitlines() or [e.kind.value]
            head, sep, tail = first.partition(":")
            shown = paint(head + sep, _BOLD) + tail if sep else first
            out.append(f"  • {shown}")
            out.extend(f"      {r}" for r in rest)
    else:
        out += ["", "Anomaly Factors:", f"  • MODEL SCORE: {raised}"]
    if related:
        out += ["", "Related Anomalies (same incident):"]
        for r in related[:MAX_RELATED]:
            # the date too when it is not this line's day (an incident of a recurring line spans months)
            other_day = _day(r.line.time) != _day(line.time)
            when = _time(r.line.time, other_day, year_known or r.line.time_from_arrival)
            out.append(f"  • {when} - {_quote(r.line.line.message)}")
    return "\n".join(out)


_ONLY_NEW = "NEW TEMPLATE: Never seen before in training data"  # the title's "Unknown template" says it


def _first_fact(anomaly: Anomaly) -> str:
    """The first line of an anomaly's first explanation that says more than its incident's title
    (a bare NEW TEMPLATE does not) and that raised it (a witness, outside the vote, did not)."""
    for e in anomaly.explanations:
        first = e.text.splitlines()[0] if e.text else ""
        if first and first != _ONLY_NEW and dict(e.facts).get("in_vote") is not False:
            return first
    return ""


def _related(leading: Anomaly, members: Sequence[Anomaly]) -> list[Anomaly]:
    """Up to `MAX_RELATED` other members to show under the leading one: the first line of each
    other template first (the story of the incident: a timeout, then the failover, then the
    pool), then the leading template's other lines; in log order."""
    seen = {leading.line.template_id}
    first: list[Anomaly] = []
    again: list[Anomaly] = []
    for a in members:
        if a is leading:
            continue
        (again if a.line.template_id in seen else first).append(a)
        seen.add(a.line.template_id)
    picked = {id(a) for a in (first + again)[:MAX_RELATED]}
    return [a for a in members if id(a) in picked]


def render_summary(
    lines_scanned: int,
    anomalies: Sequence[Anomaly],
    incidents: Sequence[Incident],
    color: bool,
    year_known: bool = True,
    anomalous_lines: int | None = None,
) -> str:
    """The scan summary, then each incident's leading anomaly explained (see `render_anomaly`
    for `year_known`).

    `anomalous_lines` is every line judged anomalous (the pipeline's count); `anomalies` are the
    emitted events, which leave out a storm's repeats counted in their incidents. The headline
    counts lines, so it agrees with the incidents' own counts."""
    paint = _Paint(color)
    # The latest state of each incident (callers may pass every open/update/resolved event).
    latest: dict[str, Incident] = {}
    for inc in incidents:
        latest[inc.incident_id] = inc
    ordered = sorted(latest.values(), key=lambda i: i.first_seen if math.isfinite(i.first_seen) else 0.0)
    groups = len(ordered)
    found = len(anomalies) if anomalous_lines is None else anomalous_lines
    isolated = sum(1 for a in anomalies if a.incident_id is None)
    headline = (f"Found {found:,} anomalous line{'s' if found != 1 else ''} "
                f"in {groups:,} incident group{'s' if groups != 1 else ''}")
    if isolated and groups:
        headline += f" ({isolated:,} isolated, in no incident)"
    out = [paint(f"Scanned {lines_scanned:,} log line{'s' if lines_scanned != 1 else ''}", _BOLD), headline]
    if not ordered:
        if anomalies:
            out += ["", *(render_anomaly(a, color, (), year_known) for a in anomalies[:MAX_INCIDENTS_SHOWN])]
        return "\n".join(out) + "\n"

    times = [t for i in ordered for t in (i.first_seen, i.last_seen) if math.isfinite(t)]
    multi_day = bool(times) and _day(min(times)) != _day(max(times))
    by_incident: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        if a.incident_id is not None:
            by_incident.setdefault(a.incident_id, []).append(a)

    # Most severe first, then in time order; the rest are summarised in one line.
    shown = sorted(ordered, key=lambda i: -int(i.severity))[:MAX_INCIDENTS_SHOWN]
    shown_ids = {i.incident_id for i in shown}
    # Full blocks for the most severe incidents; LOW ones (a model's lone opinion, weak facts)
    # get one only when nothing is worse.
    biggest = sorted(shown, key=lambda i: (-int(i.severity), -i.anomaly_count))
    serious = [i for i in biggest if i.severity > IncidentSeverity.LOW]
    biggest = serious[:MAX_BLOCKS] if serious else biggest[:3]
    block_ids = {i.incident_id for i in biggest}
    numbered = [(n, i) for n, i in enumerate(ordered, 1) if i.incident_id in shown_ids]
    for n, inc in numbered:
        start = _time(inc.first_seen, multi_day, year_known)
        span = start if inc.last_seen - inc.first_seen < 1 else f"{start} - {_time(inc.last_seen, False)}"
        if multi_day and inc.last_seen - inc.first_seen >= 1 and _day(inc.first_seen) != _day(inc.last_seen):
            span = f"{start} - {_time(inc.last_seen, True, year_known)}"
        severity = paint(f"[{inc.severity.name}]", _SEVERITY_COLOR[inc.severity])
        out += ["", f"{paint(f'Incident {n}', _BOLD)} ({span}): {_printable(inc.title)} {severity}"]
        first = inc.first_line
        members = by_incident.get(inc.incident_id, [])
        if members:
            first = members[0].line.line.message
        count = inc.anomaly_count
        more = burst_more(count, inc.line_count)
        if count == 1:
            out.append(f"  └─ 1 anomalous line{more}: {_quote(first)}")
        else:
            entities = inc.entity_count
            # The incident lists actors: a line's entity, or its component when the entity is only
            # the stream (the block below then says "Entity: Linux.log", "Component: kernel").
            streams = bool(members) and all(m.line.line.entity == m.line.line.source for m in members)
            where = f" across {entities:,} {'components' if streams else 'entities'}" if entities > 1 else ""
            out.append(f"  └─ {count:,} anomalous lines{where}{more}, started with {_quote(first, 40)}")
        if inc.explanation_kinds:
            # in words, as the factors below are headed ("new template, unusual time", not NEW_TEMPLATE)
            kinds = ", ".join(k.value.replace("_", " ").lower() for k in inc.explanation_kinds)
            out.append(paint(f"     why: {kinds}", _DIM))
        # The most explained member leads (seed 002's block shows why), then the top score.
        leading = max(members, key=lambda a: (len(a.explanations), a.score, -a.line.time)) if members else None
        if leading is not None and inc.incident_id not in block_ids:
            # No block below: what raised its leading line, in one line, so a LOW incident says why.
            said = _first_fact(leading)
            if said:
                out.append(f"          {clip(_printable(said), 220)}")
        if leading is not None and inc.incident_id in block_ids:
            related = _related(leading, members)
            block = render_anomaly(leading, color, related, year_known)
            out += ["", *("    " + row if row else "" for row in block.splitlines())]
    hidden = len(ordered) - len(numbered)
    if hidden > 0:
        out += [
            "",
            paint(f"... and {hidden:,} more incident{'s' if hidden != 1 else ''} (lower severity)", _YELLOW),
        ]
    return "\n".join(out) + "\n"


def session_reason(v: SessionVerdict) -> str:
    """What raised a session verdict: the first line of its first explanation (`explain_session`
    puts the voters' first), or which detectors fired when it has none."""
    return v.explanations[0].text.splitlines()[0] if v.explanations else raised_by(v.scores)


def render_sessions(sessions: Sequence[SessionVerdict], year_known: bool = True) -> str:
    """The sessions judged anomalous as a whole, after the summary: each entity, its length and
    end, and what raised it (the first line of its first explanation: a voter's, `explain_session`
    puts the witnesses last), not a bare count. Empty without sessions."""
    if not sessions:
        return ""
    out = ["", f"{plural(len(sessions), 'session')} judged anomalous as a whole (each in --format json):"]
    for v in sessions[:MAX_SESSIONS]:
        why = session_reason(v)
        end = _time(v.last_seen, True, year_known)
        out.append(f"  • {_printable(v.entity)} ({plural(len(v.tokens), 'line')}, ended {end}): {clip(why, 240)}")
    if len(sessions) > MAX_SESSIONS:
        out.append(f"  … and {len(sessions) - MAX_SESSIONS:,} more")
    return "\n".join(out) + "\n"
