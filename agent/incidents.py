"""Anomalies grouped into incidents: one alert per problem, not one per line.

An anomaly joins an incident by the first of these that holds (ARCHITECTURE.md states the rule):
1. A never-seen template that an incident already reported, a variant of one (most content
   words shared, all of one's in the other, or the same message before a different reason), or
   one of the same family (`agent/line_families.py`: a crash report's field dumps, the machine's
   corrected errors), rejoins that incident for `new_behaviour_secs` on either side of its
   span: it is reopened under the same id and updated (new behaviour, not a new problem).
2. In one of the incident's *episodes* (`agent/episodes.py`: no quiet gap longer than
   `episode_gap_secs`; on the log's clock): the same template, a never-seen line of the same
   stream (a host's own log, no entity of its own: a reboot, a restart), or the same actor
   (entity, or component when the entity is only the stream) or service (the actor's first
   name part, `db` for `db-replica-2`).
3. Within `gap_secs` of one of the incident's episodes: a shared distinctive parameter value (an address,
   an id), templates that share content words, or templates that follow each other in training
   (when the profile is given).
4. Nothing of its own time relates to it, and it is a never-seen line at a routine level (below
   WARN, not DANGER): the incident of its actor's first such line, within `new_behaviour_secs`
   (`actor_new_behaviour`: a program's new chatter is one record).
So two simultaneous unrelated failures on different actors become two incidents, while a
database failover that touches the primary and two replicas is one.

Lifecycle: the first anomaly opens the incident; `tick(now)` resolves incidents quiet for
`quiet_secs` and whose episode is over, `close()` resolves everything. Which of that is told to
the sink, and when, is the update contract (`agent/incident_updates.py`): one `open`, an `update`
when something a person would act on changed (rate-limited with a backoff), one `resolved` with
the true totals, held back while a recurring incident keeps coming back. All times are the
anomalies' own times (log time), so a batch scan of a week behaves like the week did; times
that run backwards never make a negative span, and a jump of years simply starts a new incident.
A line that arrives behind the log's clock (two servers' logs one after the other) is grouped by
its own time: the last `max_resolved` resolved incidents are candidates too, and one whose
episode it falls in is reopened under its id.

Every anomaly's own event carries the id of the incident it belongs to: a weak anomaly held
back is decided (joined to an incident, or isolated when nothing related comes within
`gap_secs`) before its event is released. `drain()` hands over the anomalies decided so far,
each with its incident id (None: isolated), in the order they were decided.

A storm's repeats are counted, not emitted (`repeat_emitted`): within one incident, the n-th
anomaly of a template with the same fact kinds (`FACT_KINDS`: what the profile and the window
counts say, never what a model says), whatever its entity, is emitted as its own event when n is
at most `repeat_emit_limit` (3), or when n is a power of two (4, 8, 16, ...) and its entity had
fewer than `repeat_emit_limit` of them before; the others only add to the incident's counts
(`repeats_not_emitted`), time, entities, values and samples (not its explanation kinds: a repeat's
fact kinds are its key's, already there). `should_emit(anomaly)` says whether the pipeline should
still emit this anomaly's own event. Call it right after `add(anomaly)` with the same object (it
then reports the decision `add` took); called before `add` it predicts that decision.
`counted_repeat` answers, without changing anything, whether a never-seen line will only be
counted (the pipeline's storm road then builds no explanation text, no witness score and no event).
`plan_repeat` answers it exactly before the batch's earlier lines are added, and `count` counts
such a line from its pieces (`CountedLine`) in its turn (the pipeline's counted road,
`agent/counted_road.py`).

Memory is bounded: at most `max_open` incidents are open (the stalest is resolved to make room),
and each keeps at most `max_samples` sample lines, `max_templates` template counters,
`max_entities` entity names and `max_repeat_keys` repeat counters.
"""

from __future__ import annotations

import bisect
import heapq
import math
import re
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from agent.episodes import EPISODE_GAP_SECS, starts_new_episode
from agent.incident_updates import Told, backoff, longest_gap, notable, resolve_hold
from agent.line_families import family_from, family_of, reason_head
from agent.lines import actor_from, actor_of, as_number
from agent.restarts import announces_start, restart_of, restart_title
from agent.text_memo import remember
from agent.types import (
    Anomaly,
    DetectorScore,
    Explanation,
    ExplanationKind,
    Incident,
    IncidentSeverity,
    IncidentState,
    Level,
    ParsedLine,
    TemplatedLine,
    Verdict,
)
from agent.wording import clip, plural

NEW_BEHAVIOUR_SECS = 365 * 86400.0  # how long a never-seen template stays its first incident's


@dataclass(frozen=True)
class IncidentConfig:
    """When anomalies join an incident, when it resolves, and the bounds on what it keeps."""

    gap_secs: float = 300.0
    quiet_secs: float = 300.0
    # The update contract (`agent/incident_updates.py`): an update waits this long after the
    # incident's last event, doubling with each update (1, 2, 4, ... minutes), at most the cap.
    update_every_secs: float = 60.0
    update_backoff_max_secs: float = 3600.0
    # An incident that came back after a quiet gap is told resolved only once it has been quiet
    # for `resolve_hold_factor` × the longest such gap, at most `resolve_hold_max_secs` (flap damping).
    resolve_hold_factor: float = 2.0
    resolve_hold_max_secs: float = 30 * 86400.0
    max_samples: int = 10
    max_open: int = 1000
    max_templates: int = 50
    max_entities: int = 50
    max_repeat_keys: int = 1000
    # A storm's repeats (template and fact kinds, any entity) emitted per incident before the rest
    # are only counted, but for the counts that are powers of two (`repeat_emitted`).
    repeat_emit_limit: int = 3
    # Templates whose content words overlap at least this much (Jaccard) are related.
    related_word_overlap: float = 0.3
    # Templates that follow each other in training with at least this probability are related.
    related_transition: float = 0.2
    max_values: int = 200  # distinctive parameter values (addresses, ids) kept per incident
    # A weak anomaly (no DANGER verdict, no strong explanation) alone does not open an incident:
    # it waits up to gap_secs for a strong related anomaly to join. Most model false alarms are
    # such isolated weak lines; an operator is paged for incidents, not for them.
    hold_weak: bool = True
    max_held: int = 256
    weak_cluster: int = 5  # ... unless this many related weak anomalies come within gap_secs
    # One episode of trouble is one incident (`agent/episodes.py`: lines with no quiet gap longer
    # than this between them, the history check's definition too). Never-seen templates in one
    # stream (a host's own log, no entity of its own), or anomalies on one actor (an entity, a
    # component), in the same episode of an incident join it, whatever their words: a reboot's
    # boot messages, a laptop's wake-up, a node's crash report.
    episode_gap_secs: float = EPISODE_GAP_SECS
    # A new template that keeps recurring stays in its incident ("new behaviour") this long
    # after its last line: the incident is reopened under the same id, not opened anew (an
    # update). A year: until the template is learned (a retrain, drift learning, an operator's
    # label) it is the same new behaviour, however rarely it comes (BGL's recur weeks apart,
    # HPC's months); the period only lets one that was gone for longer be reported afresh.
    new_behaviour_secs: float = NEW_BEHAVIOUR_SECS
    max_new_behaviour: int = 1000  # new templates remembered for that
    # Resolved incidents kept for lines that arrive behind the log's clock (a second server's log
    # appended after the first's): such a line joins the incident whose episode its time falls in.
    max_resolved: int = 1000
    # A never-seen template whose content words overlap a remembered new template's this much
    # (Jaccard) is a variant of it (the miner split one message on a varying word: "ciod: LOGIN
    # chdir(pwd) failed" and "ciod: LOGIN chdir(<*>) failed"): the same new behaviour.
    variant_word_overlap: float = 0.5
    # ... or when all of the content words of one (at least this many; 0: never) are in the other:
    # one message is the other with more said after it.
    variant_contained_words: int = 4
    # A never-seen template at a routine level (below WARN, not DANGER) from the same informative
    # actor (a program when the entity is only the stream, `kernel`, `ftpd`; else the entity) as
    # an earlier such line joins that line's incident for `new_behaviour_secs`, when no incident
    # of its own time relates to it: one program's new chatter is one record of new behaviour (a
    # laptop's kernel logs a different sample of wake-up lines each time it wakes). A WARN-or-
    # worse new line is a new problem and is grouped by the other rules.
    actor_new_behaviour: bool = True
    # ... and a never-seen routine line of a program with no such record, from a host whose
    # programs' new chatter is already one record holding this many of them (within
    # `new_behaviour_secs`), joins that record when no incident of its own time relates to it: a
    # laptop's applications log new messages every day, split by nights of quiet (Mac_2k: Word,
    # networkd, CalendarAgent, Mail, … in four incidents before). A host's own log is a stream
    # with no entity of its own whose syslog header names a host and the app as the component
    # (the record is the stream's: a laptop's host name follows its network); a log whose actors
    # are not programs (BGL's node locations, HPC's nodes) has no such record. A record of one or
    # two programs' new lines (Linux_2k's ftpd, named, gdm) is a program's new behaviour, not the
    # host's chatter, so a reboot after them opens its own incident. 0: off.
    host_chatter_programs: int = 3
    # A restart is titled so (`agent/restarts.py`): never-seen lines announcing a start ("…
    # startup succeeded", "… started") from this many actors within `restart_secs`. 0: off.
    restart_programs: int = 5
    restart_secs: float = 300.0


_WORD = re.compile(r"[A-Za-z][A-Za-z_]{2,}")
_STOP = frozenset(
    {
        "the", "and", "for", "from", "with", "not", "was", "has", "have", "had", "are", "been", "this",
        "that", "into", "after", "before", "than", "then", "via", "per", "all", "any", "its", "our",
    }
)  # fmt: skip
_MAX_LINE_CHARS = 500
# Byte bounds per open incident, on top of the count caps: words of a template and of an incident,
# characters of a kept parameter value. With the defaults an open incident holds at most about
# 512 words + 200 values × 128 chars + 50 templates × 500 chars + 10 samples × 500 chars
# + the 4 KiB counter of entities beyond the named ones (`_count_extra`) ≈ 94 KB.
_MAX_TEMPLATE_CHARS = 4096
_MAX_TEMPLATE_WORDS = 64
_MAX_INCIDENT_WORDS = 512
_MAX_VALUE_CHARS = 128


# A content word shared by more remembered new templates than this is too common to find a
# variant by (the lookup stays bounded: at most 64 words × this many candidates per new line).
_MAX_VARIANT_BUCKET = 64
_NO_IDS: frozenset[int] = frozenset()

_MASK = re.compile(r"<[A-Z_*]*>")
# Explanation kinds that alone make an incident worth more than LOW: weak ones (an unusual
# order, hour or value) accompany real problems but also decorate the model's false alarms.
STRONG_KINDS = frozenset(
    {
        ExplanationKind.NEW_TEMPLATE,
        ExplanationKind.BURST,
        ExplanationKind.SEVERITY,
        ExplanationKind.RARE_TEMPLATE,
    }
)


