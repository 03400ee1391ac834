"""The fleet view: anomaly events of many agents in, one incident per problem across hosts out.

`logdetect fleet --config FILE` runs the agent daemon (the same sources, sinks, queue, acks
and delivery journal) with `FleetPipeline` in place of the model pipeline: its records are the
anomaly events other agents emitted (read from NATS, Forward, a file …; the message field is the
event's `body`). Each anomaly is keyed by its template:

- an online template (id ≥ ONLINE_ID_BASE) by its id alone: online ids are derived from the
  template's first typed form, so two agents name the same new message the same way whatever
  their bundle;
- a trained template by (bundle id, template id): trained ids are shared by the agents serving
  one bundle;
- an event without ids by its template text.

The same template on several hosts within `window_secs` (on the events' own clock) is one fleet
incident listing the hosts. It is emitted (a `logdetect.incident` event, the agents' schema, with
the hosts as `incident.entities`) once it spans `min_hosts` hosts, updated when more hosts join
(once per batch, not per anomaly), and resolved after `quiet_secs` without a new anomaly.

With a `state_dir` the open incidents survive a restart (`agent.fleet_state`): they are saved
after every batch whose events were written (before its acks), and a shutdown keeps them open
instead of resolving them, so the fleet view restarted goes on updating the same incident ids.
Without a `state_dir` a shutdown resolves every open incident.

A host counts a storm's repeats in its incident without emitting them (the storm contract,
`incidents.repeat_emitted`: the first few of a template, then each doubling), so its anomaly
events alone undercount it. The fleet view reads the hosts' incident events too: each carries
the host incident's count of its leading templates (`incident.leading_templates`) and its latest
line (`incident.last_seen`: a fleet incident whose hosts go on counting repeats is not quiet), and a host's
count in a fleet incident is the larger of its anomaly events of the template and what its
incidents counted of it since the fleet incident first saw an anomaly of theirs (an anomaly event
names its host incident, `incident.id`; the host incident's count before that belongs to earlier
fleet incidents). A host tells its incident's counts only when they changed notably (the update
contract, `agent/incident_updates.py`: a doubling, not every minute), so each anomaly event is
one more in its host incident's count as the fleet view knows it: the count a later incident
event says is read from there, and an anomaly counted in one fleet incident is not counted again
in the next. The counts are carried by the fleet incident's next event (an update when a
host joins, its resolution); they trigger none of their own.

An anomaly event that carries an `event.id` (its line came from a JetStream message or a Forward
chunk) is counted once: the latest `RECENT_EVENT_IDS` ids are remembered (and saved with the
incidents), so the same line's anomaly from two agents' sinks, or redelivered to the fleet view
after a crash between its save and its acks, is skipped (`duplicate_anomaly`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from agent.components import count_drop
from agent.config import FleetSettings
from agent.dead_letter import Rejected
from agent.events import ANOMALY, INCIDENT
from agent.fleet_state import FLEET_STATE, kinds_of, load_state, save_state
from agent.pipeline import ONLINE_ID_BASE
from agent.types import ExplanationKind, Incident, IncidentSeverity, IncidentState, Output, Record

log = structlog.get_logger(__name__)

COMPONENT = "fleet"
MAX_SAMPLES = 5
RECENT_EVENT_IDS = 4096  # anomaly event ids remembered (and saved) to count each line once
HOST_COUNTS = 4096  # (host, host incident, template key) counts remembered from incident events
MAX_HOST_INCIDENTS = 64  # host incidents followed per fleet incident


@dataclass(frozen=True, slots=True)
class FleetAnomaly:
    """What the fleet view reads of one agent's anomaly event."""

    key: str
    template_id: int
    template_text: str
    host: str
    time: float
    raw: str
    danger: bool
    kinds: tuple[ExplanationKind, ...]
    event_id: str = ""  # the agent's `event.id` (from the line's input message), "" when none
    incident_id: str = ""  # the host incident it is in (`incident.id`), "" when none

    def to_state(self) -> list[Any]:
        """JSON-ready (`agent.fleet_state`)."""
        return [self.key, self.template_id, self.template_text, self.host, self.time, self.raw, self.danger,
                [k.value for k in self.kinds]]

    @classmethod
    def from_state(cls, v: list[Any]) -> FleetAnomaly:
        """The anomaly `to_state` wrote."""
        return cls(str(v[0]), int(v[1]), str(v[2]), str(v[3]), float(v[4]), str(v[5]), bool(v[6]), kinds_of(v[7]))


