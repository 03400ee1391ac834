"""The output contract: one JSON object per line, field names defined once, and its JSON Schema.

This is the only module that builds event JSON. The pipeline and the sources hand over typed
`Event`s (`agent.types`); `render`/`encode_all` turn them into event objects/lines at the sink
edge (the daemon, `scan`).

The envelope follows the OpenTelemetry log data model (timestamp, observed_timestamp,
severity_text/number, body, resource, attributes, event_name); attributes use ECS-style dotted
names (`event.kind`, `template.id`, `incident.state`, ...). `schema_version` comes first.

A line or anomaly event of a line whose source gave it an `origin` (a JetStream message) carries
`event.id` (`event_id`): the same whichever agent processed the line, so a sink can have the
re-publication after a redelivery dropped (the `nats` sink's `Nats-Msg-Id`) and a reader of
several agents' files can drop the copies.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from agent.explain_models import raised_by
from agent.text_memo import remember
from agent.types import (
    Anomaly,
    DataGap,
    DetectorScore,
    Event,
    Explanation,
    ExplanationKind,
    Incident,
    IncidentSeverity,
    IncidentState,
    Level,
    LineResult,
    SessionVerdict,
    Verdict,
)
from agent.wording import burst_more, plural

SCHEMA_VERSION = 1

# event names
ANOMALY = "logdetect.anomaly"
INCIDENT = "logdetect.incident"
SESSION = "logdetect.session"
LINE = "logdetect.line"
DATA_GAP = "logdetect.data_gap"
EVENT_NAMES = (ANOMALY, INCIDENT, SESSION, LINE, DATA_GAP)

_VERDICT_LEVEL = {Verdict.NORMAL: Level.INFO, Verdict.WATCH: Level.WARN, Verdict.DANGER: Level.ERROR}
_INCIDENT_LEVEL = {
    IncidentSeverity.LOW: Level.INFO,
    IncidentSeverity.MEDIUM: Level.WARN,
    IncidentSeverity.HIGH: Level.ERROR,
    IncidentSeverity.CRITICAL: Level.FATAL,
}
# Enum names and values read once (an Enum member's `.name`/`.value` is a descriptor call each
# time); the event path reads them for every anomaly, explanation and incident.
# (one dict per IntEnum: Level.TRACE == IncidentSeverity.LOW as ints)
_LEVEL_NAME: dict[Level, str] = {m: m.name for m in Level}
_SEVERITY_NAME: dict[IncidentSeverity, str] = {m: m.name for m in IncidentSeverity}
_VALUE: dict[enum.Enum, str] = {m: m.value for e in (Verdict, IncidentState, ExplanationKind) for m in e}
_OTEL: dict[Level, int] = {m: m.otel_number for m in Level}
_SECONDS: dict[int, str] = {}  # whole second -> its RFC 3339 text up to the seconds (bounded)


def rfc3339(t: float) -> str:
    """UTC, millisecond precision, `Z` suffix."""
    if not (-62135596800.0 <= t < 253402300800.0):  # outside years 1..9999: clamp, never crash
        t = 0.0
    secs = int(t // 1)
    ms = int((t - secs) * 1000)
    head = _SECONDS.get(secs)
    if head is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        head = _SECONDS[secs] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{head}.{ms:03d}Z"


def _facts(pairs: tuple[tuple[str, object], ...]) -> dict[str, object]:
    return dict(pairs)


def explanation_dict(e: Explanation) -> dict[str, Any]:
    """An explanation as event attributes: kind, text and its facts."""
    return {"kind": _VALUE[e.kind], "text": e.text, "facts": _facts(e.facts)}


def said_in_body(explanations: Sequence[Explanation], scores: Sequence[DetectorScore]) -> str:
    """What an alert's body says: the first line of each explanation (each says what was seen,
    a model's in the terms of the line); with none, which detectors fired and by how much. Never
    the ensemble's combined score: it has no unit a person knows (a rule alone makes it 2.00)."""
    said = "; ".join(e.text.splitlines()[0] for e in explanations if e.text)
    return said or raised_by(scores, explanations)