_STRONG_VALUES = frozenset(k.value for k in STRONG_KINDS)  # (what `_Open.kinds` is keyed by)
# Explanation kinds that say what the profile and the live window counts see in a line, never what
# a model saw (MODEL_OUTLIER, SEQUENCE) nor its parameters: a storm's repeats are keyed by these,
# so deciding that a line is only counted needs no model score and no explanation text.
FACT_KINDS = frozenset(
    {
        ExplanationKind.NEW_TEMPLATE,
        ExplanationKind.RARE_TEMPLATE,
        ExplanationKind.SEVERITY,
        ExplanationKind.UNUSUAL_TIME,
        ExplanationKind.BURST,
    }
)
_FACT_VALUES = frozenset(k.value for k in FACT_KINDS)


def repeat_emitted(n: int, entity_count: int, limit: int) -> bool:
    """The storm rule: whether the n-th anomaly (from 1) of a template and fact kinds in one
    incident is emitted as its own event, its entity having had `entity_count` of them before:
    the first `limit`, then each power of two (4, 8, 16, ...) unless its entity already had
    `limit` (one entity repeating itself says nothing new; a storm over many is said as it grows)."""
    return n <= limit or (n & (n - 1) == 0 and entity_count < limit)


def is_strong(anomaly: Anomaly) -> bool:
    """DANGER, or a strong fact: enough to open an incident on its own."""
    return anomaly.verdict is Verdict.DANGER or any(e.kind in STRONG_KINDS for e in anomaly.explanations)


# Per-anomaly memos of pure functions of a text (emptied when full): an anomaly storm repeats a
# few templates and actors, and each anomaly needs their words and service several times.
_MEMO_ENTRIES = 4096
_MEMO_CHARS = 1024  # longer texts are worked out each time (the memo's bytes stay bounded)
_WORDS_MEMO: dict[str, frozenset[str]] = {}
_SERVICE_MEMO: dict[str, str] = {}
_HEAD_MEMO: dict[str, str | None] = {}


def template_words(template: str) -> frozenset[str]:
    """Lower-case content words of a template (placeholders and stop words left out): the first
    `_MAX_TEMPLATE_WORDS` of them (a 64 KiB line would otherwise keep thousands)."""
    found = _WORDS_MEMO.get(template)
    if found is None:
        found = _template_words(template)
        if len(template) <= _MEMO_CHARS:
            remember(_WORDS_MEMO, template, found, _MEMO_ENTRIES)
    return found


def head_of(template: str) -> str | None:
    """`line_families.reason_head` of a template (remembered: a new template's every line asks)."""
    found = _HEAD_MEMO.get(template, _NO_HEAD)
    if found is _NO_HEAD:
        found = reason_head(template)
        if len(template) <= _MEMO_CHARS:
            remember(_HEAD_MEMO, template, found, _MEMO_ENTRIES)
    return found


_NO_HEAD = "\x00"  # (not a head: `reason_head` returns a template's text before `: ` or None)


def _template_words(template: str) -> frozenset[str]:
    words: set[str] = set()
    for w in _WORD.findall(_MASK.sub(" ", template[:_MAX_TEMPLATE_CHARS])):
        lw = w.lower()
        if lw not in _STOP:
            words.add(lw)
            if len(words) >= _MAX_TEMPLATE_WORDS:
                break
    return frozenset(words)


def distinctive(value: str) -> bool:
    """A parameter value specific enough to link two lines (an address, an id), not a count."""
    return len(value) >= 5 and as_number(value) is None


def related_templates(profile: Mapping[str, Any], min_probability: float) -> dict[int, set[int]]:
    """Template pairs that follow each other in training often enough (both directions): the
    same actor's next template, or another actor's line within seconds (`follows`)."""
    related: dict[int, set[int]] = {}
    for tid, entry in (profile.get("templates") or {}).items():
        pairs = [*(entry.get("next") or {}).items(), *(entry.get("follows") or {}).items()]
        for nxt, prob in pairs:
            if float(prob) >= min_probability and int(nxt) != int(tid):
                related.setdefault(int(tid), set()).add(int(nxt))
                related.setdefault(int(nxt), set()).add(int(tid))
    return related


def service_of(entity: str) -> str:
    """The service part of an entity name: `db` for `db-replica-2`, `web` for `web-1`."""
    found = _SERVICE_MEMO.get(entity)
    if found is None:
        found = _SERVICE_SPLIT.split(entity.strip(), maxsplit=1)[0].lower()
        if len(entity) <= _MEMO_CHARS:
            remember(_SERVICE_MEMO, entity, found, _MEMO_ENTRIES)
    return found


_SERVICE_SPLIT = re.compile(r"[-_.:/\s]")


def title_from(templates: Sequence[tuple[int, str, int]], new_only: bool, total: int | None = None,
               held: bool = False) -> str:
    """A short title from the leading templates: the first one's words, `+N related` (N: the
    other templates of the incident, `total` of them in all when more than those listed).
    `held`: the first template is one the history held back as an incident (seen, not unknown)."""
    if not templates:
        return "Anomalous lines"
    text = _title_text(templates[0][0], templates[0][1])
    if new_only:
        text = f"{'Held back in your history' if held else 'Unknown template'}: {text}"
    count = max(len(templates), total or 0)
    if count > 1:
        text += f" (+{count - 1} related)"
    return text


_TITLE_MEMO: dict[tuple[int, str], str] = {}
_ELLIPSES = re.compile(r"(?:\.{2,}\s*)?…(?:[\s…]*…)?")  # "…", "… …", a dot leader's "........…"


def _title_text(template_id: int, template: str) -> str:
    """The words of a title from one template (remembered: an incident's update repeats it)."""
    key = (template_id, template)
    text = _TITLE_MEMO.get(key)
    if text is None:
        text = " ".join(_MASK.sub("…", template).split())
        text = _ELLIPSES.sub("…", text).strip(" ,;:-=") or f"template {template_id}"
        if text == "…":
            text = f"template {template_id}"
        text = clip(text, 60)
        if len(template) <= _MEMO_CHARS:
            remember(_TITLE_MEMO, key, text, _MEMO_ENTRIES)
    return text


_SWEEP_EVERY_SECS = 60.0  # how often (in log time) add() looks for incidents gone quiet
_MAX_CLOCK_STEP_SECS = 86400.0  # a bigger step of the log clock needs two lines to be believed


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%SZ") if math.isfinite(t) else "unknown"


class _Open:
    """The mutable state of one incident while it is open."""

    __slots__ = (
        "anomalies",
        "arrival",
        "burst_lines",
        "chatter_host",
        "danger",
        "entities",
        "episodes",
        "extra_bits",
        "extra_set",
        "first_line",
        "first_seen",
        "held_templates",
        "incident_id",
        "kinds",
        "last_seen",
        "max_level",
        "new_actors",
        "new_streams",
        "new_templates",
        "order",
        "pushed_order",
        "pushed_seen",
        "repeats",
        "samples",
        "services",
        "starts",
        "storms",
        "suppressed",
        "template_text",
        "templates",
        "told",
        "values",
        "words",
    )

    def __init__(self, incident_id: str, anomaly: Anomaly) -> None:
        t = anomaly.line.time
        self.incident_id = incident_id
        self.first_seen = t
        self.last_seen = t
        self.anomalies = 0
        self.danger = 0
        self.suppressed = 0  # a storm's repeats counted here (`repeat_emitted`) but not emitted as events
        self.burst_lines = 0  # lines of its bursts that did not raise alone (`count_burst_line`)
        self.max_level = Level.UNKNOWN
        self.templates: Counter[int] = Counter()
        self.template_text: dict[int, str] = {}
        self.new_templates: set[int] = set()
        self.held_templates: set[int] = set()  # of those, templates the history held back as an incident
        self.new_streams: set[str] = set()  # streams (no entity of their own) with new templates here
        # programs of its never-seen routine lines on a stream, up to `host_chatter_programs`
        self.new_actors: set[str] = set()
        # the host's log whose programs' new chatter joined it (`host_chatter_programs`): its title
        self.chatter_host = ""
        # actor -> the time of its first never-seen line announcing a start (`agent/restarts.py`)
        self.starts: dict[str, float] = {}
        self.entities: list[str] = []
        # entities beyond the first `max_entities`: a linear counter (`_count_extra`), made when needed
        self.extra_bits: bytearray | None = None
        self.extra_set = 0  # its bits set
        self.services: set[str] = set()
        self.words: set[str] = set()
        self.values: set[str] = set()
        # explanation kinds by value, in the order first seen (a member's hash is a Python call)
        self.kinds: dict[str, ExplanationKind] = {}
        self.samples: list[str] = []
        # anomalies per (template, entity, fact kinds) and per (template, fact kinds): `repeat_emitted`
        self.repeats: Counter[tuple[int, str, tuple[str, ...]]] = Counter()
        self.storms: Counter[tuple[int, tuple[str, ...]]] = Counter()
        self.first_line = anomaly.line.line.raw[:_MAX_LINE_CHARS]
        self.told = Told()  # what the sink was last told of it (`agent/incident_updates.py`)
        self.arrival = False
        self.order = 0  # when it (re)entered the open set: ties in distance go to the earlier
        # (last_seen, order) of its latest entry on the grouper's last-seen heap (`_touch`)
        self.pushed_seen = math.nan
        self.pushed_order = -1
        # Its episodes (`agent/episodes.py`) on the log's clock, [start, end] in time order, at
        # most `_MAX_EPISODES` (the earliest go first): a recurring new template starts another
        # episode of the same incident, and a line arriving late (a second server's log appended
        # after the first's) finds the episode its time falls in, not only the latest one.
        self.episodes: list[list[float]] = []




class Repeat(NamedTuple):
    """A never-seen line's anomaly planned as only counted (`IncidentGrouper.plan_repeat`): the
    incident that will count it (None: not known before its turn, `repeat_in_turn`) and its
    repeat key (template, entity, fact kinds)."""

    incident: _Open | None
    key: tuple[int, str, tuple[str, ...]]


class RepeatPlan:
    """What `IncidentGrouper.plan_repeat` knows of a batch's never-seen lines before any is added:
    the planned ones by repeat key (`ahead`, as `counted_repeat` counts them), the templates of
    lines not planned (`unsure`: their later lines in the batch are not planned either) and how
    many such lines there were (`new`: each may remember one more new template). `lines`: at
    most how many lines the batch adds (each may add one repeat key to an incident)."""

    __slots__ = ("ahead", "lines", "new", "opening", "unsure", "unsure_keys")

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.ahead: dict[tuple[str, int, str | None, tuple[str, ...]], int] = {}
        self.unsure: set[int] = set()
        self.opening: set[int] = set()  # templates no incident reports yet whose first line is in the batch
        # repeat keys a planned line may or may not have added to a nearly full counter
        self.unsure_keys: set[tuple[int, str, tuple[str, ...]]] = set()
        self.new = 0

    def note_unsure(self, template_id: int) -> None:
        """A never-seen line of this template is added in its turn without a plan."""
        self.unsure.add(template_id)
        self.new += 1


