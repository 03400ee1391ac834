"""The values handed from one pipeline stage to the next.

Every hand-off is a frozen dataclass defined here, once:

    Record ─► ParsedLine ─► TemplatedLine ─► LineContext ─► (detectors) DetectorScore
           ─► LineResult / Anomaly / Incident / SessionVerdict  (the pipeline's `Output`)
    a source's own findings: DataGap
    Output | DataGap = `Event`, rendered to JSON once, at the sink edge, by `agent/events.py`
    source ─► Batch (records + data gaps) ─► the daemon's queue

No dicts-of-anything cross a stage boundary; categorical values are enums.
Times are float seconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class Level(enum.IntEnum):
    """Severity of a log line, ordered; UNKNOWN for formats that carry none.

    The integer values are also the severity tokens of LogBERT-severity, so never renumber.
    """

    UNKNOWN = 0
    TRACE = 1
    DEBUG = 2
    INFO = 3
    NOTICE = 4
    WARN = 5
    ERROR = 6
    FATAL = 7

    @property
    def otel_number(self) -> int:
        """OpenTelemetry SeverityNumber (1-24) of this level; 0 when unknown."""
        return _OTEL_NUMBER[self]


_OTEL_NUMBER = {
    Level.UNKNOWN: 0,
    Level.TRACE: 1,
    Level.DEBUG: 5,
    Level.INFO: 9,
    Level.NOTICE: 10,
    Level.WARN: 13,
    Level.ERROR: 17,
    Level.FATAL: 21,
}


class Verdict(enum.Enum):
    """Seed 000's ensemble vote: both kinds of model agree, one fires, or none."""

    NORMAL = "normal"
    WATCH = "watch"
    DANGER = "danger"


class IncidentSeverity(enum.IntEnum):
    """How bad an incident is, ordered, so severities compare."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


class IncidentState(enum.Enum):
    """Where an incident is in its life: opened, updated, resolved."""

    OPEN = "open"
    UPDATE = "update"
    RESOLVED = "resolved"


class ExplanationKind(enum.Enum):
    """The kinds of reason an anomaly is given, as they appear in events."""

    NEW_TEMPLATE = "NEW_TEMPLATE"
    RARE_TEMPLATE = "RARE_TEMPLATE"
    UNUSUAL_TIME = "UNUSUAL_TIME"
    BURST = "BURST"
    SEQUENCE = "SEQUENCE"
    SEVERITY = "SEVERITY"
    UNUSUAL_PARAMETER = "UNUSUAL_PARAMETER"
    MODEL_OUTLIER = "MODEL_OUTLIER"  # what a learned model saw (features out of range, ...)


class DetectorKind(enum.Enum):
    """What a detector looks at; the vote needs a sequence and a feature/semantic detector to agree."""

    FEATURE = "feature"  # per-line feature vector (Isolation Forest)
    SEQUENCE = "sequence"  # order of templates (DeepLog, LSTM autoencoder)
    SEMANTIC = "semantic"  # masked-template model with severity (LogBERT)
    RULE = "rule"  # a fixed rule (new template, new template set): votes with the feature side


class Sensitivity(enum.Enum):
    """Which calibrated threshold is served: low (fewest alerts), medium, high."""

    LOW = "low"  # fewest alerts: threshold at the lowest target false-positive rate
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Record:
    """One raw log line as a source received it, before any parsing.

    `fields` carries the other fields of a structured record (a JSON line, a Forward
    record) as strings, so that `level`/`entity`/`time` can be taken from them.
    `time` is the transport's timestamp when it has one (Forward EventTime, say).
    """

    line: str
    source: str = "stdin"
    received_at: float = 0.0
    time: float | None = None
    fields: tuple[tuple[str, str], ...] = ()
    # Where the line came from, unique in its input and the same when the input is delivered
    # again (a JetStream message's stream, sequence and line index): the identity of the events
    # derived from this line alone (`events.event_id`). "" when the source has no such identity.
    origin: str = ""

    def field(self, name: str) -> str | None:
        """The value of a structured field the source supplied, or None."""
        for key, value in self.fields:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A log line split into header and message body.

    `timestamp` is None when the line carries no time the parser understood; the pipeline
    then uses the arrival time and says so (`time_from_arrival`).
    `entity` is the session/window key (a block id, a pod, a host, or the source stream).
    """

    raw: str
    message: str
    timestamp: float | None
    level: Level
    entity: str
    source: str = "stdin"
    line_no: int = 0
    component: str = ""
    # Header fields the format carries besides the above (syslog host/pid, BGL node, a JSON
    # line's other keys flattened to dotted paths), in `Record.fields` style.
    fields: tuple[tuple[str, str], ...] = ()
    origin: str = ""  # the record's `origin` (a stitched record: its first line's)

    def field(self, name: str) -> str | None:
        """The value of a header or JSON field of the line, or None."""
        for key, value in self.fields:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class TemplatedLine:
    """A parsed line with its Drain3 template.

    `template_id` is the miner's cluster id (stable across restarts); `token` is the model
    vocabulary index (0 = UNK, a template born after training); `is_new` is True when the
    template was not in the training vocabulary.
    """

    line: ParsedLine
    template_id: int
    template: str
    params: tuple[str, ...]
    token: int
    is_new: bool
    time: float
    time_from_arrival: bool = False


