"""A restart, told by its lines: many programs announcing that they start, within minutes.

When a host boots, its programs each log that they start ("syslogd startup succeeded", "sdpd
v1.5 started", "rpc.statd Version 1.0.6 Starting", "Initializing random number generator"),
within seconds of each other. A person reading those lines says "the host restarted", not "new
messages from 14 programs". The evidence is read from the lines alone, with no list of programs
or systems (it must work on a user's own logs): a line of a template never seen in training
whose words announce a start (`announces_start`: start, started, starting, startup, restart,
initializing, booting …), from at least `restart_programs` different actors (programs on a
host's log, components, nodes) within `restart_secs` of each other. An incident holding such a
burst (`IncidentGrouper`: a reboot's never-seen lines on one stream, in one episode, are one
incident) is titled as a restart (`restart_title`); its lines, counts and severity are what they
were.
"""

from __future__ import annotations

import math
import re

from agent.text_memo import remember
from agent.wording import plural

# Words that say a program starts (English, the language of log messages; no program names).
_START = re.compile(
    r"\b(?:re)?start(?:s|ed|ing|up)?\b|\bstartup\b|\binitiali[sz](?:e|es|ed|ing)\b|\bboot(?:s|ed|ing)?\b",
    re.IGNORECASE,
)
_MEMO: dict[str, bool] = {}
_MEMO_ENTRIES = 4096
_MEMO_CHARS = 512


def announces_start(template: str) -> bool:
    """Whether a template's words say that something starts ("<*> startup succeeded")."""
    found = _MEMO.get(template)
    if found is None:
        found = _START.search(template) is not None
        if len(template) <= _MEMO_CHARS:
            remember(_MEMO, template, found, _MEMO_ENTRIES)
    return found


def restart_of(starts: dict[str, float], programs: int, within_secs: float) -> tuple[int, float] | None:
    """The restart in `starts` (actor -> the time of its first never-seen line announcing a
    start): the most actors whose starts fall within `within_secs` of each other, and the span
    of their starts, when they are at least `programs`; None otherwise (or when `programs` ≤ 0)."""
    if programs <= 0 or len(starts) < programs:
        return None
    times = sorted(t for t in starts.values() if math.isfinite(t))
    best: tuple[int, float] | None = None
    first = 0
    for last, t in enumerate(times):
        while t - times[first] > within_secs:
            first += 1
        count = last - first + 1
        if count >= programs and (best is None or count > best[0]):
            best = (count, t - times[first])
    return best


def restart_title(count: int, span: float, stream: str | None) -> str:
    """"Host restarted (Linux.log): 12 programs started within 6 s" on a host's own log (the
    actors are its programs); "Restart: 12 components started within 6 s" elsewhere."""
    within = _duration(span)
    if stream:
        return f"Host restarted ({stream}): {plural(count, 'program')} started within {within}"
    return f"Restart: {plural(count, 'component')} started within {within}"


def _duration(secs: float) -> str:
    if secs < 1:
        return "a second"
    if secs < 120:
        return f"{secs:.0f} s"
    return f"{secs / 60:.0f} min"