class CountedLine(NamedTuple):
    """The anomaly of a never-seen line planned as only counted (`Repeat`), as the pieces that
    counting it reads (`IncidentGrouper.count`): the pipeline's counted road builds no line
    object. `parts`: the line's `ParsedLine` fields in order (`LineParser.parts`)."""

    incident: _Open
    key: tuple[int, str, tuple[str, ...]]
    parts: tuple[Any, ...]
    template: str
    params: tuple[str, ...]
    time: float
    time_from_arrival: bool
    score: float
    verdict: Verdict
    scores: tuple[DetectorScore, ...]
    explanations: tuple[Explanation, ...]

    @classmethod
    def of(cls, incident: _Open, key: tuple[int, str, tuple[str, ...]], anomaly: Anomaly) -> CountedLine:
        """An anomaly's pieces (`add`'s repeat that is only counted)."""
        line = anomaly.line
        pl = line.line
        return cls(incident, key, (pl.raw, pl.message, pl.timestamp, pl.level, pl.entity, pl.source, pl.line_no,
                                   pl.component, pl.fields, pl.origin),
                   line.template, line.params, line.time, line.time_from_arrival, anomaly.score, anomaly.verdict,
                   anomaly.scores, anomaly.explanations)

    def anomaly(self) -> Anomaly:
        """The `Anomaly` these pieces are (a never-seen line: model token 0)."""
        line = TemplatedLine(ParsedLine(*self.parts), self.key[0], self.template, self.params, 0, True, self.time,
                             self.time_from_arrival)
        return Anomaly(line, self.score, self.verdict, self.scores, self.explanations)


def _key(anomaly: Anomaly) -> tuple[int, str, tuple[str, ...]]:
    """The anomaly's repeat key: (template, entity, its fact kinds' values sorted)."""
    return anomaly.line.template_id, anomaly.line.line.entity, _explained(anomaly.explanations)[1]


def fact_key(explanations: Iterable[Explanation]) -> tuple[str, ...]:
    """The values of the `FACT_KINDS` among these explanations, sorted and once each."""
    return tuple(sorted({e.kind._value_ for e in explanations} & _FACT_VALUES))  # (`.value` is a Python call)


# explanations -> (them, their fact kinds (`fact_key`), `_held_back`), by the tuple's id (the kept
# entry holds it, so the id stays its own): a storm's anomalies share one tuple (the pipeline's
# `_shared`), and each anomaly asks for its key and whether its template is held back.
_EXPLAINED: dict[int, tuple[tuple[Explanation, ...], tuple[str, ...], bool]] = {}


def _explained(explanations: tuple[Explanation, ...]) -> tuple[tuple[Explanation, ...], tuple[str, ...], bool]:
    found = _EXPLAINED.get(id(explanations))
    if found is None or found[0] is not explanations:
        found = (explanations, fact_key(explanations),
                 any(e.kind is ExplanationKind.NEW_TEMPLATE and any(k == "held_back" for k, _ in e.facts)
                     for e in explanations))
        if type(explanations) is tuple:  # (immutable: what is worked out stays true)
            remember(_EXPLAINED, id(explanations), found, _MEMO_ENTRIES)
    return found


def _first_seen(inc: _Open) -> float:
    return inc.first_seen


def _first_seen_order(inc: _Open) -> tuple[float, int]:
    """First seen first; among equals the first to (re)enter the open set (the open set's order)."""
    return inc.first_seen, inc.order