@dataclass(frozen=True, slots=True)
class HostCounts:
    """What the fleet view reads of one agent's incident event: its leading templates' counts."""

    host: str
    incident_id: str
    # (template key, template id, its text, anomalies of it the host incident counted)
    counts: tuple[tuple[str, int, str, int], ...]
    last_seen: float | None  # the host incident's latest line (`incident.last_seen`)
    first_line: str  # its first line (`incident.first_line`): a fleet incident's first if it opens one
    danger: bool  # a CRITICAL host incident (its anomalies' verdicts are not in its event)
    kinds: tuple[ExplanationKind, ...]


def template_key(template_id: int | None, text: str, bundle: str) -> str:
    """How anomalies of one template are recognised across hosts (see the module docstring)."""
    if template_id is None:
        return f"text:{text}"
    if template_id >= ONLINE_ID_BASE:
        return f"online:{template_id}"
    return f"bundle:{bundle}:{template_id}"


def _event_time(stamp: str | None) -> float | None:
    """An event's RFC 3339 `timestamp` as epoch seconds (None when absent or unreadable)."""
    if not stamp:
        return None
    try:
        return dt.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _kinds(text: str | None) -> tuple[ExplanationKind, ...]:
    if not text:
        return ()
    try:
        items = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ()
    out: list[ExplanationKind] = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(ExplanationKind(item.get("kind")))
        except (ValueError, AttributeError):
            continue
    return tuple(out)


def read_anomaly(record: Record) -> FleetAnomaly | str:
    """The anomaly an event record carries, or why it is not one (the reason it is skipped).

    Sources flatten the event object into dotted fields (`attributes.template.id`,
    `resource.host.name`); the record's line is the event's body."""
    fields = dict(reversed(record.fields))
    if fields.get("event_name") != ANOMALY:
        return "not_an_anomaly_event"
    text = fields.get("attributes.template.text", "")
    raw_id = fields.get("attributes.template.id")
    try:
        template_id = int(raw_id) if raw_id is not None else None
    except ValueError:
        template_id = None
    host = fields.get("resource.host.name") or fields.get("resource.log.source") or "unknown"
    t = _event_time(fields.get("timestamp"))
    return FleetAnomaly(
        key=template_key(template_id, text, fields.get("resource.logdetect.bundle.id", "")),
        template_id=template_id if template_id is not None else 0,
        template_text=text,
        host=host,
        time=t if t is not None else record.received_at,
        raw=fields.get("attributes.log.raw", record.line),
        danger=fields.get("attributes.anomaly.verdict") == "danger",
        kinds=_kinds(fields.get("attributes.anomaly.explanations")),
        event_id=fields.get("attributes.event.id", ""),
        incident_id=fields.get("attributes.incident.id") or "",
    )