def _envelope(name: str, t: float, observed: str, level: Level, body: str, attrs: dict[str, Any],
              resource: dict[str, str]) -> dict[str, Any]:
    """An event of the schema; `observed` already as RFC 3339 text (one stamp for many events)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event_name": name,
        "timestamp": rfc3339(t),
        "observed_timestamp": observed,
        "severity_text": _LEVEL_NAME[level],
        "severity_number": _OTEL[level],
        "body": body,
        "resource": resource,
        "attributes": attrs,
    }


def event_id(event: Event) -> str | None:
    """The identity of an event derived from one input line alone (its line and anomaly events):
    the line's `origin` and the event's kind, the same on whichever agent processes the line.
    None for the others (incidents, sessions, data gaps: an agent's own aggregates)."""
    if isinstance(event, LineResult):
        origin = event.line.line.origin
        return f"{origin}/line" if origin else None
    if isinstance(event, Anomaly):
        origin = event.line.line.origin
        return f"{origin}/anomaly" if origin else None
    return None


def anomaly_event(a: Anomaly, observed: float, provider: str, scope: str = "line") -> dict[str, Any]:
    """The event of one anomalous line (or session with scope='session')."""
    return _anomaly_event(a, rfc3339(observed), provider, scope)


def _anomaly_event(a: Anomaly, observed: str, provider: str, scope: str = "line") -> dict[str, Any]:
    """`anomaly_event` with the observed time as text."""
    tl = a.line
    pl = tl.line
    verdict_of = a.verdict
    level = _VERDICT_LEVEL[verdict_of]
    verdict = _VALUE[verdict_of]
    body = f"{verdict.upper()} {pl.entity}: {pl.message[:200]} — {said_in_body(a.explanations, a.scores)}"
    attrs: dict[str, Any] = {
        "event.kind": "alert",
        "event.category": "anomaly",
        "event.type": scope,
        "anomaly.score": round(a.score, 6),
        "anomaly.verdict": verdict,
        "anomaly.scores": [_score_dict(s) for s in a.scores],
        "anomaly.explanations": [explanation_dict(e) for e in a.explanations],
        "log.raw": pl.raw,
        "log.level": _LEVEL_NAME[pl.level],
        "log.line_no": pl.line_no,
        "log.time_from_arrival": tl.time_from_arrival,
        "entity": pl.entity,
        "template.id": tl.template_id,
        "template.text": tl.template,
        "template.is_new": tl.is_new,
        "template.params": list(tl.params),
        "incident.id": a.incident_id,
        "model.provider": provider,
    }
    if pl.origin:
        attrs["event.id"] = f"{pl.origin}/anomaly"
    return _envelope(ANOMALY, tl.time, observed, level, body, attrs, {"log.source": pl.source})


def _score_dict(s: DetectorScore) -> dict[str, Any]:
    return {"detector": s.detector, "score": round(s.score, 6), "threshold": round(s.threshold, 6), "fired": s.fired}


_J = orjson.dumps
# What an anomaly event line holds before and after its varying values (`_Spliced`).
_ANOMALY_HEAD = b'{"schema_version":' + _J(SCHEMA_VERSION) + b',"event_name":' + _J(ANOMALY) + b',"timestamp":'
_SEVERITY_BODY = {v: b',"severity_text":' + _J(_LEVEL_NAME[lv]) + b',"severity_number":' + _J(_OTEL[lv]) + b',"body":'
                  for v, lv in _VERDICT_LEVEL.items()}
_ANOMALY_ATTRS_HEAD = (b',"attributes":{"event.kind":"alert","event.category":"anomaly","event.type":"line",'
               b'"anomaly.score":')
_LEVEL_BYTES: dict[Level, bytes] = {m: _J(m.name) for m in Level}
_BOOL = {True: b"true", False: b"false"}


class _Spliced:
    """Anomaly event lines for `encode_all`, spliced from encoded pieces: the same bytes as
    `encode(anomaly_event(...))` (orjson writes an object as its keys and values, each encoded
    as on its own, in order and with no spaces), without building the event's dicts. The pieces
    that repeat across a storm's anomalies are encoded once: an explanation by identity (the
    explainer hands the same object to every line whose facts are the same:
    `Explainer._fixed_facts`), with the first line of its text (what the body says); a
    detector's score by (detector, score, threshold, fired) where that key tells two scores
    apart (floats, not zero: 0.0 == -0.0 and 1 == 1.0, but they are written differently); a
    short template's id, text and newness by their values."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self.explanations: dict[int, tuple[Explanation, bytes, str | None]] = {}
        self.scores: dict[tuple[str, float, float, bool], bytes] = {}
        self.templates: dict[tuple[int, str, bool], bytes] = {}

    def explanation(self, e: Explanation) -> tuple[bytes, str | None]:
        """The explanation's encoded object and the first line of its text (None for no text)."""
        found = self.explanations.get(id(e))
        if found is None or found[0] is not e:
            found = (e, _J(explanation_dict(e)), e.text.splitlines()[0] if e.text else None)
            remember(self.explanations, id(e), found, self.max_entries)  # (holds `e`: its id stays its own)
        return found[1], found[2]

    def score(self, s: DetectorScore) -> bytes:
        """The score's encoded object."""
        score, threshold = s.score, s.threshold
        if type(score) is not float or type(threshold) is not float or not score or not threshold:
            return _J(_score_dict(s))
        key = (s.detector, score, threshold, s.fired)
        found = self.scores.get(key)
        if found is None:
            found = _J(_score_dict(s))
            remember(self.scores, key, found, self.max_entries)
        return found

    def template(self, template_id: int, template: str, is_new: bool) -> bytes:
        """`,"template.id":…,"template.text":…,"template.is_new":…` (remembered for short texts)."""
        key = (template_id, template, is_new)
        found = self.templates.get(key)
        if found is None:
            found = (b',"template.id":' + _J(template_id) + b',"template.text":' + _J(template)
                     + b',"template.is_new":' + _BOOL[bool(is_new)])
            if type(is_new) is not bool:  # (written as it is: only a bool has the bytes above)
                found = (b',"template.id":' + _J(template_id) + b',"template.text":' + _J(template)
                         + b',"template.is_new":' + _J(is_new))
            if len(template) <= 1024:
                remember(self.templates, key, found, self.max_entries)
        return found

    def line(self, a: Anomaly, observed: bytes, provider: bytes, resource: bytes) -> bytes:
        """The event line of `a`; `observed` (`,"observed_timestamp":"…"`), `provider` (the
        encoded provider) and `resource` (the encoded resource object) as the caller has them."""
        tl = a.line
        pl = tl.line
        verdict_of = a.verdict
        verdict = _VALUE[verdict_of]
        explanation = self.explanation
        parts = [explanation(e) for e in a.explanations]
        said = "; ".join([first for _, first in parts if first is not None]) or raised_by(a.scores, a.explanations)
        score = self.score
        arrival = tl.time_from_arrival
        pieces = [
            _ANOMALY_HEAD, _J(rfc3339(tl.time)), observed, _SEVERITY_BODY[verdict_of],
            _J(f"{verdict.upper()} {pl.entity}: {pl.message[:200]} — {said}"),
            b',"resource":', resource, _ANOMALY_ATTRS_HEAD, _J(round(a.score, 6)),
            b',"anomaly.verdict":', _J(verdict),
            b',"anomaly.scores":[', b",".join([score(s) for s in a.scores]),
            b'],"anomaly.explanations":[', b",".join([encoded for encoded, _ in parts]),
            b'],"log.raw":', _J(pl.raw),
            b',"log.level":', _LEVEL_BYTES[pl.level],
            b',"log.line_no":', _J(pl.line_no),
            b',"log.time_from_arrival":', _BOOL[arrival] if type(arrival) is bool else _J(arrival),
            b',"entity":', _J(pl.entity),
            self.template(tl.template_id, tl.template, tl.is_new),
            b',"template.params":', _J(list(tl.params)),
            b',"incident.id":', _J(a.incident_id),
            b',"model.provider":', provider,
        ]
        if pl.origin:
            pieces += (b',"event.id":', _J(f"{pl.origin}/anomaly"))
        pieces.append(b"}}")
        return b"".join(pieces)


_SPLICED = _Spliced()
_INCIDENT_HEAD = b'{"schema_version":' + _J(SCHEMA_VERSION) + b',"event_name":' + _J(INCIDENT) + b',"timestamp":'
_INCIDENT_SEVERITY = {s: (b',"severity_text":' + _J(_LEVEL_NAME[lv]) + b',"severity_number":' + _J(_OTEL[lv])
                          + b',"body":') for s, lv in _INCIDENT_LEVEL.items()}
_INCIDENT_STATE = {s: (b',"attributes":{"event.kind":"alert","event.category":"incident","event.type":'
                       + _J(s.value) + b',"incident.id":') for s in IncidentState}


def incident_body(i: Incident, state: str, severity: str) -> str:
    """An incident event's body: its id, state, title and severity, and its lines as the summary
    counts them ("— 1 anomalous line", "— 2 anomalous lines (+42 more lines of its burst)")."""
    return (f"Incident {i.incident_id} {state}: {i.title} [{severity}] — "
            f"{plural(i.anomaly_count, 'anomalous line')}{burst_more(i.anomaly_count, i.line_count)}")


def _incident_line(i: Incident, observed: bytes, resource: bytes) -> bytes:
    """`encode(incident_event(i, …))` spliced from its values (as `_Spliced.line` does for an
    anomaly: orjson writes a tuple as it writes a list); `observed` and `resource` as there."""
    state, severity = i.state._value_, _SEVERITY_NAME[i.severity]
    last_seen = _J(rfc3339(i.last_seen))
    count = _J(i.anomaly_count)
    return b"".join((
        _INCIDENT_HEAD, last_seen, observed, _INCIDENT_SEVERITY[i.severity],
        _J(incident_body(i, state, severity)),
        b',"resource":', resource, _INCIDENT_STATE[i.state], _J(i.incident_id),
        b',"incident.state":', _J(state), b',"incident.severity":', _J(severity.lower()),
        b',"incident.title":', _J(i.title), b',"incident.first_seen":', _J(rfc3339(i.first_seen)),
        b',"incident.last_seen":', last_seen, b',"incident.anomaly_count":', count,
        b',"incident.line_count":', _J(i.line_count), b',"incident.repeats_not_emitted":', _J(i.repeats_not_emitted),
        b',"incident.entities":', _J(i.entities),
        b',"incident.leading_templates":',
        _J([{"id": tid, "text": text, "count": n} for tid, text, n in i.leading_templates]),
        b',"incident.first_line":', _J(i.first_line), b',"incident.samples":', _J(i.samples),
        b',"incident.explanation_kinds":', _J([k._value_ for k in i.explanation_kinds]),
        b',"aggregation_key":', _J(i.incident_id), b"}}",
    ))


def incident_event(i: Incident, observed: float) -> dict[str, Any]:
    """The event of an incident opening, updating or resolving."""
    level = _INCIDENT_LEVEL[i.severity]
    state, severity = _VALUE[i.state], _SEVERITY_NAME[i.severity]
    body = incident_body(i, state, severity)
    attrs: dict[str, Any] = {
        "event.kind": "alert",
        "event.category": "incident",
        "event.type": state,
        "incident.id": i.incident_id,
        "incident.state": state,
        "incident.severity": severity.lower(),
        "incident.title": i.title,
        "incident.first_seen": rfc3339(i.first_seen),
        "incident.last_seen": rfc3339(i.last_seen),
        "incident.anomaly_count": i.anomaly_count,
        "incident.line_count": i.line_count,
        "incident.repeats_not_emitted": i.repeats_not_emitted,
        "incident.entities": list(i.entities),
        "incident.leading_templates": [
            {"id": tid, "text": text, "count": count} for tid, text, count in i.leading_templates
        ],
        "incident.first_line": i.first_line,
        "incident.samples": list(i.samples),
        "incident.explanation_kinds": [_VALUE[k] for k in i.explanation_kinds],
        "aggregation_key": i.incident_id,
    }
    return _envelope(INCIDENT, i.last_seen, rfc3339(observed), level, body, attrs, {})


def session_event(v: SessionVerdict, observed: float, provider: str) -> dict[str, Any]:
    """A whole session (an entity gone idle, or the end of input) judged by the session models;
    the body says what they saw (each explanation's first line), never only which one fired."""
    entity, tokens, scores, score, verdict = v.entity, v.tokens, v.scores, v.score, v.verdict
    body = f"{_VALUE[verdict].upper()} session {entity}: {len(tokens)} lines: {said_in_body(v.explanations, scores)}"
    attrs: dict[str, Any] = {
        "event.kind": "alert",
        "event.category": "anomaly",
        "event.type": "session",
        "anomaly.score": round(score, 6),
        "anomaly.verdict": _VALUE[verdict],
        "anomaly.scores": [
            {"detector": s.detector, "score": round(s.score, 6), "threshold": round(s.threshold, 6),
             "fired": s.fired}
            for s in scores
        ],
        "entity": entity,
        "session.length": len(tokens),
        "session.unknown_templates": sum(1 for t in tokens if t == 0),
        "anomaly.explanations": [explanation_dict(e) for e in v.explanations],
        "model.provider": provider,
    }
    return _envelope(SESSION, v.last_seen, rfc3339(observed), _VERDICT_LEVEL[verdict], body, attrs, {})


def line_event(tl_raw: str, entity: str, t: float, observed: float, level: Level, template_id: int,
               score: float, verdict: Verdict, source: str, origin: str = "") -> dict[str, Any]:
    """The event of one scored line (emitted only when every line is asked for)."""
    attrs: dict[str, Any] = {
        "event.kind": "event",
        "event.category": "line",
        "event.type": "scored",
        "log.raw": tl_raw,
        "entity": entity,
        "template.id": template_id,
        "anomaly.score": round(score, 6),
        "anomaly.verdict": _VALUE[verdict],
    }
    if origin:
        attrs["event.id"] = f"{origin}/line"
    return _envelope(LINE, t, rfc3339(observed), level, tl_raw[:200], attrs, {"log.source": source})


def data_gap_event(gap: DataGap, observed: float) -> dict[str, Any]:
    """A source's report that messages from one producer never arrived."""
    attrs = {
        "event.kind": "event",
        "event.category": "pipeline",
        "event.type": "data_gap",
        "gap.producer": gap.producer,
        "gap.epoch": gap.epoch,
        "gap.expected_seq": gap.expected_seq,
        "gap.received_seq": gap.received_seq,
        "gap.lost_messages": gap.lost,
    }
    body = f"{gap.lost} message(s) from producer {gap.producer!r} never arrived at source {gap.source!r}"
    return _envelope(DATA_GAP, gap.at, rfc3339(observed), Level.WARN, body, attrs, {"log.source": gap.source})


def render(event: Event, observed: float, provider: str) -> dict[str, Any]:
    """The event object of one typed output; `provider` is the ONNX Runtime provider in use."""
    if isinstance(event, Anomaly):
        return anomaly_event(event, observed, provider)
    if isinstance(event, Incident):
        return incident_event(event, observed)
    if isinstance(event, SessionVerdict):
        return session_event(event, observed, provider)
    if isinstance(event, LineResult):
        pl = event.line.line
        return line_event(pl.raw, pl.entity, event.line.time, observed, pl.level, event.line.template_id,
                          event.score, event.verdict, pl.source, pl.origin)
    return data_gap_event(event, observed)


MAX_FIELD_CHARS = 16 * 1024
"""Every string field of an emitted event (the body, `log.raw`, a template text, a sample) is
cut at this many characters; the names of the cut fields are listed in `attributes.truncated`."""


def encode_all(
    events: Sequence[Event], observed: float, provider: str, resource: Mapping[str, str] | None = None
) -> list[bytes]:
    """Event lines (JSON, no newline) for the sinks, every field capped (`MAX_FIELD_CHARS`).
    `resource` (the agent's `host.name`, `logdetect.bundle.id`) joins every event's resource:
    what lets `logdetect fleet` tell the hosts apart and join their events."""
    out = []
    spliced = _SPLICED
    observed_piece = provider_piece = b""
    resources: dict[str, bytes] = {}  # log.source -> the encoded resource object
    incident_resource: bytes | None = None
    for e in events:
        if isinstance(e, Anomaly):  # the many: spliced from pieces, the repeating ones encoded once
            if not observed_piece:
                observed_piece, provider_piece = b',"observed_timestamp":' + _J(rfc3339(observed)), _J(provider)
            source = e.line.line.source
            resource_piece = resources.get(source)
            if resource_piece is None:
                resource_piece = resources[source] = _J({**resource, "log.source": source} if resource
                                                        else {"log.source": source})
            line = spliced.line(e, observed_piece, provider_piece, resource_piece)
            if len(line) > MAX_FIELD_CHARS:  # only then can a field be over the cap
                obj = anomaly_event(e, observed, provider)
                if resource:
                    obj["resource"] = {**resource, **obj["resource"]}
                line = encode(cap_fields(obj))
            out.append(line)
            continue
        if isinstance(e, Incident) and type(e.entities) is tuple and type(e.samples) is tuple:
            if not observed_piece:
                observed_piece, provider_piece = b',"observed_timestamp":' + _J(rfc3339(observed)), _J(provider)
            if incident_resource is None:
                incident_resource = _J(dict(resource) if resource else {})
            line = _incident_line(e, observed_piece, incident_resource)
            if len(line) <= MAX_FIELD_CHARS:
                out.append(line)
                continue
        obj = render(e, observed, provider)
        if resource:
            obj["resource"] = {**resource, **obj["resource"]}
        line = encode(obj)
        if len(line) > MAX_FIELD_CHARS:  # only then can a field be over the cap
            line = encode(cap_fields(obj))
        out.append(line)
    return out


def cap_fields(event: dict[str, Any], max_chars: int = MAX_FIELD_CHARS) -> dict[str, Any]:
    """`event` with every string over `max_chars` cut, and `attributes.truncated` naming them."""
    cut: set[str] = set()

    def cap(name: str, value: Any) -> Any:
        if isinstance(value, str):
            if len(value) > max_chars:
                cut.add(name)
                return value[:max_chars]
            return value
        if isinstance(value, list):
            return [cap(name, v) for v in value]
        if isinstance(value, dict):
            return {k: cap(f"{name}.{k}" if name else k, v) for k, v in value.items()}
        return value

    capped = {**event, "body": cap("body", event.get("body", ""))}
    capped["attributes"] = cap("", event.get("attributes", {}))
    if cut:
        capped["attributes"]["truncated"] = sorted(cut)
    return capped


def encode(event: dict[str, Any]) -> bytes:
    """One event as compact JSON bytes (no trailing newline)."""
    return orjson.dumps(event)


# --- JSON Schema ---------------------------------------------------------------------------

_TRUNCATED = {"type": "array", "items": {"type": "string"}}  # fields cut at MAX_FIELD_CHARS
_TS = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"}
_EXPLANATION = {
    "type": "object",
    "required": ["kind", "text", "facts"],
    "properties": {
        "kind": {"enum": [
            "NEW_TEMPLATE", "RARE_TEMPLATE", "UNUSUAL_TIME", "BURST", "SEQUENCE", "SEVERITY",
            "UNUSUAL_PARAMETER", "MODEL_OUTLIER",
        ]},
        "text": {"type": "string"},
        "facts": {"type": "object"},
    },
    "additionalProperties": False,
}
_SCORE = {
    "type": "object",
    "required": ["detector", "score", "threshold", "fired"],
    "properties": {
        "detector": {"type": "string"},
        "score": {"type": "number"},
        "threshold": {"type": "number"},
        "fired": {"type": "boolean"},
    },
    "additionalProperties": False,
}
_ANOMALY_ATTRS = {
    "type": "object",
    "required": [
        "event.kind", "event.category", "event.type", "anomaly.score", "anomaly.verdict",
        "anomaly.scores", "anomaly.explanations", "log.raw", "entity", "template.id",
        "template.text", "template.is_new", "incident.id", "model.provider",
    ],
    "properties": {
        "truncated": _TRUNCATED,
        "event.id": {"type": "string"},
        "event.kind": {"const": "alert"},
        "event.category": {"const": "anomaly"},
        "event.type": {"const": "line"},
        "anomaly.score": {"type": "number"},
        "anomaly.verdict": {"enum": ["watch", "danger"]},
        "anomaly.scores": {"type": "array", "items": _SCORE},
        "anomaly.explanations": {"type": "array", "items": _EXPLANATION},
        "log.raw": {"type": "string"},
        "log.level": {"type": "string"},
        "log.line_no": {"type": "integer", "minimum": 0},
        "log.time_from_arrival": {"type": "boolean"},
        "entity": {"type": "string"},
        "template.id": {"type": "integer"},
        "template.text": {"type": "string"},
        "template.is_new": {"type": "boolean"},
        "template.params": {"type": "array", "items": {"type": "string"}},
        "incident.id": {"type": ["string", "null"]},
        "model.provider": {"type": "string"},
    },
}
_SESSION_ATTRS = {
    "type": "object",
    "required": ["event.kind", "event.type", "anomaly.score", "anomaly.verdict", "anomaly.scores", "entity",
                 "session.length", "model.provider"],
    "properties": {
        "truncated": _TRUNCATED,
        "event.kind": {"const": "alert"},
        "event.type": {"const": "session"},
        "anomaly.score": {"type": "number"},
        "anomaly.verdict": {"enum": ["watch", "danger"]},
        "anomaly.scores": {"type": "array", "items": _SCORE},
        "entity": {"type": "string"},
        "session.length": {"type": "integer", "minimum": 0},
        "session.unknown_templates": {"type": "integer", "minimum": 0},
        "anomaly.explanations": {"type": "array", "items": _EXPLANATION},
        "model.provider": {"type": "string"},
    },
}
_LINE_ATTRS = {
    "type": "object",
    "required": ["log.raw", "entity", "template.id", "anomaly.score", "anomaly.verdict"],
    "properties": {
        "truncated": _TRUNCATED,
        "event.id": {"type": "string"},
        "log.raw": {"type": "string"},
        "entity": {"type": "string"},
        "template.id": {"type": "integer"},
        "anomaly.score": {"type": "number"},
        "anomaly.verdict": {"enum": ["normal", "watch", "danger"]},
    },
}
_DATA_GAP_ATTRS = {
    "type": "object",
    "required": ["event.kind", "event.type", "gap.producer", "gap.expected_seq", "gap.received_seq",
                 "gap.lost_messages"],
    "properties": {
        "truncated": _TRUNCATED,
        "event.kind": {"const": "event"},
        "event.category": {"const": "pipeline"},
        "event.type": {"const": "data_gap"},
        "gap.producer": {"type": "string"},
        "gap.epoch": {"type": "string"},
        "gap.expected_seq": {"type": "integer"},
        "gap.received_seq": {"type": "integer"},
        "gap.lost_messages": {"type": "integer", "minimum": 1},
    },
}
_INCIDENT_ATTRS = {
    "type": "object",
    "required": [
        "event.kind", "incident.id", "incident.state", "incident.severity", "incident.title",
        "incident.first_seen", "incident.last_seen", "incident.anomaly_count",
        "incident.leading_templates", "incident.first_line", "incident.samples", "aggregation_key",
    ],
    "properties": {
        "truncated": _TRUNCATED,
        "event.kind": {"const": "alert"},
        "event.category": {"const": "incident"},
        "incident.id": {"type": "string"},
        "incident.state": {
            "enum": ["open", "update", "resolved"],
            "description": "open: the incident's first event, once. update: something a person acts on changed"
                           " (a template, an explanation kind or the first DANGER joined, the severity rose, the"
                           " anomalies, lines or entities doubled, or it came back after it was told resolved),"
                           " with a backoff of 1, 2, 4, ... minutes of log time. resolved: it went quiet (held"
                           " while a recurring incident keeps coming back); carries the totals, so an incident's"
                           " last event is its final state (agent/incident_updates.py).",
        },
        "incident.severity": {"enum": ["low", "medium", "high", "critical"]},
        "incident.title": {"type": "string"},
        "incident.first_seen": _TS,
        "incident.last_seen": _TS,
        "incident.anomaly_count": {"type": "integer", "minimum": 0},
        "incident.line_count": {"type": "integer", "minimum": 0},
        "incident.repeats_not_emitted": {"type": "integer", "minimum": 0},
        "incident.entities": {"type": "array", "items": {"type": "string"}},
        "incident.leading_templates": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "text", "count"],
                "properties": {"id": {"type": "integer"}, "text": {"type": "string"},
                               "count": {"type": "integer"}},
            },
        },
        "incident.first_line": {"type": "string"},
        "incident.samples": {"type": "array", "items": {"type": "string"}},
        "incident.explanation_kinds": {"type": "array", "items": _EXPLANATION["properties"]["kind"]},  # type: ignore[index]
        "aggregation_key": {"type": "string"},
    },
}


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every event logdetect emits."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://logdetect.invalid/schemas/event-v1.json",
        "title": "logdetect event",
        "type": "object",
        "required": [
            "schema_version", "event_name", "timestamp", "observed_timestamp", "severity_text",
            "severity_number", "body", "resource", "attributes",
        ],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "event_name": {"enum": list(EVENT_NAMES)},
            "timestamp": _TS,
            "observed_timestamp": _TS,
            "severity_text": {"enum": [lv.name for lv in Level]},
            "severity_number": {"type": "integer", "minimum": 0, "maximum": 24},
            "body": {"type": "string"},
            "resource": {"type": "object", "additionalProperties": {"type": "string"}},
            "attributes": {"type": "object"},
        },
        "additionalProperties": False,
        "allOf": [
            {"if": {"properties": {"event_name": {"const": ANOMALY}}},
             "then": {"properties": {"attributes": _ANOMALY_ATTRS}}},
            {"if": {"properties": {"event_name": {"const": SESSION}}},
             "then": {"properties": {"attributes": _SESSION_ATTRS}}},
            {"if": {"properties": {"event_name": {"const": LINE}}},
             "then": {"properties": {"attributes": _LINE_ATTRS}}},
            {"if": {"properties": {"event_name": {"const": INCIDENT}}},
             "then": {"properties": {"attributes": _INCIDENT_ATTRS}}},
            {"if": {"properties": {"event_name": {"const": DATA_GAP}}},
             "then": {"properties": {"attributes": _DATA_GAP_ATTRS}}},
        ],
    }