class IncidentGrouper:
    """Groups anomalies into incidents and decides which events to emit."""

    def __init__(self, config: IncidentConfig = IncidentConfig(), profile: Mapping[str, Any] | None = None) -> None:
        """`profile` (the bundle's profile.json, optional) relates templates that follow each
        other in training, so an auth failure and the web's 401 that it causes group together."""
        self.config = config
        self._linked = related_templates(profile, config.related_transition) if profile else {}
        self._open: dict[str, _Open] = {}
        self._seq = 0
        self._last_decision: tuple[int, bool] | None = None
        self._latest = -math.inf  # the latest anomaly time seen (the log's clock)
        self._swept_at = -math.inf
        self._far_ahead = False
        self._disorder = 0.0  # the largest lateness seen (seconds behind the log clock)
        self.suppressed = 0  # identical anomalies counted but not emitted
        self._held: deque[Anomaly] = deque()  # recent weak anomalies not (yet) in an incident
        self.isolated = 0  # weak anomalies that joined no incident when they arrived
        self._decided: list[tuple[Anomaly, str | None]] = []  # events due: anomaly, its incident
        self._new_behaviour: dict[int, _Open] = {}  # new template -> the incident it belongs to
        self._new_words: dict[int, frozenset[str]] = {}  # ... and its content words
        self._new_by_word: dict[str, set[int]] = {}  # content word -> remembered new templates with it
        self._new_order: dict[int, int] = {}  # ... and when each was first remembered
        # Families of never-seen lines (a crash report's field dumps) -> the incident that first
        # reported one of them: a new field line of the family is the same new behaviour.
        self._families: dict[tuple[str, str, Level], _Open] = {}
        # The message before a new template's reason (`line_families.reason_head`) -> the first
        # remembered new template with it, and back.
        self._new_by_head: dict[str, int] = {}
        self._new_heads: dict[int, str] = {}
        # An informative actor -> the incident that first reported a never-seen template of it.
        self._new_by_actor: dict[str, _Open] = {}
        # A host's own log (stream) -> its programs' new chatter record (`host_chatter_programs`).
        self._chatter: dict[str, _Open] = {}
        self._seen_new = 0
        self._family_of: tuple[Anomaly, tuple[str, str, Level] | None] | None = None  # the last `_family`
        self._index = _OpenIndex(config.related_word_overlap)
        # Incidents resolved lately (the last `max_resolved`), indexed the same way: a line that
        # arrives behind the log's clock may belong to one of them by its own time.
        self._resolved: dict[str, _Open] = {}
        self._resolved_index = _OpenIndex(config.related_word_overlap)
        self._resolved_unindexed: dict[str, _Open] = {}  # resolved since the last late line
        self._order = 0
        # Open incidents by (last_seen, order), stale entries skipped lazily: the stalest one is
        # found without a scan when the open set is full. A NaN time (unordered) turns it off.
        self._by_last_seen: list[tuple[float, int, int, _Open]] = []
        self._pushes = 0
        self._unordered = False
        # Resolved incidents not told resolved yet (they came back before: `resolve_hold`), and
        # a heap of (release_at, its sequence, incident) to find those due (stale entries skipped).
        self._holding: dict[str, _Open] = {}
        self._releases: list[tuple[float, int, _Open]] = []
        self._held_seq = 0
        # Open incidents joined within their update's backoff (a change may wait), and a heap of
        # (when the backoff ends, sequence, incident): told by the next sweep or tick after that.
        self._waiting: dict[str, _Open] = {}
        self._wakes: list[tuple[float, int, _Open]] = []

    # ---- matching

    def _distance(self, inc: _Open, t: float) -> float:
        """Seconds between `t` and the incident's span (0 inside it; never negative)."""
        if t > inc.last_seen:
            return t - inc.last_seen
        if t < inc.first_seen:
            return inc.first_seen - t
        return 0.0

    def _episode_distance(self, inc: _Open, t: float) -> float:
        """Seconds between `t` and the nearest of the incident's episodes (0 inside one)."""
        spans = inc.episodes
        if not spans or not math.isfinite(t):
            return self._distance(inc, t)
        i = bisect.bisect_right(spans, t, key=_episode_start)
        before = t - spans[i - 1][1] if i else math.inf
        after = spans[i][0] - t if i < len(spans) else math.inf
        return max(0.0, min(before, after))

    def _related(self, inc: _Open, anomaly: Anomaly, words: frozenset[str], distance: float) -> bool:
        """Whether `anomaly` (`distance` seconds from the nearest of the incident's episodes, on
        the log's clock) belongs to `inc`: in an episode of trouble of the incident on the same
        template, stream (never-seen lines) or actor; or within `gap_secs` and sharing a value,
        words or a training companion."""
        cfg = self.config
        line = anomaly.line
        entity = actor_of(line.line)
        informative = bool(entity) and entity != line.line.source  # the stream's name relates nothing
        if distance <= cfg.episode_gap_secs:
            if line.template_id in inc.templates:
                return True
            if line.is_new and line.line.source in inc.new_streams:
                return True  # one machine's episode of never-seen lines (a reboot, a wake-up): one problem
            if informative and (entity in inc.entities or service_of(entity) in inc.services):
                return True  # trouble on one actor
        if distance > cfg.gap_secs:
            return False
        if any(value[:_MAX_VALUE_CHARS] in inc.values for value in line.params):
            return True
        linked = self._linked.get(line.template_id)
        if linked and not linked.isdisjoint(inc.templates):
            return True
        if words and inc.words:
            overlap = len(words & inc.words) / len(words | inc.words)
            # A new template's words against the union of the incident's words: "Replica-3 not
            # responding" relates to "Failover initiated to replica-3" through "replica".
            if overlap >= cfg.related_word_overlap or len(words & inc.words) >= 2:
                return True
        return False

    def _own(self, line: TemplatedLine) -> _Open | None:
        """The incident a never-seen line's template's new behaviour is reported in, when within
        `new_behaviour_secs` of the line (`_recurring`'s first answer)."""
        return self._own_at(line.template_id, line.time)

    def _own_at(self, template_id: int, t: float) -> _Open | None:
        """`_own` of a line of this template at time `t`."""
        own = self._new_behaviour.get(template_id)
        return own if own is not None and self._distance(own, t) <= self.config.new_behaviour_secs else None

    def _match(self, anomaly: Anomaly) -> _Open | None:
        t = anomaly.line.time
        line = anomaly.line
        words = template_words(anomaly.line.template)
        recurring = ((self._own(line) or self._recurring(line.template_id, words, t, self._family(anomaly),
                                                         head_of(line.template)))
                     if line.is_new else None)
        if recurring is not None:
            if recurring.incident_id not in self._open:  # resolved meanwhile: reopen it
                self._enter(recurring)
            return recurring
        best: _Open | None = None
        best_distance = math.inf
        # Only incidents that share a key with the anomaly can be related (see `_OpenIndex`);
        # visited in the order they entered the open set, as a scan of all of them would.
        reach = max(self.config.gap_secs, self.config.episode_gap_secs)
        candidates = self._candidates(anomaly, words)
        if self._resolved and t < self._latest:
            # A line behind the log's clock (a second log appended after the first) may fall in
            # the time of an incident that later lines resolved: grouping is by log time, so it
            # joins it as it would have had it come in time order.
            candidates = {*candidates, *self._resolved_candidates(anomaly, words)}
        for inc in sorted(candidates, key=_entry_order):
            distance = self._episode_distance(inc, t)
            if distance > reach or distance >= best_distance:
                continue
            if self._related(inc, anomaly, words, distance):
                best, best_distance = inc, distance
        if best is None and line.is_new:
            best = self._actor_behaviour(anomaly)
        if best is not None and best.incident_id not in self._open:
            self._enter(best)  # reopened under its id, as a recurring new template reopens its own
        return best

    def _candidates(self, anomaly: Anomaly, words: frozenset[str]) -> Sequence[_Open] | set[_Open]:
        """The open incidents `_related` can accept for `anomaly`: those sharing its template,
        a template linked to it, its stream (when new), its actor or service, a distinctive
        value or a content word. A word-overlap threshold of 0 relates any two word sets, so
        then every open incident is a candidate."""
        if self.config.related_word_overlap <= 0:
            return list(self._open.values())
        return self._index.lookup(*self._keys(anomaly, words))

    def _resolved_candidates(self, anomaly: Anomaly, words: frozenset[str]) -> Iterable[_Open]:
        """The kept resolved incidents `_related` can accept for `anomaly` (as `_candidates`)."""
        if self.config.related_word_overlap <= 0:
            return self._resolved.values()
        for resolved in self._resolved_unindexed.values():
            self._resolved_index.add_all(resolved)
        self._resolved_unindexed.clear()
        return self._resolved_index.lookup(*self._keys(anomaly, words))

    def _keys(self, anomaly: Anomaly, words: frozenset[str]) -> tuple[
            tuple[int, ...], str | None, str | None, Sequence[str], frozenset[str]]:
        """The index keys that can relate `anomaly` to an incident (`_OpenIndex.lookup`'s
        arguments): templates, stream (when new), actor, values, words."""
        line = anomaly.line
        entity = actor_of(line.line)
        return ((line.template_id, *self._linked.get(line.template_id, ())),
                line.line.source if line.is_new else None,
                entity if entity and entity != line.line.source else None,
                line.params,
                words)

    def _enter(self, inc: _Open) -> None:
        """Put `inc` in the open set (new, or reopened) and index what it holds."""
        self._holding.pop(inc.incident_id, None)  # back within its resolve's hold: never told resolved
        if (self._resolved.pop(inc.incident_id, None) is not None
                and self._resolved_unindexed.pop(inc.incident_id, None) is None):
            self._resolved_index.remove(inc)  # reopened: no longer a resolved one
        self._order += 1
        inc.order = self._order
        self._open[inc.incident_id] = inc
        self._index.add_all(inc)
        self._touch(inc)

    def _touch(self, inc: _Open) -> None:
        """Record the open incident's current last_seen for `_stalest`. An incident keeps one
        entry on the heap while open: its last_seen only grows, so the entry's time is a lower
        bound of it, and an entry behind its incident is moved up when it comes to the top
        (`_settled`); a storm's every anomaly would otherwise push one."""
        if math.isnan(inc.last_seen):
            self._unordered = True
        if self._unordered:
            return
        if inc.pushed_order == inc.order and inc.pushed_seen <= inc.last_seen:
            return  # its entry is on the heap already (one leaves it only as the incident resolves)
        inc.pushed_seen, inc.pushed_order = inc.last_seen, inc.order
        self._pushes += 1
        heapq.heappush(self._by_last_seen, (inc.last_seen, inc.order, self._pushes, inc))
        if len(self._by_last_seen) > 4 * len(self._open) + 64:
            self._by_last_seen = [(i.last_seen, i.order, n, i) for n, i in enumerate(self._open.values())]
            heapq.heapify(self._by_last_seen)
            for i in self._open.values():
                i.pushed_seen, i.pushed_order = i.last_seen, i.order

    def _settled(self) -> _Open | None:
        """The heap's head once it is an open incident's entry at its current last_seen: the
        open incident seen longest ago (the first opened among equals), as a scan finds; the
        entries of resolved incidents are dropped and one behind its incident moved up on the
        way. None when the heap is empty."""
        heap, is_open = self._by_last_seen, self._open
        while heap:
            last_seen, order, _, inc = heap[0]
            if is_open.get(inc.incident_id) is inc and inc.order == order:
                if inc.last_seen == last_seen:
                    return inc
                self._pushes += 1
                inc.pushed_seen = inc.last_seen
                heapq.heapreplace(heap, (inc.last_seen, order, self._pushes, inc))
            else:
                heapq.heappop(heap)
        return None

    def _stalest(self) -> _Open:
        """The open incident seen longest ago (the first opened among equals), as a scan finds."""
        if not self._unordered:
            head = self._settled()
            if head is not None:
                return head
        return min(self._open.values(), key=lambda i: i.last_seen)

    def _would_emit(self, inc: _Open | None, anomaly: Anomaly,
                    key: tuple[int, str, tuple[str, ...]] | None = None) -> bool:
        if inc is None:
            return True
        key = key or _key(anomaly)
        return repeat_emitted(inc.storms.get((key[0], key[2]), 0) + 1, inc.repeats.get(key, 0),
                              self.config.repeat_emit_limit)

    # ---- the public surface

    def counted_repeat(self, line: TemplatedLine, facts: tuple[Explanation, ...],
                       ahead: dict[tuple[str, int, str | None, tuple[str, ...]], int] | None = None) -> bool:
        """Whether an anomaly of this never-seen line with these fact explanations
        (`Explainer.facts`), added now, is only counted: it joins the incident its template's new
        behaviour is reported in (`add`'s first rule, which nothing else precedes for it) and
        `repeat_emitted` says no. Changes nothing; False when the line may be emitted. The
        pipeline's storm road then builds no explanation text, no witness score and no event.
        `ahead`: a prediction for a line after others not added yet, counted in `ahead` by
        (incident id, repeat key) (this line is counted in it too)."""
        own = self._own(line) if line.is_new else None
        if own is None:
            return False
        return self.counted_repeat_in(own, line.template_id, line.line.entity, _explained(facts)[1], ahead)

    def counted_repeat_in(self, own: _Open, template_id: int, entity: str, kinds: tuple[str, ...],
                          ahead: dict[tuple[str, int, str | None, tuple[str, ...]], int] | None,
                          cap: int | None = None) -> bool:
        """`counted_repeat` of a line of the template whose new behaviour `own` reports, with
        these fact kinds (`fact_key`). With `cap` (`max_repeat_keys`), `ahead` counts a line under
        a key its counter does not hold only when the counter is not full (else it never will)."""
        storms, repeats = own.storms, own.repeats
        n, e = storms.get((template_id, kinds), 0), repeats.get((template_id, entity, kinds), 0)
        if ahead is not None:
            storm, key = (own.incident_id, template_id, None, kinds), (own.incident_id, template_id, entity, kinds)
            if cap is None or (template_id, kinds) in storms or len(storms) < cap:
                n += ahead.get(storm, 0)
                ahead[storm] = ahead.get(storm, 0) + 1
            if cap is None or (template_id, entity, kinds) in repeats or len(repeats) < cap:
                e += ahead.get(key, 0)
                ahead[key] = ahead.get(key, 0) + 1
        return not repeat_emitted(n + 1, e, self.config.repeat_emit_limit)

    def plan_repeat(self, template_id: int, entity: str, t: float, facts: tuple[Explanation, ...],
                    plan: RepeatPlan) -> Repeat | bool | None:
        """`counted_repeat` of a never-seen line decided in the pipeline's per-line loop, before the
        batch's earlier lines are added, exactly: a `Repeat` when its anomaly, added in its turn,
        will only be counted (`count` then counts it), False when it will be emitted, None when
        that is not certain here (the line takes the full road and is decided when added). Its
        verdict must be known not NORMAL and unchanged by judging (the caller's). Certain when
        every earlier never-seen line of the batch with its template was planned here too (each
        is then added to the same incident with its planned key, and counted in `plan.ahead` by
        its repeat keys, as `counted_repeat(..., ahead)` counts them), its incident's repeat
        counters have room for every key the batch may add (`max_repeat_keys`), and no earlier
        line can push its template out of the remembered new templates (`max_new_behaviour`).
        An earlier line of another template cannot change the answer: only a line of this
        template moves its counters or its `_new_behaviour` entry, and an incident's span only
        grows. `plan.note_unsure` must be told of every other never-seen line of the batch."""
        if template_id in plan.unsure:
            return None
        cfg = self.config
        kinds = _explained(facts)[1]
        key = (template_id, entity, kinds)
        if template_id not in self._new_behaviour:
            return self._plan_opening(key, plan)
        own = self._own_at(template_id, t)
        if own is None or len(self._new_behaviour) + plan.new >= cfg.max_new_behaviour:
            plan.note_unsure(template_id)
            return None
        # A counter full at `max_repeat_keys` takes no key any more (`_keep_repeat`); one with
        # room for every line of the batch takes them all; in between, which it takes is not
        # known: the line is decided all the same (its counts are), but a later line of its key
        # is not planned (nor one of its template, when the storm's key is the unknown one).
        cap = cfg.max_repeat_keys
        storm = (template_id, kinds)
        if key in plan.unsure_keys and storm in own.storms:  # its storm's count is known: counted ahead
            ahead_key = (own.incident_id, template_id, None, kinds)
            plan.ahead[ahead_key] = plan.ahead.get(ahead_key, 0) + 1
            return None
        if key in plan.unsure_keys or (storm not in own.storms and cap - plan.lines <= len(own.storms) < cap):
            plan.note_unsure(template_id)
            return None
        if key not in own.repeats and cap - plan.lines <= len(own.repeats) < cap:
            plan.unsure_keys.add(key)
        counted = self.counted_repeat_in(own, template_id, entity, kinds, plan.ahead, cap)
        return Repeat(own, key) if counted else False

    def _plan_opening(self, key: tuple[int, str, tuple[str, ...]], plan: RepeatPlan) -> Repeat | None:
        """`plan_repeat` of a line of a template no incident reports yet: its first line in the
        batch opens one or joins one in its turn, so a later line is only predicted, against the
        counters as that first line leaves them (empty but for the batch's lines: a never-seen
        template's lines are strong, so the first is never held back): a `Repeat` with no
        incident when predicted counted, to be decided in its turn (`repeat_in_turn`); None
        otherwise (the full road)."""
        template_id, entity, kinds = key
        opening = template_id not in plan.opening
        if opening:
            plan.opening.add(template_id)
            plan.new += 1  # (it may remember one more new template)
        ahead = plan.ahead
        storm, repeat = ("", template_id, None, kinds), ("", template_id, entity, kinds)
        n, e = ahead.get(storm, 0), ahead.get(repeat, 0)
        ahead[storm], ahead[repeat] = n + 1, e + 1
        return None if opening or repeat_emitted(n + 1, e, self.config.repeat_emit_limit) else Repeat(None, key)

    def repeat_in_turn(self, template_id: int, entity: str, t: float, kinds: tuple[str, ...]) -> Repeat | None:
        """`counted_repeat` of a never-seen line in its turn, from its pieces (a line whose
        `plan_repeat` found no incident yet): the incident that will only count it, or None."""
        own = self._own_at(template_id, t)
        if own is None or not self.counted_repeat_in(own, template_id, entity, kinds, None):
            return None
        return Repeat(own, (template_id, entity, kinds))

    def count(self, line: CountedLine) -> tuple[str, list[Incident]]:
        """`add` of the anomaly of a never-seen line that `plan_repeat` planned as only counted,
        in its turn, from its pieces (no `Anomaly` unless the general way needs one); its
        incident's id and the incident events due now."""
        events: list[Incident] = []
        swept = self._arrive(line.time, events)
        self._count_repeat(line, None, events)
        if swept:
            events += self._wake(line.time)
        return line.incident.incident_id, events

    def should_emit(self, anomaly: Anomaly) -> bool:
        """Whether this anomaly's own event should be emitted (False for a repeat)."""
        if self._last_decision is not None and self._last_decision[0] == id(anomaly):
            return self._last_decision[1]
        return self._would_emit(self._match(anomaly), anomaly)

    def count_burst_line(self, line: TemplatedLine, related: AbstractSet[int] = frozenset()) -> list[Incident]:
        """A line of a burst that did not raise on its own (`Explainer.burst_alert`: one burst,
        one alert and its updates) is counted in the incident that holds its template, the one
        whose episode is nearest its time (within `episode_gap_secs`): its `line_count` and span
        grow, and it is updated when the update contract says so (its lines doubled, ...), so the
        incident tells how big the burst got. Not an anomaly: `anomaly_count` and the anomaly events do not change.
        `related`: the templates of the suspected incident the history ends in, for a quiet line
        of it (`Explainer.held_back_repeat`): it joins the incident holding any of them, which
        lists its template and counts its lines there (the incident hides none of its templates).
        Returns the update due, if any."""
        t = line.time
        best: _Open | None = None
        best_distance = math.inf
        templates = self._index.templates
        candidates = templates.get(line.template_id, _NONE)
        if related:
            candidates = candidates.union(*(templates.get(tid, _NONE) for tid in related))
        for inc in sorted(candidates, key=_entry_order):
            if inc.incident_id not in self._open:
                continue
            distance = self._episode_distance(inc, t)
            if distance <= self.config.episode_gap_secs and distance < best_distance:
                best, best_distance = inc, distance
        if best is None:
            return []
        best.burst_lines += 1
        if related:
            self._list_quiet(best, line)
        if math.isfinite(t):
            _stretch(best, t, self.config.episode_gap_secs)
            self._touch(best)
            return self._due(best, t)
        return []

    def _list_quiet(self, inc: _Open, line: TemplatedLine) -> None:
        """A quiet held-back line counted in `inc`: its template is listed there (with its lines)
        as a held-back template, and the incident is found by it."""
        tid = line.template_id
        if tid not in inc.templates:
            if len(inc.templates) >= self.config.max_templates:
                return
            inc.template_text[tid] = line.template[:_MAX_LINE_CHARS]
            inc.new_templates.add(tid)
            inc.held_templates.add(tid)
        inc.templates[tid] += 1
        _put(self._index.templates, tid, inc)

    def add(self, anomaly: Anomaly) -> tuple[str | None, list[Incident]]:
        """Put `anomaly` in an incident; returns its id and the incident events due now.

        The events are this incident's `open` or `update`, preceded by the `resolved` events
        of incidents that the log's own clock shows quiet: a batch scan never calls `tick`,
        and without this a month of logs would keep every incident open (and every anomaly
        compared with all of them) until the end. And the updates that waited for their backoff
        to end (`_wake`), once the anomaly is in: the update of its own incident tells it too.
        """
        events: list[Incident] = []
        t = anomaly.line.time
        swept = self._arrive(t, events)
        incident_id = self._place(anomaly, events)
        if swept:
            events += self._wake(t)
        return incident_id, events

    def _place(self, anomaly: Anomaly, events: list[Incident]) -> str | None:
        """`add` once the clock moved and quiet incidents resolved: the anomaly joins its incident
        (or is held); the events due are appended to `events`. Returns the incident's id."""
        cfg = self.config
        t = anomaly.line.time
        if anomaly.line.is_new and (own := self._own(anomaly.line)) is not None:
            key = _key(anomaly)
            if not self._would_emit(own, anomaly, key):  # a storm's repeat: counted, O(1)
                self._count_repeat(CountedLine.of(own, key, anomaly), anomaly, events)
                return own.incident_id
        inc = self._match(anomaly)
        held: list[Anomaly] = []
        if (inc is None and cfg.hold_weak and not is_strong(anomaly)
                and len(self._related_held(anomaly)) + 1 < cfg.weak_cluster):
            self._hold(anomaly)
            self._last_decision = (id(anomaly), True)
            return None
        if inc is None:
            held = self._take_held(anomaly)
            if len(self._open) >= cfg.max_open:
                events += self._resolve(self._stalest(), math.inf)  # (not quiet: made room for, told now)
            self._seq += 1
            first = held[0] if held else anomaly
            inc = _Open(f"inc-{_clock(first.line.time)}-{self._seq}", first)
            self._enter(inc)
            for h in held:
                self._absorb(inc, h, counted=not self._decide(inc, h))
                self._index.add_line(inc, h)
                self._touch(inc)
                self.isolated -= 1
        key = _key(anomaly)
        emit = self._decide(inc, anomaly, key)
        self._last_decision = (id(anomaly), emit)
        self._absorb(inc, anomaly, key, counted=not emit)
        self._index.add_line(inc, anomaly)
        self._touch(inc)
        if anomaly.line.is_new:
            self._remember_new(anomaly.line.template_id, template_words(anomaly.line.template), inc,
                               self._family(anomaly), head_of(anomaly.line.template))
            actor = _new_actor(anomaly)
            self._remember_actor(actor, inc)
            self._remember_chatter(anomaly, actor, inc)
        events += self._due(inc, t)
        return inc.incident_id

    def _arrive(self, t: float, events: list[Incident]) -> bool:
        """What an anomaly at `t` does before it is put anywhere (`add`): the log clock moves on,
        the incidents it shows quiet resolve (into `events`), held weak anomalies expire. True
        when the clock swept (the updates waiting for their backoff are told once it is in: `_wake`)."""
        swept = self._advance_clock(t) and t - self._swept_at >= _SWEEP_EVERY_SECS
        if swept:
            self._swept_at = t
            events += self._release(t)
            for i in self._quiet(t):
                events += self._resolve(i, t)
        self._expire_held(t)
        return swept

    def _count_repeat(self, line: CountedLine, anomaly: Anomaly | None, events: list[Incident]) -> None:
        """`add` of a never-seen line's anomaly that joins its template's own incident (`_own`) as
        a repeat that is only counted (`repeat_emitted`). What `_absorb` would find already there
        (the template, its newness and held-back mark, its explanation kinds) is not looked at
        again: the count, span, level, entity, values and sample are added (and listed in the
        index when new), in a few dict operations; no candidate is searched. `anomaly`: the line's
        `Anomaly` when there is one (`add`; else built only for the general way)."""
        inc, key = line.incident, line.key
        if inc.incident_id not in self._open:  # resolved meanwhile: reopen it (as `_match`)
            self._enter(inc)
        self.suppressed += 1
        inc.suppressed += 1
        self._last_decision = (id(anomaly), False) if anomaly is not None else None
        tid = key[0]
        parts = line.parts
        level, entity, source, component = parts[3], parts[4], parts[5], parts[7]
        if (tid not in inc.templates or tid not in inc.new_templates
                or (entity == source and source not in inc.new_streams)
                or (tid not in inc.held_templates and _explained(line.explanations)[2])):
            found = anomaly if anomaly is not None else line.anomaly()
            self._absorb(inc, found, key, counted=True)  # (not met by a repeat: the general way)
            self._index.add_line(inc, found)
        else:
            self._absorb_repeat(inc, line)
        self._touch(inc)
        # (its template's new behaviour is this incident's already; its family's and actor's first
        # incidents are moved here when more than `new_behaviour_secs` away, as `add` does)
        family = (self._family(anomaly) if anomaly is not None
                  else family_from(level, parts[1], component, parts[8]))
        self._remember_new(tid, template_words(line.template), inc, family, head_of(line.template))
        self._remember_actor(_new_actor_from(level, line.verdict, entity, source, component), inc)
        events += self._due(inc, line.time)

    def _absorb_repeat(self, inc: _Open, line: CountedLine) -> None:
        """`_absorb(counted=True)` and `_index.add_line` of a repeat whose template is in the
        incident, new there, and marked held back there if it is (`_count_repeat` checks)."""
        cfg = self.config
        parts = line.parts
        key = line.key
        _count_in(inc, line.time, line.time_from_arrival, line.verdict, parts[3], cfg.episode_gap_secs)
        inc.templates[key[0]] += 1
        values = inc.values
        if len(values) < cfg.max_values:
            index = self._index.values
            for value in line.params:
                kept = value[:_MAX_VALUE_CHARS]
                if kept not in values and len(values) < cfg.max_values and distinctive(value):
                    values.add(kept)
                    _put(index, kept, inc)
        entity = actor_from(parts[4], parts[5], parts[7])
        if entity not in inc.entities:
            if len(inc.entities) < cfg.max_entities:
                inc.entities.append(entity)
                service = service_of(entity)
                inc.services.add(service)
                _put(self._index.actors, entity, inc)
                _put(self._index.services, service, inc)
            else:
                _count_extra(inc, entity)
        _keep_repeat(inc, parts[0], line.time, line.time_from_arrival, key, cfg)

    def _decide(self, inc: _Open, anomaly: Anomaly, key: tuple[int, str, tuple[str, ...]] | None = None) -> bool:
        """Queue `anomaly`'s event with the incident's id, unless it is a repeat only counted (`repeat_emitted`)."""
        emit = self._would_emit(inc, anomaly, key)
        if emit:
            self._decided.append((anomaly, inc.incident_id))
        else:
            self.suppressed += 1
            inc.suppressed += 1
        return emit

    def _recurring(self, template_id: int, words: frozenset[str], t: float,
                   family: tuple[str, str, Level] | None, head: str | None) -> _Open | None:
        """The incident whose new behaviour this never-seen template repeats: its own, the one
        of a template it is a variant of (most words in common, or all the words of one of them in
        the other; the best overlap, the first remembered among equals),
        the one of the first remembered template that ends its message with another reason after
        the same words, or the one that first reported its family (`agent/line_families.py`: a
        crash report's field dump). Within the period of the incident's span on either side: a log whose lines
        come out of time order (HPC's) must not open a new incident for every line that is earlier."""
        period = self.config.new_behaviour_secs
        own = self._new_behaviour.get(template_id)
        if own is not None and self._distance(own, t) <= period:
            return own  # (asked first by `_match`: `_own`)
        cfg = self.config
        best: _Open | None = None
        best_overlap = -1.0
        candidates: set[int] = set()
        for word in words:
            bucket = self._new_by_word.get(word, _NO_IDS)
            if len(bucket) <= _MAX_VARIANT_BUCKET:  # a word in many new templates ("error") finds nothing
                candidates |= bucket
        for tid in sorted(candidates, key=self._remembered_order):
            other = self._new_words[tid]
            shared = len(words & other)
            overlap = shared / len(words | other)
            # One message's words all within the other's ("rts: kernel terminated for reason …"
            # and the same with "bad message header: invalid cpu, type=…" after it).
            contained = 0 < cfg.variant_contained_words <= shared == min(len(words), len(other))
            if (overlap >= cfg.variant_word_overlap and shared >= 2) or contained:
                inc = self._new_behaviour[tid]
                if self._distance(inc, t) <= period and (best is None or overlap > best_overlap):
                    best, best_overlap = inc, overlap
        if best is None and head is not None and (same := self._new_by_head.get(head)) is not None:
            inc = self._new_behaviour[same]
            if self._distance(inc, t) <= period:
                return inc
        if best is None and family is not None:
            first = self._families.get(family)
            if first is not None and self._distance(first, t) <= period:
                return first
        return best

    def _actor_behaviour(self, anomaly: Anomaly) -> _Open | None:
        """The incident that first reported a never-seen template of this never-seen line's
        informative actor, within `new_behaviour_secs` (`actor_new_behaviour`): asked only when
        no incident of the line's own time relates to it, so a reboot's kernel lines stay with
        the reboot."""
        actor = _new_actor(anomaly)
        if actor is None or not self.config.actor_new_behaviour:
            return None
        first = self._new_by_actor.get(actor)
        if first is None or self._distance(first, anomaly.line.time) > self.config.new_behaviour_secs:
            return self._host_chatter(anomaly)
        return first

    def _host_chatter(self, anomaly: Anomaly) -> _Open | None:
        """The stream's record of its programs' new chatter (`host_chatter_programs`), for a
        never-seen routine line of a program with no record of its own on a stream with no entity
        of its own; None when there is none within `new_behaviour_secs`."""
        host = _host_of(anomaly.line.line) if self.config.host_chatter_programs > 0 else None
        if host is None:
            return None
        record = self._chatter.get(host)
        if record is None or self._distance(record, anomaly.line.time) > self.config.new_behaviour_secs:
            return None
        record.chatter_host = host  # a line joins it as the host's chatter: its title says so
        return record

    def _remember_chatter(self, anomaly: Anomaly, actor: str | None, inc: _Open) -> None:
        """Count `actor` among the incident's programs with never-seen routine lines on a stream;
        the first incident of a stream to reach `host_chatter_programs` of them is the stream's
        chatter record (until that is more than `new_behaviour_secs` away)."""
        wanted = self.config.host_chatter_programs
        if actor is None or wanted <= 0:
            return
        host = _host_of(anomaly.line.line)
        if host is None:
            return
        if len(inc.new_actors) < wanted:
            inc.new_actors.add(actor)
        if len(inc.new_actors) < wanted:
            return
        record = self._chatter.get(host)
        if record is None or (record is not inc
                              and self._distance(record, inc.last_seen) > self.config.new_behaviour_secs):
            self._chatter.pop(host, None)
            self._chatter[host] = inc
            if len(self._chatter) > self.config.max_new_behaviour:
                del self._chatter[next(iter(self._chatter))]

    def _remember_actor(self, actor: str | None, inc: _Open) -> None:
        """The first incident that reported a never-seen template of `actor` is its new behaviour's
        (until that is more than `new_behaviour_secs` away)."""
        if actor is None or not self.config.actor_new_behaviour:
            return
        first = self._new_by_actor.get(actor)
        if first is None or self._distance(first, inc.last_seen) > self.config.new_behaviour_secs:
            self._new_by_actor.pop(actor, None)
            self._new_by_actor[actor] = inc
            if len(self._new_by_actor) > self.config.max_new_behaviour:
                del self._new_by_actor[next(iter(self._new_by_actor))]

    def _family(self, anomaly: Anomaly) -> tuple[str, str, Level] | None:
        """`family_of` the anomaly's line, worked out once per anomaly (`_match`, then `add`)."""
        last = self._family_of
        if last is not None and last[0] is anomaly:
            return last[1]
        family = family_of(anomaly.line.line)
        self._family_of = (anomaly, family)
        return family

    def _remembered_order(self, template_id: int) -> int:
        return self._new_order[template_id]

    def _remember_new(self, template_id: int, words: frozenset[str], inc: _Open,
                      family: tuple[str, str, Level] | None, head: str | None) -> None:
        if family is not None:
            first = self._families.get(family)
            if first is None or self._distance(first, inc.last_seen) > self.config.new_behaviour_secs:
                self._families.pop(family, None)
                self._families[family] = inc  # the family's new behaviour is reported here
                if len(self._families) > self.config.max_new_behaviour:
                    del self._families[next(iter(self._families))]
        if template_id not in self._new_behaviour:
            self._seen_new += 1
            self._new_order[template_id] = self._seen_new
            self._new_words[template_id] = words
            for word in words:
                self._new_by_word.setdefault(word, set()).add(template_id)
            if head is not None and head not in self._new_by_head:
                self._new_by_head[head] = template_id
                self._new_heads[template_id] = head
        self._new_behaviour[template_id] = inc
        if len(self._new_behaviour) > self.config.max_new_behaviour:
            oldest = next(iter(self._new_behaviour))
            del self._new_behaviour[oldest]
            del self._new_order[oldest]
            oldest_head = self._new_heads.pop(oldest, None)
            if oldest_head is not None:
                del self._new_by_head[oldest_head]
            for word in self._new_words.pop(oldest):
                bucket = self._new_by_word[word]
                bucket.discard(oldest)
                if not bucket:
                    del self._new_by_word[word]

    def drain(self) -> list[tuple[Anomaly, str | None]]:
        """The anomalies decided since the last call, each with its incident id (None: isolated)."""
        decided, self._decided = self._decided, []
        return decided

    def _expire_held(self, now: float) -> None:
        """Held weak anomalies more than gap_secs before `now` joined nothing: isolated."""
        horizon = now - self.config.gap_secs
        while self._held and self._held[0].line.time < horizon:
            self._decided.append((self._held.popleft(), None))

    def _quiet(self, now: float) -> list[_Open]:
        """The open incidents stale at `now`, first seen first (the first opened among equals).
        Staleness is a bound on last_seen, so they are the stale head of the `_by_last_seen`
        heap: a sweep costs what it resolves, not what is open (a scan when times are unordered)."""
        if self._unordered:
            return sorted([i for i in self._open.values() if self._is_stale(i, now)], key=_first_seen)
        found: list[_Open] = []
        while (inc := self._settled()) is not None and self._is_stale(inc, now):
            found.append(inc)
            heapq.heappop(self._by_last_seen)
        return sorted(found, key=_first_seen_order)

    def _is_stale(self, inc: _Open, now: float) -> bool:
        cfg = self.config
        return now - inc.last_seen >= max(cfg.quiet_secs, cfg.gap_secs, cfg.episode_gap_secs) + self._disorder

    def _hold(self, anomaly: Anomaly) -> None:
        self.isolated += 1
        self._held.append(anomaly)
        while len(self._held) > self.config.max_held:
            self._decided.append((self._held.popleft(), None))

    def _related_held(self, anomaly: Anomaly) -> list[Anomaly]:
        """The held weak anomalies related to `anomaly` and within gap_secs of it, in order."""
        if not self._held:
            return []
        probe = _Open("probe", anomaly)
        self._absorb(probe, anomaly)
        t = anomaly.line.time
        return [h for h in self._held
                if abs(t - h.line.time) <= self.config.gap_secs
                and self._related(probe, h, template_words(h.line.template), self._distance(probe, h.line.time))]

    def _take_held(self, anomaly: Anomaly) -> list[Anomaly]:
        """Remove and return the held anomalies that join the incident `anomaly` is opening."""
        taken = self._related_held(anomaly)
        if taken:
            ids = {id(h) for h in taken}
            self._held = deque(h for h in self._held if id(h) not in ids)
        return taken

    def _advance_clock(self, t: float) -> bool:
        """Move the log clock to `t`; True when it moved. A single line far ahead of the rest
        (a timestamp jumping years) is not believed until a second one agrees, so that one bad
        clock cannot resolve every open incident."""
        if not math.isfinite(t) or t <= self._latest:
            if math.isfinite(t):
                self._far_ahead = False
                # How far lines arrive behind the clock: incidents stay open that much longer
                # before the sweep resolves them, so late lines still find their incident.
                self._disorder = max(self._disorder, min(self._latest - t, _MAX_CLOCK_STEP_SECS))
            return False
        if t - self._latest > _MAX_CLOCK_STEP_SECS and math.isfinite(self._latest) and not self._far_ahead:
            self._far_ahead = True
            return False
        self._far_ahead = False
        self._latest = t
        return True

    def tick(self, now: float) -> list[Incident]:
        """Resolve the incidents quiet at `now` on the log's clock: by the same rule as the sweep
        in `add`, so when a tick comes never changes which incident an anomaly joins."""
        self._expire_held(now)
        events = self._release(now)
        for i in self._quiet(now):
            events += self._resolve(i, now)
        return events + self._wake(now)

    def close(self) -> list[Incident]:
        """Resolve every open incident (end of a scan); held anomalies are isolated."""
        self._expire_held(math.inf)
        events: list[Incident] = []
        for i in sorted([*self._open.values(), *self._holding.values()], key=_first_seen):
            events += self._resolve(i, math.inf) if i.incident_id in self._open else self._tell_resolved(i)
        self._holding.clear()
        self._releases.clear()
        self._waiting.clear()
        self._wakes.clear()
        return events

    @property
    def clock(self) -> float:
        """The grouper's log clock: the latest believed anomaly time (-inf before any). A tick
        must not run ahead of it: a lone timestamp years ahead, which the grouper does not
        believe, would otherwise resolve in a live run incidents that a scan keeps open."""
        return self._latest

    @property
    def open_count(self) -> int:
        """Incidents currently open."""
        return len(self._open)

    # ---- internals

    def _absorb(self, inc: _Open, anomaly: Anomaly, key: tuple[int, str, tuple[str, ...]] | None = None,
                counted: bool = False) -> None:
        """Put `anomaly` in the incident's counts, span, templates, values, entities and samples;
        its explanation kinds too unless it is `counted` only (a storm's repeat: its fact kinds
        are those of its key, already there, and what its models said is not read)."""
        cfg = self.config
        line = anomaly.line
        _count_in(inc, line.time, line.time_from_arrival, anomaly.verdict, line.line.level, cfg.episode_gap_secs)
        tid = line.template_id
        if tid in inc.templates or len(inc.templates) < cfg.max_templates:
            if tid not in inc.templates:
                inc.template_text[tid] = line.template[:_MAX_LINE_CHARS]
                if len(inc.words) < _MAX_INCIDENT_WORDS:
                    inc.words |= template_words(line.template)
            inc.templates[tid] += 1
        if line.is_new:
            inc.new_templates.add(tid)
            if tid not in inc.held_templates and _held_back(anomaly):
                inc.held_templates.add(tid)
            if line.line.entity == line.line.source:
                inc.new_streams.add(line.line.source)
        values = inc.values
        for value in line.params:
            kept = value[:_MAX_VALUE_CHARS]
            if kept not in values and len(values) < cfg.max_values and distinctive(value):
                values.add(kept)
        entity = actor_of(line.line)
        if entity not in inc.entities:
            if len(inc.entities) < cfg.max_entities:
                inc.entities.append(entity)
                inc.services.add(service_of(entity))
            else:
                _count_extra(inc, entity)
        if (line.is_new and entity not in inc.starts and len(inc.starts) < cfg.max_entities
                and cfg.restart_programs > 0 and announces_start(line.template)):
            inc.starts[entity] = line.time
        if not counted:
            kinds = inc.kinds
            for e in anomaly.explanations:
                kind = e.kind
                if kind._value_ not in kinds:
                    kinds[kind._value_] = kind
        _keep_repeat(inc, line.line.raw, line.time, line.time_from_arrival, key or _key(anomaly), cfg)

    def _severity(self, inc: _Open) -> IncidentSeverity:
        points = 0
        if inc.max_level >= Level.FATAL:
            points += 3
        elif inc.max_level >= Level.ERROR:
            points += 2
        elif inc.max_level >= Level.WARN:
            points += 1
        if inc.danger:
            points += 2
        lines = inc.anomalies + inc.burst_lines  # a burst's size is its lines, not its one alert
        if lines >= 50:
            points += 2
        elif lines >= 10:
            points += 1
        if len(inc.new_templates) >= 2:
            points += 1
        if inc.danger == 0 and _STRONG_VALUES.isdisjoint(inc.kinds):
            # Weak facts only: LOW, unless so many related lines agree that it is a pattern
            # (an attacker's new address failing dozens of logins) rather than a fluke.
            return IncidentSeverity.MEDIUM if inc.anomalies >= 4 * self.config.weak_cluster else IncidentSeverity.LOW
        if points >= 6:
            return IncidentSeverity.CRITICAL
        if points >= 4:
            return IncidentSeverity.HIGH
        if points >= 2:
            return IncidentSeverity.MEDIUM
        return IncidentSeverity.LOW

    def _snapshot(self, inc: _Open, state: IncidentState) -> Incident:
        # New templates lead (they are what is different about this incident), then by count: a
        # crash loop drags normal lines after it, but "panic: …" is its name.
        ranked = sorted(inc.templates.items(), key=lambda kv: (kv[0] not in inc.new_templates, -kv[1]))
        leading = tuple((tid, inc.template_text.get(tid, ""), count) for tid, count in ranked[:5])
        new_only = bool(inc.templates) and all(tid in inc.new_templates for tid in inc.templates)
        restart = restart_of(inc.starts, self.config.restart_programs, self.config.restart_secs)
        if restart is not None:  # many programs starting at once: what a person calls a restart
            streams = inc.new_streams
            stream = inc.chatter_host or (next(iter(streams)) if len(streams) == 1 else None)
            title = restart_title(*restart, stream)  # the block under it says its lines and programs
        elif inc.chatter_host:  # what it is, then what it holds most of
            programs = len(inc.entities) + _extra_count(inc)
            title = (f"New messages from {plural(programs, 'program')} in {inc.chatter_host}: "
                     + title_from(leading, False, len(inc.templates)))
        else:
            title = title_from(leading, new_only, len(inc.templates), held=leading[0][0] in inc.held_templates)
            if not inc.new_templates and ExplanationKind.BURST._value_ in inc.kinds:
                # Known lines, too many at once: what happened is the burst (Linux_2k's brute force).
                title = f"Burst: {title}"
        if inc.arrival:
            title += " (times from arrival: lines carry no timestamp)"
        extra = _extra_count(inc)
        entities = tuple(inc.entities) + ((f"+{extra} more",) if extra else ())
        return Incident(
            incident_id=inc.incident_id,
            state=state,
            severity=self._severity(inc),
            title=title,
            first_seen=inc.first_seen,
            last_seen=max(inc.last_seen, inc.first_seen),
            anomaly_count=inc.anomalies,
            line_count=inc.anomalies + inc.burst_lines,
            repeats_not_emitted=inc.suppressed,
            entities=entities,
            leading_templates=leading,
            first_line=inc.first_line,
            samples=tuple(inc.samples),
            explanation_kinds=tuple(inc.kinds.values()),
        )

    def _resolve(self, inc: _Open, now: float) -> list[Incident]:
        """Take `inc` out of the open set (kept for late lines); its `resolved` event if due now:
        one that came back before is held (`resolve_hold`) and told by `_release`."""
        self._waiting.pop(inc.incident_id, None)  # (its resolve tells what waited)
        if self._open.pop(inc.incident_id, None) is not None:
            self._index.retire(inc)
            # Kept for lines that arrive behind the log's clock (`_match`), indexed only when one
            # comes: a log in time order pays a dict entry per resolved incident, nothing more.
            self._resolved[inc.incident_id] = inc
            self._resolved_unindexed[inc.incident_id] = inc
            if len(self._resolved) > self.config.max_resolved:
                oldest = self._resolved.pop(next(iter(self._resolved)))
                if self._resolved_unindexed.pop(oldest.incident_id, None) is None:
                    self._resolved_index.remove(oldest)
        cfg = self.config
        # Quiet since its last line (not since the sweep that found it: a scan sweeps when the next
        # anomaly comes, a live run on every tick) for its quiet period or the hold, the longer.
        hold = resolve_hold(longest_gap(inc.episodes), cfg.resolve_hold_factor, cfg.resolve_hold_max_secs)
        quiet = max(cfg.quiet_secs, cfg.gap_secs, cfg.episode_gap_secs) + self._disorder
        release_at = max(inc.last_seen, inc.first_seen) + max(quiet, hold)
        told = inc.told.event
        if told is not None and told.state is IncidentState.RESOLVED:
            # told resolved before, joined since by lines behind the clock: its corrected totals
            # at the backoff's pace (a live run ticks every second, each late line would be one)
            release_at = max(release_at, inc.told.next_at)
        if not release_at > now:
            return self._tell_resolved(inc)
        inc.told.release_at = release_at
        self._holding[inc.incident_id] = inc
        self._held_seq += 1
        heapq.heappush(self._releases, (release_at, self._held_seq, inc))
        if len(self._releases) > 4 * len(self._holding) + 64:  # (entries of those that came back)
            first, self._held_seq = self._held_seq, self._held_seq + len(self._holding)
            self._releases = [(i.told.release_at, first + n, i) for n, i in enumerate(self._holding.values(), 1)]
            heapq.heapify(self._releases)
        if len(self._holding) <= cfg.max_resolved:
            return []
        return self._release(math.inf, 1)  # (bounded: the one due first is told now)

    def _release(self, now: float, most: int = -1) -> list[Incident]:
        """Tell resolved the held incidents due at `now` (at most `most` of them; -1: all)."""
        events: list[Incident] = []
        heap, holding = self._releases, self._holding
        while heap and heap[0][0] <= now and most != 0:
            release_at, _, inc = heapq.heappop(heap)
            if holding.get(inc.incident_id) is inc and inc.told.release_at == release_at:
                del holding[inc.incident_id]
                events += self._tell_resolved(inc)
                most -= 1
        return events

    def _tell_resolved(self, inc: _Open) -> list[Incident]:
        """Its `resolved` event, unless the sink was told exactly this already (an incident told
        resolved that a late line joined and left unchanged in every field)."""
        told = inc.told
        told.release_at = math.inf
        event = self._snapshot(inc, IncidentState.RESOLVED)
        if event == told.event:
            return []
        if told.event is not None and told.event.state is IncidentState.RESOLVED:
            told.updates += 1  # a correction: the next one waits longer
        self._remember(inc, event, self._latest)
        return [event]

    def _remember(self, inc: _Open, event: Incident, now: float) -> None:
        cfg = self.config
        told = inc.told
        self._waiting.pop(inc.incident_id, None)  # (told now: nothing waits)
        told.remember(event, now, backoff(told.updates, cfg.update_every_secs, cfg.update_backoff_max_secs),
                      len(inc.templates), len(inc.entities) + inc.extra_set, len(inc.kinds), inc.danger > 0)

    def _due(self, inc: _Open, t: float) -> list[Incident]:
        """The event the update contract (`agent/incident_updates.py`) says is due after an
        anomaly or a burst line at `t` joined `inc`: its `open`, an `update`, or none."""
        told = inc.told
        previous = told.event
        if previous is None:
            event = self._snapshot(inc, IncidentState.OPEN)
            self._remember(inc, event, self._now(t))
            return [event]
        now = self._now(t)
        if previous.state is IncidentState.RESOLVED:
            if self._is_stale(inc, now):
                return []  # a late line in its past: not back (`_tell_resolved` corrects its totals)
            told.updates = -1  # back: told at once, and its backoff starts again
        elif now < told.next_at:
            # (a rising severity is told at once; none rises above a CRITICAL told: not computed)
            if told.severity is IncidentSeverity.CRITICAL or self._severity(inc) <= told.severity:
                if inc.incident_id not in self._waiting:  # what changed waits for the backoff's end
                    self._waiting[inc.incident_id] = inc
                    self._held_seq += 1
                    heapq.heappush(self._wakes, (told.next_at, self._held_seq, inc))
                return []
        elif not self._changed(inc):
            return []
        return [self._tell_update(inc, now)]

    def _changed(self, inc: _Open) -> bool:
        """Whether `inc` holds a change its last event did not tell (`notable`, or a severity above
        any told)."""
        told = inc.told
        return (notable(told, inc.anomalies, inc.anomalies + inc.burst_lines, len(inc.templates),
                        len(inc.entities) + inc.extra_set, len(inc.kinds), inc.danger > 0)
                or self._severity(inc) > told.severity)

    def _tell_update(self, inc: _Open, now: float) -> Incident:
        inc.told.updates += 1
        event = self._snapshot(inc, IncidentState.UPDATE)
        self._remember(inc, event, now)
        return event

    def _wake(self, now: float) -> list[Incident]:
        """The updates of open incidents whose backoff ended by `now` with a change waiting (no
        anomaly of theirs came since to tell it)."""
        events: list[Incident] = []
        heap, waiting = self._wakes, self._waiting
        while heap and heap[0][0] <= now:
            at, _, inc = heapq.heappop(heap)
            if waiting.get(inc.incident_id) is not inc or inc.told.next_at != at:
                continue  # (told since, or resolved)
            del waiting[inc.incident_id]
            if inc.incident_id in self._open and self._changed(inc):
                events.append(self._tell_update(inc, now))
        return events

    def _now(self, t: float) -> float:
        """The log's clock for the update contract at a line of time `t`: the grouper's clock, or
        `t` when a little ahead of it (a burst's line after the last anomaly)."""
        latest = self._latest
        if math.isfinite(t) and (latest < t <= latest + _MAX_CLOCK_STEP_SECS or not math.isfinite(latest)):
            return t
        return latest