def read_host_counts(record: Record) -> HostCounts | None:
    """The counts an agent's incident event carries (None: not an incident event, or no id)."""
    fields = dict(reversed(record.fields))
    incident_id = fields.get("attributes.incident.id")
    if fields.get("event_name") != INCIDENT or not incident_id:
        return None
    try:
        leading = orjson.loads(fields.get("attributes.incident.leading_templates") or "[]")
    except orjson.JSONDecodeError:
        leading = []
    bundle = fields.get("resource.logdetect.bundle.id", "")
    counts: list[tuple[str, int, str, int]] = []
    for item in leading if isinstance(leading, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("count"), int):
            continue
        raw_id, text = item.get("id"), str(item.get("text", ""))
        template_id = raw_id if isinstance(raw_id, int) else None
        counts.append((template_key(template_id, text, bundle), template_id or 0, text, item["count"]))
    try:
        kinds = kinds_of(orjson.loads(fields.get("attributes.incident.explanation_kinds") or "[]"))
    except orjson.JSONDecodeError:
        kinds = ()
    host = fields.get("resource.host.name") or fields.get("resource.log.source") or "unknown"
    return HostCounts(host, incident_id, tuple(counts), _event_time(fields.get("attributes.incident.last_seen")),
                      fields.get("attributes.incident.first_line", record.line),
                      fields.get("attributes.incident.severity") == "critical", kinds)


@dataclass
class _Open:
    """One fleet incident being built (mutable, private to the grouper)."""

    incident_id: str
    first: FleetAnomaly
    last_seen: float
    hosts: dict[str, int] = field(default_factory=dict)  # host -> anomalies, in order of arrival
    samples: list[str] = field(default_factory=list)
    kinds: dict[ExplanationKind, None] = field(default_factory=dict)
    danger: bool = False
    emitted_hosts: int = 0  # hosts in the last emitted event (0: not emitted yet)
    # (host, host incident) -> [its count of the template when this incident first saw an anomaly
    # of it, the latest count its incident events said] (`FleetGrouper.host_counts`)
    counted: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def add(self, a: FleetAnomaly, reported: int = 0) -> None:
        """Take an anomaly; `reported`: what its host incident had counted of the template
        before it (its latest incident event), the base its later counts are read from."""
        if a.host not in self.hosts and len(self.samples) < MAX_SAMPLES:
            self.samples.append(a.raw)
        self.hosts[a.host] = self.hosts.get(a.host, 0) + 1
        if a.incident_id and len(self.counted) < MAX_HOST_INCIDENTS:
            self.counted.setdefault((a.host, a.incident_id), [reported, reported])
        self.last_seen = max(self.last_seen, a.time)
        self.danger = self.danger or a.danger
        self.kinds.update(dict.fromkeys(a.kinds))

    def to_state(self) -> dict[str, Any]:
        """JSON-ready (`agent.fleet_state`): hosts as pairs, in their order of arrival."""
        return {
            "id": self.incident_id,
            "first": self.first.to_state(),
            "last_seen": self.last_seen,
            "hosts": list(self.hosts.items()),
            "samples": self.samples,
            "kinds": [k.value for k in self.kinds],
            "danger": self.danger,
            "emitted_hosts": self.emitted_hosts,
            "counted": [[host, iid, base, latest] for (host, iid), (base, latest) in self.counted.items()],
        }

    @classmethod
    def from_state(cls, v: dict[str, Any]) -> _Open:
        """The incident `to_state` wrote."""
        return cls(
            incident_id=str(v["id"]),
            first=FleetAnomaly.from_state(v["first"]),
            last_seen=float(v["last_seen"]),
            hosts={str(h): int(n) for h, n in v["hosts"]},
            samples=[str(x) for x in v["samples"]],
            kinds=dict.fromkeys(kinds_of(v["kinds"])),
            danger=bool(v["danger"]),
            emitted_hosts=int(v["emitted_hosts"]),
            counted={(str(h), str(i)): [int(b), int(n)] for h, i, b, n in v.get("counted", [])},
        )

    def host_count(self, host: str) -> int:
        """The host's anomalies of the template here: its anomaly events, or what its incidents
        counted since this incident first saw them when that is more (the repeats it did not emit)."""
        counted = sum(latest - base for (h, _), (base, latest) in self.counted.items() if h == host)
        return max(self.hosts.get(host, 0), counted)

    def incident(self, state: IncidentState) -> Incident:
        n = len(self.hosts)
        severity = (IncidentSeverity.CRITICAL if n >= 10 else IncidentSeverity.HIGH if n >= 3 or self.danger
                    else IncidentSeverity.MEDIUM)
        count = sum(self.host_count(h) for h in self.hosts)
        text = self.first.template_text or self.first.raw
        return Incident(
            incident_id=self.incident_id,
            state=state,
            severity=severity,
            title=f"{text[:160]} — on {n} host{'s' if n != 1 else ''}",
            first_seen=self.first.time,
            last_seen=self.last_seen,
            anomaly_count=count,
            line_count=count,
            entities=tuple(sorted(self.hosts)),
            leading_templates=((self.first.template_id, text, count),),
            first_line=self.first.raw,
            samples=tuple(self.samples),
            explanation_kinds=tuple(self.kinds),
        )