@dataclass(frozen=True, slots=True)
class LineContext:
    """What a detector may look at for one line.

    `history` holds the model tokens of the entity's most recent lines, oldest first, ending
    with this line's token; `levels` holds their `Level` values, aligned with `history`.
    """

    line: TemplatedLine
    features: np.ndarray
    history: tuple[int, ...]
    levels: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DetectorScore:
    """One detector's opinion on one line or window: higher score = more anomalous."""

    detector: str
    score: float
    threshold: float
    fired: bool
    # Facts the explainer can quote (e.g. DeepLog's expected next templates); JSON-safe values.
    details: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Explanation:
    """A computed reason why a line is anomalous, with the numbers behind it."""

    kind: ExplanationKind
    text: str
    facts: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An anomalous line: its scores, verdict, explanations and the incident it joined."""

    line: TemplatedLine
    score: float
    verdict: Verdict
    scores: tuple[DetectorScore, ...]
    explanations: tuple[Explanation, ...]
    incident_id: str | None = None

    def with_incident(self, incident_id: str | None) -> Anomaly:
        """This anomaly with its incident's id (built directly: `dataclasses.replace` costs
        several times more on the anomaly path; a new field must be passed on here too)."""
        return Anomaly(self.line, self.score, self.verdict, self.scores, self.explanations, incident_id)


@dataclass(frozen=True, slots=True)
class Incident:
    """A group of related anomalies as it opens, updates and resolves."""

    incident_id: str
    state: IncidentState
    severity: IncidentSeverity
    title: str
    first_seen: float
    last_seen: float
    anomaly_count: int
    line_count: int  # anomaly_count + lines of its bursts that raised no alert of their own
    entities: tuple[str, ...]
    leading_templates: tuple[tuple[int, str, int], ...]  # (template id, text, count)
    first_line: str
    samples: tuple[str, ...] = field(default_factory=tuple)
    explanation_kinds: tuple[ExplanationKind, ...] = ()
    # anomaly_count = this incident's anomaly events + its storm's repeats counted, not emitted
    repeats_not_emitted: int = 0

    @property
    def entity_count(self) -> int:
        """How many entities (or components) it holds: those listed in `entities` and the
        "+N more" its last item counts when the list is full."""
        if self.entities and self.entities[-1].startswith("+") and self.entities[-1].endswith(" more"):
            more = self.entities[-1][1:-5]
            if more.isdigit():
                return len(self.entities) - 1 + int(more)
        return len(self.entities)


@dataclass(frozen=True, slots=True)
class LineResult:
    """Every processed line's outcome (what `scan`, `eval` and reports observe)."""

    line: TemplatedLine
    scores: tuple[DetectorScore, ...]
    score: float
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class SessionVerdict:
    """A whole session (an entity gone idle, or the end of input) judged by the session models."""

    entity: str
    tokens: tuple[int, ...]
    scores: tuple[DetectorScore, ...]
    score: float
    verdict: Verdict
    last_seen: float
    # What the detectors saw, in the terms of the session's lines (`agent.explain_models`).
    explanations: tuple[Explanation, ...] = ()


@dataclass(frozen=True, slots=True)
class DataGap:
    """A source saw a producer's sequence jump: `received_seq - expected_seq` messages were lost."""

    source: str
    producer: str
    epoch: str
    expected_seq: int
    received_seq: int
    at: float

    @property
    def lost(self) -> int:
        """Messages lost between the expected and the received sequence number."""
        return self.received_seq - self.expected_seq


# What the pipeline returns from every entry point (process, flush_pending, tick, close).
Output = Anomaly | Incident | SessionVerdict | LineResult
# What reaches the sinks: the pipeline's outputs and the sources' own findings.
Event = Output | DataGap


@dataclass(eq=False)
class Batch:
    """Records from one source read (one Forward request, one ZeroMQ message, some lines).

    The one hand-off that is not frozen: it carries the completion that acks the source
    (`finish`), resolved once its events reached every sink.
    """

    source: str
    records: list[Record]
    # What the source itself found (ZeroMQ data gaps), rendered and written with the batch's events.
    events: list[DataGap] = field(default_factory=list)
    # Resolved with True when processed and written, False when dropped at shutdown.
    done: asyncio.Future[bool] | None = None
    on_done: Callable[[bool], None] | None = None
    # A source that can recognise the same data when it comes again (a Forward chunk id) sets
    # `key`; `skip` records of it were already emitted before a restart and are not in `records`.
    key: bytes | None = None
    skip: int = 0

    def finish(self, processed: bool) -> None:
        """Report the batch processed (or dropped) to whoever waits on it; the callback runs once."""
        if self.done is not None and not self.done.done():
            self.done.set_result(processed)
        if self.on_done is not None:
            callback, self.on_done = self.on_done, None
            callback(processed)

    @property
    def size(self) -> int:
        """Records and events in the batch: what it costs in the queue."""
        return len(self.records) + len(self.events)