_EXTRA_BITS = 32_768  # an incident's counter of entities beyond the named ones: 4 KiB
_EXTRA_SHIFT = 32 - 15  # (a 32-bit hash's top 15 bits: one of `_EXTRA_BITS`)


def _count_extra(inc: _Open, entity: str) -> None:
    """Count an entity beyond the incident's named ones: one bit per CRC-32 of its name (a linear
    counter, Whang et al. 1990: a storm over thousands of nodes is counted in 4 KiB, the same on
    every host and run), so "+N more" counts entities, not lines."""
    bits = inc.extra_bits
    if bits is None:
        bits = inc.extra_bits = bytearray(_EXTRA_BITS // 8)
    # (CRC-32 spread by a multiplicative hash: names that differ by a digit must not fall in a row)
    h = ((zlib.crc32(entity.encode("utf-8", "surrogatepass")) * 0x9E3779B1) & 0xFFFFFFFF) >> _EXTRA_SHIFT
    mask = 1 << (h & 7)
    if not bits[h >> 3] & mask:
        bits[h >> 3] |= mask
        inc.extra_set += 1


def _extra_count(inc: _Open) -> int:
    """How many distinct entities beyond the named ones the incident holds (`_count_extra`): the
    bits set, corrected for names that met on a bit (exact but for such meetings: < 1 % off up to
    tens of thousands)."""
    n = inc.extra_set
    if n == 0:
        return 0
    if n >= _EXTRA_BITS:
        return round(_EXTRA_BITS * math.log(_EXTRA_BITS))
    return max(n, round(-_EXTRA_BITS * math.log1p(-n / _EXTRA_BITS)))


def _held_back(anomaly: Anomaly) -> bool:
    """Whether this never-seen line's template is one the history held back (its NEW_TEMPLATE
    explanation says where the history has it: `Explainer`, `profile.json` `held_back`)."""
    return _explained(anomaly.explanations)[2]


def _new_actor(anomaly: Anomaly) -> str | None:
    """The informative actor (`_related`'s: an entity, or the component when the entity is only
    the stream) of a never-seen line at a routine level (below WARN) and not DANGER: new chatter
    of a program, not a new problem. None otherwise."""
    line = anomaly.line.line
    return _new_actor_from(line.level, anomaly.verdict, line.entity, line.source, line.component)


def _new_actor_from(level: Level, verdict: Verdict, entity: str, source: str, component: str) -> str | None:
    """`_new_actor` from the line's level, verdict, entity, source and component."""
    if level >= Level.WARN or verdict is Verdict.DANGER:
        return None
    actor = actor_from(entity, source, component)
    return actor if actor and actor != source else None


def _host_of(line: ParsedLine) -> str | None:
    """The stream of a line whose syslog header names a host and whose component is the program
    that logged it, on a stream with no entity of its own (`host_chatter_programs`): a host's own
    log. By the stream, not the host name: a laptop's name follows its network (Mac_2k's
    `calvisitor-10-105-160-95`, `authorMacBook-Pro`, … 31 names in its scanned half). None for any other line."""
    if line.entity != line.source or not line.component:
        return None
    if not line.field("host") or line.field("app") != line.component:
        return None
    return line.source


def _entry_order(inc: _Open) -> int:
    return inc.order


_MAX_EPISODES = 64  # episodes an incident remembers (the earliest in log time are forgotten first)


def _episode_start(span: list[float]) -> float:
    return span[0]


def _keep_repeat(inc: _Open, raw_line: str, t: float, time_from_arrival: bool,
                 key: tuple[int, str, tuple[str, ...]], cfg: IncidentConfig) -> None:
    """Count the line (its raw text, time and whether that is its arrival time) under its repeat
    key and its storm (`repeat_emitted`) and keep it as a sample."""
    if key in inc.repeats or len(inc.repeats) < cfg.max_repeat_keys:
        inc.repeats[key] += 1
    storm = (key[0], key[2])
    if storm in inc.storms or len(inc.storms) < cfg.max_repeat_keys:
        inc.storms[storm] += 1
    # The raw line carries its own timestamp; only an arrival time needs saying.
    raw = raw_line[:_MAX_LINE_CHARS]
    sample = f"[arrived {_stamp(t)}] {raw}" if time_from_arrival else raw
    if len(inc.samples) < cfg.max_samples:
        inc.samples.append(sample)
    else:
        # Keep the first half (how it started) and roll the second half (how it goes now).
        head = max(1, cfg.max_samples // 2)
        if cfg.max_samples > head:
            del inc.samples[head]
            inc.samples.append(sample)


def _count_in(inc: _Open, t: float, time_from_arrival: bool, verdict: Verdict, level: Level, gap: float) -> None:
    """Count an anomaly (its line's time, whether that is its arrival time, its verdict and
    level) in the incident: its span and episodes, how many, how bad, how timed."""
    if math.isfinite(t):
        _stretch(inc, t, gap)
    inc.anomalies += 1
    if time_from_arrival:
        inc.arrival = True
    if verdict is Verdict.DANGER:
        inc.danger += 1
    if level > inc.max_level:
        inc.max_level = level


def _stretch(inc: _Open, t: float, gap: float) -> None:
    """Stretch the incident's span and episodes over a line at the finite time `t`."""
    inc.first_seen = min(inc.first_seen, t) if math.isfinite(inc.first_seen) else t
    inc.last_seen = max(inc.last_seen, t) if math.isfinite(inc.last_seen) else t
    _add_to_episodes(inc.episodes, t, gap)


def _add_to_episodes(spans: list[list[float]], t: float, gap: float) -> None:
    """Put a line at `t` in the episodes `spans` (sorted [start, end], no two within `gap`): it
    extends the episode it falls in or next to, joins two that it bridges, or starts its own."""
    if spans and spans[-1][0] <= t:  # in or after the latest episode (most lines): no search
        last = spans[-1]
        if not starts_new_episode(last[1], t, gap):
            if t > last[1]:
                last[1] = t
            return
        i = len(spans)
    else:
        i = bisect.bisect_right(spans, t, key=_episode_start)
    left = spans[i - 1] if i and not starts_new_episode(spans[i - 1][1], t, gap) else None
    right = spans[i] if i < len(spans) and not starts_new_episode(t, spans[i][0], gap) else None
    if left is not None and right is not None:
        left[1] = max(left[1], right[1])
        del spans[i]
    elif left is not None:
        left[1] = max(left[1], t)
    elif right is not None:
        right[0] = t
    else:
        spans.insert(i, [t, t])
        if len(spans) > _MAX_EPISODES:
            del spans[0]


class _OpenIndex:
    """Open incidents by the keys that can relate an anomaly to them: template, new-template
    stream, actor, service, distinctive value, content word. An incident is listed under a key
    exactly while it is open and holds that key, so a lookup returns every incident `_related`
    could accept (plus some it will not) at a cost set by the anomaly, not by how many are open.

    A word common to many incidents ("error") would list them all: the anomaly's most common
    word is looked up only among incidents with so few words that one shared word can reach
    the overlap threshold (`small_words`); an incident sharing two or more words is found
    through its other word anyway."""

    def __init__(self, word_overlap: float) -> None:
        """Empty: no incident open. `word_overlap` is the Jaccard threshold that relates words."""
        self.word_overlap = word_overlap
        self.small_words: dict[str, set[_Open]] = {}
        self.templates: dict[int, set[_Open]] = {}
        self.streams: dict[str, set[_Open]] = {}
        self.actors: dict[str, set[_Open]] = {}
        self.services: dict[str, set[_Open]] = {}
        self.values: dict[str, set[_Open]] = {}
        self.words: dict[str, set[_Open]] = {}
        # Resolved incidents still listed (never returned): unlisted together once there are more
        # than `_MAX_RETIRED`, so one reopened before that (new behaviour recurring) is not re-listed.
        self.retired: set[_Open] = set()

    def lookup(self, templates: Sequence[int], stream: str | None, actor: str | None,
               values: Sequence[str], words: frozenset[str]) -> set[_Open]:
        """The incidents listed under any of these keys."""
        found: set[_Open] = set()
        for tid in templates:
            found |= self.templates.get(tid, set())
        if stream is not None:
            found |= self.streams.get(stream, set())
        if actor is not None:
            found |= self.actors.get(actor, set())
            found |= self.services.get(service_of(actor), set())
        for value in values:
            found |= self.values.get(value[:_MAX_VALUE_CHARS], set())
        buckets = sorted(((self.words.get(w, _NONE), w) for w in words), key=lambda bw: len(bw[0]))
        for bucket, _ in buckets[:-1]:
            found |= bucket
        if buckets:
            found |= self.small_words.get(buckets[-1][1], _NONE)
        if self.retired:
            found -= self.retired
        return found

    def _small(self, inc: _Open) -> bool:
        """One shared word can relate this incident: |its words| × threshold ≤ 1."""
        return len(inc.words) * self.word_overlap <= 1.0 + 1e-9

    def add_line(self, inc: _Open, anomaly: Anomaly) -> None:
        """List `inc` under the keys that absorbing `anomaly` may have given it."""
        line = anomaly.line
        tid = line.template_id
        if tid in inc.templates:
            _put(self.templates, tid, inc)
            if inc.templates[tid] == 1:  # the template is new to the incident: so may its words be
                for word in template_words(line.template):
                    if word in inc.words:
                        _put(self.words, word, inc)
                        if self._small(inc):
                            _put(self.small_words, word, inc)
        if line.line.source in inc.new_streams:
            _put(self.streams, line.line.source, inc)
        entity = actor_of(line.line)
        if entity in inc.entities:
            _put(self.actors, entity, inc)
            _put(self.services, service_of(entity), inc)
        for value in line.params:
            if value[:_MAX_VALUE_CHARS] in inc.values:
                _put(self.values, value[:_MAX_VALUE_CHARS], inc)

    def add_all(self, inc: _Open) -> None:
        """List `inc` under every key it holds (an incident entering, or reopened). One reopened
        while still listed keeps its listing: every key it held when it resolved (it has not
        changed since), so a lookup finds it wherever a fresh listing would."""
        if inc in self.retired:
            self.retired.discard(inc)
            return
        for tid in inc.templates:
            _put(self.templates, tid, inc)
        for stream in inc.new_streams:
            _put(self.streams, stream, inc)
        for entity in inc.entities:
            _put(self.actors, entity, inc)
        for service in inc.services:
            _put(self.services, service, inc)
        for value in inc.values:
            _put(self.values, value, inc)
        for word in inc.words:
            _put(self.words, word, inc)
            if self._small(inc):
                _put(self.small_words, word, inc)

    def retire(self, inc: _Open) -> None:
        """`inc` was resolved: no lookup returns it; it is unlisted with the others retired once
        they are more than `_MAX_RETIRED` (the index's bytes stay bounded)."""
        self.retired.add(inc)
        if len(self.retired) > _MAX_RETIRED:
            for old in self.retired:
                self.remove(old)
            self.retired.clear()

    def remove(self, inc: _Open) -> None:
        """Unlist `inc` everywhere."""
        _drop(self.templates, inc.templates, inc)
        _drop(self.streams, inc.new_streams, inc)
        _drop(self.actors, inc.entities, inc)
        _drop(self.services, inc.services, inc)
        _drop(self.values, inc.values, inc)
        _drop(self.words, inc.words, inc)
        _drop(self.small_words, inc.words, inc)


_MAX_RETIRED = 64
_K = TypeVar("_K")
_NONE: frozenset[_Open] = frozenset()


def _put(index: dict[_K, set[_Open]], key: _K, inc: _Open) -> None:
    bucket = index.get(key)
    if bucket is None:
        index[key] = {inc}
    else:
        bucket.add(inc)


def _drop(index: dict[_K, set[_Open]], keys: Iterable[_K], inc: _Open) -> None:
    for key in keys:
        bucket = index.get(key)
        if bucket is not None:
            bucket.discard(inc)
            if not bucket:
                del index[key]


def _stamp(t: float) -> str:
    if not math.isfinite(t):
        return "?"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