class FleetGrouper:
    """Groups anomalies of the same template across hosts into fleet incidents (one owner thread)."""

    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self._open: dict[str, _Open] = {}
        self._dirty: dict[str, None] = {}
        self._by_last_seen: list[tuple[float, str]] = []  # lazy heap: (last_seen, key), stale entries skipped
        self.clock = 0.0  # the latest event time seen
        self.revision = 0  # moves on with every change of the open incidents (what a save needs)
        self._seen: dict[str, None] = {}  # the latest RECENT_EVENT_IDS anomaly event ids taken
        # (host, host incident, template key) -> its latest count in the host's incident events
        self._reported: dict[tuple[str, str, str], int] = {}

    def first_sight(self, event_id: str) -> bool:
        """True the first time an anomaly event id comes (among the latest RECENT_EVENT_IDS): the
        same line's anomaly from a second agent, or redelivered after a crash, is not counted twice."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > RECENT_EVENT_IDS:
            del self._seen[next(iter(self._seen))]
        self.revision += 1
        return True

    def to_state(self) -> dict[str, Any]:
        """The open incidents, the clock and the recent event ids, JSON-ready (`agent.fleet_state`)."""
        return {"clock": self.clock, "open": [[key, inc.to_state()] for key, inc in self._open.items()],
                "seen": list(self._seen), "reported": [[*k, n] for k, n in self._reported.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back the open incidents `to_state` wrote (replacing any open now)."""
        self._open = {str(key): _Open.from_state(inc) for key, inc in state["open"]}
        self._by_last_seen = [(inc.last_seen, key) for key, inc in self._open.items()]
        heapq.heapify(self._by_last_seen)
        self._dirty.clear()
        self.clock = float(state["clock"])
        self._seen = dict.fromkeys(str(i) for i in state.get("seen", []))
        self._reported = {(str(h), str(i), str(k)): int(n) for h, i, k, n in state.get("reported", [])}

    def add(self, a: FleetAnomaly) -> list[Incident]:
        """Take one anomaly; what it resolved at once (a window passed, the open limit)."""
        self.clock = max(self.clock, a.time)
        self.revision += 1
        out = self._admit(a)
        current = self._open[a.key]
        known = (a.host, a.incident_id, a.key)
        reported = self._reported.get(known, 0)
        current.add(a, reported)
        if a.incident_id:  # its host incident counts it: its next event's count is read from there
            self._report(known, reported + 1)
            followed = current.counted.get((a.host, a.incident_id))
            if followed is not None:
                followed[1] = max(followed[1], reported + 1)
        heapq.heappush(self._by_last_seen, (current.last_seen, a.key))
        self._dirty[a.key] = None
        return out

    def _admit(self, a: FleetAnomaly) -> list[Incident]:
        """Make sure an incident of `a`'s template is open for it (one past `window_secs` is
        resolved and a new one opened); what that resolved."""
        out: list[Incident] = []
        current = self._open.get(a.key)
        if current is not None and a.time - current.last_seen > self.settings.window_secs:
            out += self._resolve(a.key)
            current = None
        if current is None:
            if len(self._open) >= self.settings.max_open:
                out += self._resolve(self._stalest())
            digest = hashlib.blake2b(f"{a.key}\x1f{a.time:.3f}".encode(), digest_size=6).hexdigest()
            self._open[a.key] = _Open(f"fleet-{digest}", a, a.time)
        return out

    def host_counts(self, counts: HostCounts) -> list[Incident]:
        """Take a host incident's counts of its leading templates (see the module): what each grew
        by since its last event goes to the open fleet incident of its template, which the host
        joins (one is opened, as an anomaly would open it, when none is open: a host counting a
        storm's repeats emits no anomaly event for them). Returns what it resolved at once."""
        out: list[Incident] = []
        t = counts.last_seen if counts.last_seen is not None else self.clock
        for key, template_id, text, n in counts.counts:
            known = (counts.host, counts.incident_id, key)
            before = self._reported.get(known, 0)
            if n <= before:
                continue
            self._report(known, n)
            first = FleetAnomaly(key, template_id, text, counts.host, t, counts.first_line, counts.danger,
                                 counts.kinds, incident_id=counts.incident_id)
            out += self._admit(first)
            inc = self._open[key]
            followed = inc.counted.get((counts.host, counts.incident_id))
            if followed is None and len(inc.counted) < MAX_HOST_INCIDENTS:
                followed = inc.counted[(counts.host, counts.incident_id)] = [before, before]
            if followed is not None:
                followed[1] = max(followed[1], n)
            inc.hosts.setdefault(counts.host, 0)  # it has anomalies of the template, if no event of them
            if t > inc.last_seen:  # its repeats go on there: not quiet
                inc.last_seen = t
                heapq.heappush(self._by_last_seen, (t, key))
            self.clock = max(self.clock, t)
            self._dirty[key] = None
        return out

    def _report(self, known: tuple[str, str, str], n: int) -> None:
        """A host incident's count of a template is known to be `n` (bounded: the oldest go first)."""
        self._reported.pop(known, None)  # (re)inserted last
        self._reported[known] = n
        if len(self._reported) > HOST_COUNTS:
            del self._reported[next(iter(self._reported))]

    def changes(self) -> list[Incident]:
        """The incidents to emit after a batch: newly spanning `min_hosts` hosts (open), or with
        more hosts than last emitted (update)."""
        out: list[Incident] = []
        for key in self._dirty:
            inc = self._open.get(key)
            if inc is None or len(inc.hosts) < self.settings.min_hosts or len(inc.hosts) == inc.emitted_hosts:
                continue
            out.append(inc.incident(IncidentState.UPDATE if inc.emitted_hosts else IncidentState.OPEN))
            inc.emitted_hosts = len(inc.hosts)
            self.revision += 1
        self._dirty.clear()
        return out

    def expire(self, clock: float) -> list[Incident]:
        """Resolve the incidents quiet for `quiet_secs` at `clock` (event time)."""
        out: list[Incident] = []
        while self._by_last_seen and clock - self._by_last_seen[0][0] > self.settings.quiet_secs:
            last_seen, key = heapq.heappop(self._by_last_seen)
            inc = self._open.get(key)
            if inc is not None and inc.last_seen == last_seen:
                out += self._resolve(key)
        return out

    def close(self) -> list[Incident]:
        """Resolve every open incident (shutdown)."""
        out: list[Incident] = []
        for key in list(self._open):
            out += self._resolve(key)
        return out

    @property
    def open_count(self) -> int:
        """Fleet incidents open now (emitted or still below `min_hosts`)."""
        return len(self._open)

    def _stalest(self) -> str:
        while True:
            last_seen, key = heapq.heappop(self._by_last_seen)
            inc = self._open.get(key)
            if inc is not None and inc.last_seen == last_seen:
                return key

    def _resolve(self, key: str) -> list[Incident]:
        """The incident's resolution, when it was emitted or reached `min_hosts` (within the
        batch that resolves it: a batch spanning more than `window_secs` of event time)."""
        self.revision += 1
        inc = self._open.pop(key)
        self._dirty.pop(key, None)
        emitted = inc.emitted_hosts or len(inc.hosts) >= self.settings.min_hosts
        return [inc.incident(IncidentState.RESOLVED)] if emitted else []


class FleetPipeline:
    """What the daemon runs for `logdetect fleet`: anomaly event records in, fleet incidents out.

    Implements the daemon's `PipelineLike`: nothing is held between batches (every batch is
    acked once its incidents are written), and the clock is the events' own time, moved on by
    the wall clock only while input is silent (so a fleet incident still resolves). With a
    `state_dir` its open incidents are restored at start and saved by `checkpoint`."""

    provider = "none"

    def __init__(self, settings: FleetSettings, state_dir: Path | None = None) -> None:
        self.grouper = FleetGrouper(settings)
        self._last_input: float | None = None
        self.state_path = state_dir / FLEET_STATE if state_dir is not None else None
        self._saved_revision = 0
        state = load_state(self.state_path) if self.state_path is not None else None
        if state is not None:
            try:
                self.grouper.restore(state)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                reason = str(exc) or type(exc).__name__
                log.warning("fleet state unusable; starting with no open incident", error=reason)
                self.grouper = FleetGrouper(settings)
            else:
                # The wall time of the last input before the stop: the time it was down counts as
                # silence, so the restored incidents still resolve when no input comes.
                last_input = state.get("last_input")
                self._last_input = float(last_input) if isinstance(last_input, int | float) else None
                log.info("fleet incidents restored", open=self.grouper.open_count, path=str(self.state_path))

    def checkpoint(self) -> None:
        """Save the open incidents if they changed (the daemon calls it once a batch's events are
        written, before its acks go out)."""
        if self.state_path is None or self.grouper.revision == self._saved_revision:
            return
        save_state(self.state_path, {**self.grouper.to_state(), "last_input": self._last_input})
        self._saved_revision = self.grouper.revision

    def process(self, records: Sequence[Record], now: float) -> Sequence[Output]:
        """Group the anomaly events among `records`; the incidents opened, updated or resolved."""
        out: list[Output] = []
        for record in records:
            anomaly = read_anomaly(record)
            if isinstance(anomaly, str):
                counts = read_host_counts(record)
                if counts is not None:  # a host's incident: how many of its templates it counted
                    out += self.grouper.host_counts(counts)
                    continue
                count_drop(COMPONENT, anomaly)
                continue
            if anomaly.event_id and not self.grouper.first_sight(anomaly.event_id):
                count_drop(COMPONENT, "duplicate_anomaly")
                continue
            out += self.grouper.add(anomaly)
        if records:
            self._last_input = now
        out += self.grouper.changes()
        out += self.grouper.expire(self.grouper.clock)
        return out

    def tick(self, now: float) -> Sequence[Output]:
        """Resolve quiet incidents; a silent input moves the events' clock on by the silence."""
        silence = now - self._last_input if self._last_input is not None else 0.0
        return self.grouper.expire(self.grouper.clock + max(0.0, silence))

    def close(self, now: float) -> Sequence[Output]:
        """With a state dir: keep the open incidents (saved; the next start takes them back).
        Without one: resolve every open fleet incident."""
        if self.state_path is not None:
            return []
        return self.grouper.close()

    def pending_records(self) -> int:
        """Nothing is held between batches."""
        return 0

    def flush_pending(self, now: float) -> Sequence[Output]:
        """Nothing is held between batches."""
        return []

    def take_rejected(self) -> list[Rejected]:
        """No record is rejected: one that is not an anomaly event is counted and skipped."""
        return []

    def held_by_source(self) -> dict[str, int]:
        """Nothing is held between batches."""
        return {}
