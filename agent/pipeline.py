"""The agent's pipeline: records in, scored, explained and grouped events out.

    Record ─► multiline stitch ─► header parse ─► templates ─► features/windows per entity
           ─► detectors (ONNX, micro-batched, memoised) ─► ensemble ─► explainer ─► incidents

Synchronous, deterministic and single-owner: every method must be called from one thread; the
clock is passed in (`now`), so tests drive it. Sources and sinks (I/O) live in `plugins/`.

Templates: the training miner from the bundle is frozen (inference-only `match`), so the
training vocabulary never drifts; lines it does not know are clustered by a separate online
miner whose template ids are ONLINE_ID_BASE + a hash of the first message's form (the same on
every host and after a lost snapshot) and whose state is snapshotted to `state_dir`
(atomically, on a timer and at close), so ids survive restarts.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np
import structlog

from agent import __version__, metrics
from agent.bundle import Bundle, load_bundle
from agent.counted_road import NewLineVote, new_line_vote
from agent.dead_letter import Rejected, rejected
from agent.detectors.base import Detector, load_detectors
from agent.detectors.cascade import Cascade, Judged, ScoresSomeLines, SessionMemo, score_where
from agent.drift import DriftConfig, DriftLearner
from agent.episodes import EPISODE_GAP_SECS
from agent.errors import BundleError
from agent.features import EndedSession, FeatureConfig, FeatureExtractor, FeatureStats
from agent.feedback import Feedback
from agent.held_back import HELD_BACK_STATE, OngoingState
from agent.incidents import NEW_BEHAVIOUR_SECS, CountedLine, Repeat, RepeatPlan
from agent.multiline import Stitcher
from agent.onnx_session import RuntimeOptions
from agent.parsing import LineParser, ParserConfig
from agent.shapes import Found, ShapeMatcher
from agent.short_road import ShortRoad
from agent.templates import ChangeType, MinerConfig, Snapshotter, TemplateMiner, remap_ids
from agent.text_memo import remember
from agent.types import (
    Anomaly,
    DetectorKind,
    DetectorScore,
    Explanation,
    Incident,
    IncidentSeverity,
    IncidentState,
    Level,
    LineContext,
    LineResult,
    Output,
    ParsedLine,
    Record,
    Sensitivity,
    SessionVerdict,
    TemplatedLine,
    Verdict,
)

log = structlog.get_logger(__name__)

ONLINE_ID_BASE = 1_000_000
ONLINE_STATE = "templates_online.json"
STITCH_IDLE_SECS = 0.5
SWEEP_SECS = 1.0  # how often (in log time) idle entities are looked for
SESSION_MIN_TOKENS = 2  # a shorter session gets no verdict (and ends without an EndedSession)


MATCH_MEMO = 8_192  # raw messages whose frozen-miner match is remembered (emptied when full) ...
MATCH_MEMO_CHARS = 512  # ... when at most this long: ≤ ≈ 7 MiB in all
# A frozen match is remembered as `Found`: (template id, text, params), params None while not
# read yet (`ShapeMatcher.lookup`: a short-road line without keys needs none).
_UNSEEN: Found = (-1, "", ())  # not in the memo (compared by identity)
_NO_IDS: list[int] = []  # a line's context ids when none are kept (`ShortRoad.needs_ids`); never mutated

# The labelled counters of the anomaly path, each looked up once, when first counted (`labels`
# costs a lock and a dict lookup per call).
_ANOMALY_COUNTS: dict[Verdict, Any] = {}
_INCIDENT_COUNTS: dict[IncidentSeverity, Any] = {}


def _count_anomalies(verdict: Verdict, count: int) -> None:
    counter = _ANOMALY_COUNTS.get(verdict)
    if counter is None:
        counter = _ANOMALY_COUNTS[verdict] = metrics.anomalies.labels(verdict=verdict.value)
    counter.inc(count)


def _count_incident(severity: IncidentSeverity) -> None:
    counter = _INCIDENT_COUNTS.get(severity)
    if counter is None:
        counter = _INCIDENT_COUNTS[severity] = metrics.incidents.labels(severity=severity.name.lower())
    counter.inc()

ONLINE_MESSAGE_CHARS = 1024
"""Characters of a message the online miner sees (≈ 0.26 MiB per never-seen template at 1,024
against ≈ 3 MiB at 4,096: BENCHMARKS.md, resource bounds)."""


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of one pipeline: parser override, sensitivity, runtime, state and timers."""

    parser: ParserConfig | None = None  # None: the bundle's parser settings (as trained)
    sensitivity: Sensitivity = Sensitivity.MEDIUM
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    state_dir: Path | None = None
    snapshot_interval_secs: float = 60.0
    idle_entity_secs: float = 600.0
    max_entities: int = 100_000
    # Templates born online kept at once (least recently used evicted; with content-derived ids
    # one seen again gets its old id back). Each costs the miner ~20 KiB (bench/resource_bounds.py).
    max_online_templates: int = 5_000
    # ... and at most this many tokens across them: the byte bound (≈ 1 KiB of index per token of
    # never-seen words, so ≈ 64 MiB), which long new messages reach long before the count cap.
    max_online_template_tokens: int = 65_536
    micro_batch: int = 256
    emit_all: bool = False  # also emit a `logdetect.line` event for every processed line
    models: tuple[str, ...] | None = None  # restrict to these bundle models (None = all)
    incident_gap_secs: float = 300.0
    # Anomalies of one episode of trouble (no quiet gap this long) on a stream or actor: one incident.
    episode_gap_secs: float = EPISODE_GAP_SECS
    # A new template recurring within this long stays in its incident (`IncidentConfig`).
    new_behaviour_secs: float = NEW_BEHAVIOUR_SECS
    # Seed 002's dynamic thresholds: every detector's threshold times the bundle's multiplier for
    # the line's hour (learned on held-back normal data), so a nightly job that always scores
    # high does not page at 02:00.
    dynamic_thresholds: bool = False
    # Online learning of new templates that recur steadily with no other anomaly around (off by default).
    drift: DriftConfig = field(default_factory=DriftConfig)
    # Normal lines whose verdict is already known skip the models (agent/short_road.py); off only
    # to check that it changes nothing.
    short_road: bool = True
    # Detectors outside the served vote run only where the vote finds something, and ended sessions
    # are judged once per (tokens, levels) (agent/detectors/cascade.py).
    cascade: bool = True
    # A storm's repeat that will only be counted in its incident (`IncidentGrouper.counted_repeat`)
    # gets no explanation text, no witness score and no event; off only to check that it changes nothing.
    storm_road: bool = True


class Pipeline:
    """The synchronous core: records in, typed outputs (anomalies, incidents, verdicts) out."""

    def __init__(self, bundle: Bundle, config: PipelineConfig) -> None:
        self.bundle = bundle
        self.config = config
        manifest = bundle.manifest
        check_bundle_compatible(bundle)
        self.bundle_id = bundle.identity
        self.miner = TemplateMiner.from_state(bundle.read_json("drain_state.json"))
        self.shapes = ShapeMatcher(self.miner)  # the frozen miner's matches by raw shape
        # raw message -> frozen match (template id, text, params)
        self._matched: dict[str, Found | None] = {}
        # Online ids come from the first message's form (content ids): a template found after a
        # crash that lost the snapshot, or on another host, gets the same id.
        trained_cfg = MinerConfig(**manifest.get("miner", {}))
        online_cap = min(trained_cfg.max_clusters or config.max_online_templates, config.max_online_templates)
        online_cfg = dataclasses.replace(trained_cfg, content_ids=True, max_clusters=online_cap)
        self.online_miner = self._load_online_miner(online_cfg)
        self.online_miner.limit_tokens(config.max_online_template_tokens)
        self.snapshotter: Snapshotter | None = None
        self.drift = DriftLearner.load(config.drift, config.state_dir, self.bundle_id)
        self.feedback = Feedback(config.state_dir)  # operator labels (`logdetect feedback`)
        if config.state_dir is not None:
            config.state_dir.mkdir(parents=True, exist_ok=True)
            self.snapshotter = Snapshotter(
                self.online_miner, config.state_dir / ONLINE_STATE, config.snapshot_interval_secs
            )
        vocab = bundle.read_json("vocab.json")
        # Ids merged in the bundle's miner after the vocabulary was built answer with their token.
        self.vocab: dict[int, int] = remap_ids(
            {int(k): int(v) for k, v in vocab["template_to_token"].items()}, self.miner.aliases()
        )
        # Templates of the history's held-back part: seen in training (not new), but no model
        # learnt them, so they are UNK (token 0) to the models (`trainer/whole_history.py`).
        self.known_templates: frozenset[int] = frozenset(
            self.miner.resolve(int(t)) or int(t) for t in vocab.get("known_templates", ()))
        parser_cfg = config.parser or ParserConfig(**manifest.get("parser", {}))
        if parser_cfg.log_format == "auto" and manifest.get("parser", {}).get("log_format"):
            # The format resolved at training is the best guess for the same system's live logs.
            parser_cfg = _replace(parser_cfg, log_format=manifest["parser"]["log_format"])
        self.parser = LineParser(parser_cfg)
        self.stitcher = Stitcher() if parser_cfg.multiline else None
        feat_cfg = FeatureConfig(**{**manifest.get("features", {}), "max_entities": config.max_entities,
                                    "idle_secs": config.idle_entity_secs})
        self.features = FeatureExtractor(feat_cfg, FeatureStats.from_json(bundle.read_json("features.json")))
        self.detectors: list[Detector] = load_detectors(
            bundle, config.runtime, config.sensitivity, config.models, builtin_defaults=True
        )
        self.kinds: dict[str, DetectorKind] = {d.name: d.kind for d in self.detectors}
        from agent.ensemble import Ensemble

        self.ensemble = Ensemble.from_manifest(manifest.get("ensemble", {}), config.sensitivity.value)
        self.cascade = Cascade.plan(self.detectors, self.ensemble, config.cascade)
        # Ended sessions judged once per (tokens, levels) (agent/detectors/cascade.py).
        self.session_memo: SessionMemo | None = SessionMemo() if config.cascade else None
        multipliers = manifest.get("ensemble", {}).get("hour_multipliers")
        self.hour_multipliers: list[float] | None = (
            [float(m) for m in multipliers] if config.dynamic_thresholds and multipliers else None
        )
        from agent.explain import Explainer
        from agent.incidents import IncidentConfig, IncidentGrouper

        profile = bundle.read_json("profile.json")
        model_types = {name: str(section.get("type", name)) for name, section in manifest.get("models", {}).items()}
        witnesses = frozenset(d.name for d in self.detectors if self.ensemble.member(d.name, self.kinds) is None)
        self.explainer = Explainer(profile, TemplateTexts(self.miner, self.online_miner), model_types=model_types,
                                   witnesses=witnesses)
        # The count of the incident the history ends in goes on after a restart (`agent/held_back.py`).
        self.held_back_state: OngoingState | None = None
        if config.state_dir is not None and self.explainer.ongoing is not None:
            self.held_back_state = OngoingState(config.state_dir / HELD_BACK_STATE, self.bundle_id,
                                                config.snapshot_interval_secs)
            self.held_back_state.load(self.explainer.ongoing)
        # The profile relates templates that follow each other in training (an auth failure and
        # the web's 401 it causes), so they group into one incident.
        self.grouper = IncidentGrouper(IncidentConfig(gap_secs=config.incident_gap_secs,
                                                    episode_gap_secs=config.episode_gap_secs,
                                                    new_behaviour_secs=config.new_behaviour_secs), profile=profile)
        self.provider = _provider_of(self.detectors)
        # Normal lines whose verdict is already known skip the models (None: a detector that is
        # not pure per line is served, so every line takes the full road).
        self.short_road: ShortRoad | None = (
            ShortRoad.for_detectors(self.detectors, self.ensemble, self.kinds, feat_cfg.history_len)
            if config.short_road and self.hour_multipliers is None else None
        )
        # detector id -> its index among the short road's scheduled detectors
        self._scheduled: dict[int, int] = (
            {id(d): j for j, d in enumerate(self.short_road.scheduled)} if self.short_road is not None else {}
        )
        self._floors: dict[tuple[int, int], float] = {}  # (template id, level) -> `_fact_floor`
        # The storm road (`_judge`): a never-seen line that its incident will only count. Its
        # witnesses are skipped at scoring time when it is predicted counted, which needs them
        # scorable later one line at a time: each one with per-line state is on the short road's
        # schedule (`_score_some`).
        self.storm_road = config.storm_road
        self._storm_witnesses = config.storm_road and all(
            id(d) in self._scheduled or not isinstance(d, ScoresSomeLines) for d in self.cascade.witnesses)
        self._skipped: set[int] = set()  # id(context) of the batch's lines whose witnesses were skipped
        # id(context) -> its facts (`_facts`), worked out for the prediction: the same when judged
        # (a line's burst count is taken when it is observed, before the batch is scored)
        self._facts_at: dict[int, tuple[Explanation, ...]] = {}
        self._due: Mapping[int, tuple[bool, ...]] = {}  # the batch's `due` (for a late witness)
        # id(context) of the batch's never-seen lines planned as emitted (`IncidentGrouper.plan_repeat`):
        # certain, so neither the cascade nor `_judge` asks whether they are only counted
        self._planned: set[int] = set()
        self.counted_road = 0  # never-seen lines that took the counted road (agent/counted_road.py)
        self.counted_late = 0  # ... predicted counted but emitted after all: the full road in their turn
        self.storm_counted = 0  # anomalies that took the storm road
        self.storm_unwitnessed = 0  # lines whose witnesses were skipped at scoring time (predicted counted)
        self.storm_late = 0  # ... and of those, scored late (a prediction that did not hold)
        # An anomaly's scores and explanations as one tuple per distinct sequence of objects
        # (`_shared`): a storm's anomalies share them, so each keeps fewer objects alive.
        self._score_tuples: dict[tuple[int, ...], tuple[DetectorScore, ...]] = {}
        self._explanation_tuples: dict[tuple[int, ...], tuple[Explanation, ...]] = {}
        self.line_no = 0
        self._last_input = 0.0
        # The log's own clock (the latest line time): entities go idle and incidents quiet on it,
        # never on the arrival clock, so `scan` and live input give the same verdicts.
        self._log_clock = -math.inf
        self._swept_at = -math.inf
        # Sessions the log clock ends during a micro-batch's loop: judged together after it (`_judge_ended`).
        self._ending: list[EndedSession] = []
        self.lines = 0
        self.anomalies = 0
        self._uncounted = [0, 0]  # anomalies judged WATCH and DANGER, not yet in the metric
        self.observers: list[Callable[[LineResult], None]] = []
        # Observers of every line's verdict and combined score only: they leave the cascade on, so
        # their LineResult of a normal line may lack the scores of detectors outside the vote.
        self.verdict_observers: list[Callable[[LineResult], None]] = []
        self.rejected: list[Rejected] = []
        metrics.model_info.info({"bundle": str(bundle.path), "bundle_id": self.bundle_id,
                                 "provider": self.provider, "models": ",".join(d.name for d in self.detectors)})
        metrics.build_info.info({"version": __version__, "onnxruntime": _ort_version(), "provider": self.provider})
        log.info("bundle_loaded", bundle=str(bundle.path), models=[d.name for d in self.detectors],
                 provider=self.provider, sensitivity=config.sensitivity.value)

    @classmethod
    def from_bundle(cls, bundle: str | Path | Bundle, config: PipelineConfig | None = None) -> Pipeline:
        """A pipeline for a bundle (a path is loaded and verified first)."""
        b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        return cls(b, config or PipelineConfig())

    # -- state --------------------------------------------------------------------------------

    def _load_online_miner(self, cfg: MinerConfig) -> TemplateMiner:
        state_dir = self.config.state_dir
        path = state_dir / ONLINE_STATE if state_dir else None
        if path is not None and path.is_file():
            try:
                miner = TemplateMiner.load(path)
            except Exception as exc:  # a snapshot we cannot read must not stop the agent
                log.warning("online_template_state_unreadable", path=str(path), error=str(exc))
                metrics.state_unreadable.labels(file=ONLINE_STATE).inc()
            else:
                return miner
        return TemplateMiner(cfg)

    def save_state(self) -> None:
        """Snapshot the online miner now when a state dir is set (shutdown, reload); record size and time."""
        self.drift.save()
        self.feedback.save()
        self._save_held_back()
        if self.snapshotter is not None:
            started = time.perf_counter()
            size = self.snapshotter.save_now()
            metrics.snapshot_seconds.set(time.perf_counter() - started)
            metrics.snapshot_bytes.set(size)

    # -- the hot path -------------------------------------------------------------------------

    def process(self, records: Sequence[Record], now: float) -> list[Output]:
        """Records in, typed outputs out (`agent.events` renders them at the sink edge)."""
        if records:
            self._last_input = now
        if self.stitcher is not None:
            logical: list[Record] = self.stitcher.feed_all(records)
        else:
            logical = list(records)
        out: list[Output] = []
        step = max(1, self.config.micro_batch)
        for start in range(0, len(logical), step):
            self._process_batch(logical[start : start + step], now, out)
        return out

    def _match(self, message: str, m: Found | None = _UNSEEN, lazy: bool = False
               ) -> tuple[int, str, tuple[str, ...] | None, int]:
        """The message's template id, text, parameters and model token (0 for a template that is
        not the training vocabulary's); `m`: its entry in the raw-message memo when looked up.
        `lazy`: the parameters may be left unread (None; `_params` reads them when needed)."""
        # The training miner is frozen (`match` never changes it): a message seen before has the
        # same template and parameters, answered by its raw text without masking.
        raw = self._matched
        if m is _UNSEEN:
            m = raw.get(message, _UNSEEN)
        if m is _UNSEEN:
            # a message of a known raw shape is answered without masking (agent/shapes.py)
            m = self.shapes.lookup(message) if lazy else self.shapes.parts(message)
            if len(message) <= MATCH_MEMO_CHARS:
                if len(raw) >= MATCH_MEMO:
                    raw.clear()
                raw[message] = m
        if m is not None:
            tid, template, params = m
            return tid, template, params, self.vocab.get(tid, 0)
        # A template born online is mined from the message's first ONLINE_MESSAGE_CHARS: what
        # the miner keeps per template grows with the square of its token count, and a
        # hostile stream of long never-seen lines must not cost MiBs each.
        # (a message the frozen miner just masked, or whose shape it knows, is not masked again)
        tid, template, params, change = self.online_miner.add_parts(message[:ONLINE_MESSAGE_CHARS],
                                                                     self.shapes.prepared(message))
        for old_id, new_id in self.online_miner.take_merges():  # what the old id knew follows
            self.explainer.rename_template(ONLINE_ID_BASE + old_id, ONLINE_ID_BASE + new_id)
        if change is ChangeType.CREATED:
            metrics.templates_created.inc()
        return ONLINE_ID_BASE + tid, template, params, 0

    def _params(self, message: str) -> tuple[str, ...]:
        """The parameters of a message whose frozen match was found without them (`_match`)."""
        found = self.shapes.parts(message)
        if message in self._matched:
            self._matched[message] = found
        return found[2] if found is not None else ()

    def _process_batch(self, records: Sequence[Record], now: float, out: list[Output]) -> None:
        """One micro-batch. A record that makes a stage raise is dropped alone (`rejected`):
        one record can only ever hurt itself, never the rest of its batch.

        A line whose verdict is already known takes the short road (`agent/short_road.py`): no
        `LineContext`, no model, no judging, and no line object at all (its parsed pieces are
        read as a tuple, `LineParser.parts`); observers still see its `LineResult`, in order."""
        contexts: list[LineContext] = []
        # id(context) -> (feature row, context ids) of a training-template line: the full road
        # teaches the short road its scores under these keys
        keys: dict[int, tuple[tuple[float, ...], tuple[int, ...]]] = {}
        due: dict[int, tuple[bool, ...]] = {}  # id(context) -> which scheduled detectors are due on it
        # With observers (or emit_all), every line's result goes out in line order: short-road
        # results wait in `order` between the contexts still to be judged.
        collect = bool(self.observers or self.verdict_observers) or self.config.emit_all
        order: list[LineContext | LineResult | CountedLine | Deferred] = []
        road = self.short_road
        explainer = self.explainer
        facts = self.ensemble.facts
        short = 0
        # every stage bound once per batch
        parts_of, raw_get, match, vocab_get = self.parser.parts, self._matched.get, self._match, self.vocab.get
        params_of = self._params
        known_templates, is_learned = self.known_templates, self.drift.is_learned
        tokens: list[int] = []  # every line's token, for the drift counts (counted before judging)
        count_token = tokens.append
        advance, note, observe = self.features.advance, explainer.note_at, explainer.observe
        fact_floor, floors_get = self._fact_floor, self._floors.get
        inf = math.inf
        line_no = self.line_no
        # Lines need their keys (feature row, context ids) only when a voting score is keyed by
        # them or observers want every score (`ShortRoad.needs_keys`); else none are built.
        keyed = road is not None and road.needs_keys(collect)
        # ... and the context ids only when a context-keyed score votes or observers want every score
        with_ids = road is not None and road.needs_ids(collect)
        lazy = road is not None and not keyed  # a short-road line then needs no parameters
        schedule = road.schedule if road is not None and road.scheduled else None  # else no line is due
        # a due line takes the full road only when the detector votes, or observers want its score,
        # or the cascade is off (every detector scores every full-road line)
        due_matters = road is not None and road.due_matters(collect or not self.config.cascade)
        # A line whose row score alone is unknown waits for the batch's one forest call (`_settle`)
        # when the vote's one keyed member reads the row and can score rows without line objects.
        settle = keyed and road is not None and road.settles_rows(collect) and self._row_scorer() is not None
        pending: list[Pending] = []
        # ... and then `road.check` is whether the row is in its one member's scores
        row_scores = road.members[0].scores if settle and road is not None else {}
        if road is not None:
            road.track(with_ids, self.features.entities.values())
        # The counted road (agent/counted_road.py): a never-seen line whose verdict is known from
        # its token and that its incident will only count (planned exactly here, in line order:
        # `IncidentGrouper.plan_repeat`) is counted in its turn among the judged lines, from its pieces.
        vote = self._new_line_vote() if road is not None and not keyed and not collect else None
        plan = RepeatPlan(len(records)) if vote is not None else None
        plan_repeat, explain_facts = self.grouper.plan_repeat, explainer.facts_at
        shared_facts = self._explanation_tuples
        vote_score, vote_verdict, vote_scores = ((vote.score, vote.verdict, vote.scores) if vote is not None
                                                 else (0.0, Verdict.WATCH, ()))
        ongoing, expected = explainer.ongoing_templates, self.feedback.expected
        planned, facts_known = self._planned, self._facts_at
        counted = 0  # lines on the counted road (or deferred to their turn: `Deferred`)
        counted_before = self.counted_road
        for record in records:
            try:
                line_no += 1
                parts = parts_of(record, line_no)
                message = parts[1]
                m = raw_get(message, _UNSEEN)
                if m is not _UNSEEN and m is not None:  # `_match`, its memo hit inlined
                    tid, template, params = m
                    token = vocab_get(tid, 0)
                else:
                    tid, template, params, token = match(message, m, lazy)
                if params is None and not lazy:
                    params = params_of(message)
                t = parts[2]
                from_arrival = t is None
                if t is None:
                    t = record.received_at or now  # the parser already fell back to a sane record.time
                is_new = token == 0 and tid not in known_templates and not is_learned(tid)
                count_token(token)  # what training predicts vs what comes (newly rare)
                if t > self._log_clock:  # else `_advance_log_clock` has nothing to do
                    if t - self._swept_at < SWEEP_SECS:  # ... but move the clock (t is finite here)
                        self._log_clock = t
                    else:
                        self._advance_log_clock(t)
                level, entity, source = parts[3], parts[4], parts[5]
                row: tuple[float, ...] | None = None
                key = None
                flags: tuple[bool, ...] = ()
                previous: int | None = None
                count = -1  # the explainer has not noted the line yet
                emitted = False  # a never-seen line planned as emitted (`plan_repeat`)
                line_facts: tuple[Explanation, ...] = ()  # ... its facts, when worked out here
                unknown = False  # its row's score is not known yet (settled with the batch)
                if road is not None:
                    if schedule is not None:
                        flags = schedule(entity)
                    if plan is not None and is_new:
                        repeat: Repeat | bool | None = None
                        if tid in ongoing or tid in expected:  # judging may change its verdict
                            plan.note_unsure(tid)
                        else:
                            actor = entity if entity and entity != source else (parts[7] or entity)
                            previous, count = note(token, tid, actor, t, from_arrival)
                            line_facts = _shared(shared_facts, explain_facts(parts, tid, template, token, True, actor,
                                                                             t, from_arrival, count))
                            repeat = plan_repeat(tid, entity, t, line_facts, plan)
                        if isinstance(repeat, Repeat):
                            if params is None:
                                params = params_of(message)
                            if repeat.incident is not None:  # only counted: its entity moves on without a row
                                advance(entity, source, t, token, level, 0, 0, True, tid, False)
                                order.append(CountedLine(repeat.incident, repeat.key, parts, template, params, t,
                                                         from_arrival, vote_score, vote_verdict, vote_scores,
                                                         line_facts))
                            else:  # predicted counted: decided in its turn, the full road kept at hand
                                row, state = advance(entity, source, t, token, level, len(message), len(params),
                                                     True, tid)
                                order.append(Deferred(repeat.key, parts, template, params, t, from_arrival,
                                                      line_facts, row, tuple(state.history), tuple(state.levels),
                                                      flags, previous, count))
                            counted += 1
                            continue
                        emitted = repeat is False  # certain: no storm check on the full road
                    clear = token != 0 and not (due_matters and any(flags))
                    if keyed:  # (params read: not lazy)
                        keys_row, state = advance(entity, source, t, token, level, len(message), len(params or ()),
                                                  is_new, tid)
                        row = keys_row
                        ids = road.advance(state, token, level) if with_ids else _NO_IDS
                        if clear and not (keys_row in row_scores if settle else road.check(keys_row, ids, collect)):
                            clear = unknown = settle
                    if clear:
                        # noted here, remembered below if it takes the full road after all
                        # (note + remember = observe); its actor as `actor_from` names it
                        actor = entity if entity and entity != source else (parts[7] or entity)
                        previous, count = note(token, tid, actor, t, from_arrival)
                        if facts:
                            known_floor = floors_get((tid, level))
                            floor = known_floor if known_floor is not None else fact_floor(tid, level)
                        else:
                            floor = inf  # no facts: no count makes it notable
                        if count <= floor:
                            if unknown:  # clear unless its row's score is not: `_settle` says
                                pending.append(Pending(len(contexts), keys_row, parts, tid, template, params or (),
                                                       token, is_new, t, from_arrival, tuple(state.history),
                                                       tuple(state.levels), flags, previous, count))
                                continue
                            if row is None:  # its entity moves on all the same, without a row
                                advance(entity, source, t, token, level, 0, 0, is_new, tid, False)
                            short += 1
                            if collect:
                                known, combined = road.scores(keys_row, ids)
                                tl = TemplatedLine(ParsedLine(*parts), tid, template, params or (), token, is_new,
                                                   t, from_arrival)
                                order.append(LineResult(tl, known, combined, Verdict.NORMAL))
                            continue
                    if keyed and token:
                        key = (keys_row, tuple(ids))
                if params is None:
                    params = params_of(message)
                if row is None:
                    row, state = advance(entity, source, t, token, level, len(message), len(params), is_new, tid)
                tl = TemplatedLine(ParsedLine(*parts), tid, template, params, token, is_new, t, from_arrival)
                if count < 0:
                    observe(tl)
                else:
                    explainer.remember(tl, previous, count)
                ctx = LineContext(tl, np.asarray(row, dtype=np.float32), tuple(state.history), tuple(state.levels))
                contexts.append(ctx)
                if road is not None:
                    due[id(ctx)] = flags
                    if key is not None:
                        keys[id(ctx)] = key
                if collect or plan is not None:
                    order.append(ctx)
                    if emitted:
                        planned.add(id(ctx))
                    elif line_facts:  # the storm road's check asks for them (`_facts_at`)
                        facts_known[id(ctx)] = line_facts
            except Exception as exc:
                self._reject(record.source, record.line, "parse", exc)
        self.line_no = line_no
        if self._ending:  # their verdicts go out before the batch's lines', as each sweep's did
            self._judge_ended(out)
        if pending:
            short += self._settle(pending, contexts, due, keys)
        if road is not None:
            road.taken += short
        self.drift.count_all(tokens)
        self.lines += len(contexts) + short + counted
        voted: dict[int, tuple[list[DetectorScore], float, Verdict]] = {}
        self._due = due
        kept, per_detector = self._score(contexts, due, voted)
        scored = {id(ctx): i for i, ctx in enumerate(kept)}
        for item in order if collect or plan is not None else kept:
            if isinstance(item, LineResult):
                self._observed(item, out)
                continue
            if isinstance(item, CountedLine | Deferred):
                try:
                    if isinstance(item, CountedLine):
                        self._counted(item, out)
                    elif vote is not None:
                        self._in_turn(item, vote, due, out)
                except Exception as exc:
                    self._reject(item.parts[5], item.parts[0], "judge", exc)
                continue
            i = scored.get(id(item))
            if i is None:  # dropped by a detector that failed on it (`_score`)
                continue
            scores = [d[i] for d in per_detector]
            key = keys.get(id(item))
            if key is not None and road is not None:
                road.learn(key[0], key[1], scores, collect)
            try:
                out.extend(self._judge(item, scores, voted.get(id(item))))
            except Exception as exc:
                self._reject(item.line.line.source, item.line.line.raw, "judge", exc)
        self.storm_unwitnessed += len(self._skipped)
        self._skipped.clear()
        planned.clear()
        if vote is not None and self.counted_road > counted_before:  # the novelty rule counts them
            vote.count(self.counted_road - counted_before)
        self._facts_at.clear()
        self._due = {}
        self._count()
        metrics.entities.set(len(self.features.entities))
        metrics.templates.set(len(self.miner) + len(self.online_miner))

    def _count(self) -> None:
        """The batch's anomalies into the labelled metric: one increment per verdict (each costs
        a lock and a dict lookup)."""
        uncounted = self._uncounted
        for verdict, count in zip((Verdict.WATCH, Verdict.DANGER), uncounted, strict=True):
            if count:
                _count_anomalies(verdict, count)
        uncounted[0] = uncounted[1] = 0

    def _row_scorer(self) -> RowScorer | None:
        """The detector behind the short road's one row-keyed member, when it scores feature rows
        without line objects (`ShortRoad.settles_rows`)."""
        road = self.short_road
        if road is None or len(road.members) != 1:
            return None
        name = road.members[0].name
        found = next((d for d in self.detectors if d.name == name), None)
        return found if isinstance(found, RowScorer) else None

    def _settle(self, pending: list[Pending], contexts: list[LineContext], due: dict[int, tuple[bool, ...]],
                keys: dict[int, tuple[tuple[float, ...], tuple[int, ...]]]) -> int:
        """Lines that would take the short road but for their row's unknown score: the rows
        scored in one call; a clear one's line is done (its score kept for the rows to come),
        the others take the full road in their place among `contexts`, exactly as they would
        have from the loop (their entity's history and explainer counts as at their turn). Lines
        done."""
        road, scorer = self.short_road, self._row_scorer()
        if road is None or scorer is None:  # (checked by the caller)
            return 0
        rows = list(dict.fromkeys(p.row for p in pending))  # rows repeat within a batch too
        try:
            clear = {row: road.settle(row, score) for row, score in zip(rows, scorer.score_rows(rows), strict=True)}
        except Exception:  # the full road scores them one by one and rejects what fails
            clear = {}
        full: list[tuple[int, LineContext]] = []
        for p in pending:
            if clear.get(p.row, False):
                continue
            tl = TemplatedLine(ParsedLine(*p.parts), p.tid, p.template, p.params, p.token, p.is_new, p.t,
                               p.from_arrival)
            self.explainer.remember(tl, p.previous, p.noted)
            ctx = LineContext(tl, np.asarray(p.row, dtype=np.float32), p.history, p.levels)
            due[id(ctx)] = p.flags
            keys[id(ctx)] = (p.row, ())
            full.append((p.at, ctx))
        for at, ctx in reversed(full):  # from the last: the earlier places still hold
            contexts.insert(at, ctx)
        settled = len(pending) - len(full)
        road.settled += settled
        return settled

    def _score(
        self, contexts: list[LineContext], due: Mapping[int, tuple[bool, ...]],
        voted: dict[int, tuple[list[DetectorScore], float, Verdict]] | None = None,
    ) -> tuple[list[LineContext], list[Sequence[DetectorScore | None]]]:
        """Every detector's scores for the batch (one call each; `agent/detectors/cascade.py`:
        detectors outside the vote only on lines that may be emitted, unless every line's result
        is wanted); a line a detector raises on is dropped alone. With a short road, scheduled
        detectors already counted every line (`due`: id(context) -> the flags) and score the due
        ones only. `voted` (id(context) -> `_line_verdict` of the voters' scores) gets every line
        the voters judged: `_judge` need not work their verdict out again."""
        full = self.config.emit_all or bool(self.observers)
        # A never-seen line predicted to be only counted (a storm's repeat: `_judge` decides, in
        # order) needs no witness: `ahead` counts the batch's lines before it into the prediction.
        storm = self._storm_witnesses and voted is not None
        ahead: dict[tuple[str, int, str | None, tuple[str, ...]], int] = {}
        counted_repeat, skipped, planned = self.grouper.counted_repeat, self._skipped, self._planned
        facts_at, facts_of = self._facts_at, self._facts

        def doubtful(ctx: LineContext, scores: list[DetectorScore | None]) -> bool:
            found = self._line_verdict(ctx, scores)
            if voted is not None:
                voted[id(ctx)] = found
            if found[2] is Verdict.NORMAL:
                return False
            if storm and ctx.line.is_new and id(ctx) not in planned:
                facts = facts_at.get(id(ctx)) or facts_of(ctx.line)
                facts_at[id(ctx)] = facts
                if counted_repeat(ctx.line, facts, ahead):
                    skipped.add(id(ctx))
                    return False
            return True

        kept, columns = self.cascade.score_lines(
            contexts, full, doubtful,
            lambda ctx, exc: self._reject(ctx.line.line.source, ctx.line.line.raw, "score", exc),
            lambda d, batch: self._score_with(d, batch, due),
            lambda d, batch, wanted: self._score_some(d, batch, wanted, due))
        return kept, list(columns)

    def _score_with(
        self, d: Detector, contexts: list[LineContext], due: Mapping[int, tuple[bool, ...]]
    ) -> list[DetectorScore | None]:
        j = self._scheduled.get(id(d))
        if j is None:
            return list(d.score_lines(contexts))
        result: list[DetectorScore | None] = [None] * len(contexts)
        todo = [i for i, ctx in enumerate(contexts) if due[id(ctx)][j]]
        scheduled = self.short_road.scheduled[j] if self.short_road is not None else None
        if todo and scheduled is not None:
            for i, score in zip(todo, scheduled.score_due([contexts[i] for i in todo]), strict=True):
                result[i] = score
        return result

    def _score_some(
        self, d: Detector, contexts: list[LineContext], wanted: list[int], due: Mapping[int, tuple[bool, ...]]
    ) -> list[DetectorScore | None]:
        """A detector outside the vote on the `wanted` lines only (the cascade); a scheduled one
        was already counted on every line by the short road, else it counts them itself."""
        if id(d) not in self._scheduled:
            return score_where(d, contexts, wanted)
        column: list[DetectorScore | None] = [None] * len(contexts)
        for i, score in zip(wanted, self._score_with(d, [contexts[i] for i in wanted], due), strict=True):
            column[i] = score
        return column

    def _line_verdict(
        self, ctx: LineContext, detector_scores: Sequence[DetectorScore | None]
    ) -> tuple[list[DetectorScore], float, Verdict]:
        """The line's scores (at the hour's thresholds), combined score and verdict before operator
        feedback: the ensemble's vote, or WATCH when the explanation facts alone are notable."""
        scores = self._at_line_hour(ctx, [s for s in detector_scores if s is not None])
        score, verdict = self.ensemble.combine(scores, self.kinds)
        if verdict is Verdict.NORMAL and self.ensemble.facts and self.explainer.is_notable(ctx):
            # A template learned online is not in the training profile, but it is no longer news.
            verdict = Verdict.NORMAL if self.drift.is_learned(ctx.line.template_id) else Verdict.WATCH
        if verdict is not Verdict.NORMAL and self.explainer.ongoing_templates \
                and self.explainer.held_back_repeat(ctx.line):
            # the suspected incident the history ends in goes on: counted in its incident, raised
            # on its first line and each doubling (`agent/held_back.py`)
            verdict = Verdict.NORMAL
        return scores, score, verdict

    def _at_line_hour(self, ctx: LineContext, scores: list[DetectorScore]) -> list[DetectorScore]:
        """The scores judged against the thresholds of the line's hour (`hour_multipliers`)."""
        if self.hour_multipliers is None:
            return scores
        return _at_hour(scores, self.hour_multipliers[int(ctx.line.time // 3600) % 24], self.kinds)

    def _judge(self, ctx: LineContext, detector_scores: list[DetectorScore | None],
               voted: tuple[list[DetectorScore], float, Verdict] | None = None) -> list[Output]:
        """Ensemble, explanation and incident grouping of one scored line. `voted`: the verdict
        the voters' scores gave it, kept when no detector outside the vote scored it (its scores
        are then the voters'; a NORMAL verdict stays NORMAL: the explainer's counts do not change
        after a batch is observed, and a template learned online stays learned). When detectors
        outside the vote scored a line the voters found anomalous, their scores join its list
        and the vote stays the voters' (the ensemble counts no detector outside the vote)."""
        out: list[Output] = []
        if voted is None:
            scores, score, verdict = self._line_verdict(ctx, detector_scores)
        else:
            present = [s for s in detector_scores if s is not None]
            if len(voted[0]) == len(present):
                scores, score, verdict = voted
            elif voted[2] is not Verdict.NORMAL:
                scores = self._at_line_hour(ctx, present)
                score, verdict = voted[1], voted[2]
            else:
                scores, score, verdict = self._line_verdict(ctx, detector_scores)
        if verdict is not Verdict.NORMAL and self.feedback.is_expected(ctx.line.template_id):
            verdict = Verdict.NORMAL  # an operator marked this template as expected
            self.feedback.suppressed += 1
            metrics.feedback_suppressed.inc()
        self._drift(ctx.line.template_id, ctx.line.template, ctx.line.time, verdict is not Verdict.NORMAL,
                    ctx.line.is_new)
        if verdict is Verdict.NORMAL:
            if self.observers or self.verdict_observers or self.config.emit_all:
                self._observed(LineResult(ctx.line, tuple(scores), score, verdict), out)
            if self.explainer.burst_continues(ctx.line):  # a reported burst goes on: its incident counts it
                out.extend(self.grouper.count_burst_line(ctx.line))
            elif self.explainer.ongoing_templates and self.explainer.held_back_continues(ctx.line):
                # ... and so does the incident the history ends in
                out.extend(self.grouper.count_burst_line(ctx.line, self.explainer.ongoing_templates))
            return out
        explanations: tuple[Explanation, ...] | None = None
        if self.storm_road and ctx.line.is_new and id(ctx) not in self._planned:
            facts = self._facts_at.get(id(ctx)) or self._facts(ctx.line)
            if self.grouper.counted_repeat(ctx.line, facts):
                explanations = facts  # the storm road: counted, never emitted, so its facts suffice
                self.storm_counted += 1
        if explanations is None and id(ctx) in self._skipped:  # predicted counted, but emitted after all
            scores = self._late_witnesses(ctx, detector_scores)
            self.storm_late += 1
        line_scores = _shared(self._score_tuples, tuple(scores))
        if self.observers or self.verdict_observers or self.config.emit_all:
            self._observed(LineResult(ctx.line, line_scores, score, verdict), out)
        if explanations is None:
            explanations = _shared(self._explanation_tuples, self.explainer.explain(ctx, line_scores))
        anomaly = Anomaly(ctx.line, score, verdict, line_scores, explanations)
        incident_id, incident_events = self.grouper.add(anomaly)
        if incident_id is not None:  # the incident's signature, for `logdetect feedback --incident`
            self.feedback.remember(incident_id, ctx.line.template_id, ctx.line.template, ctx.line.line.message)
        self._grouped(verdict, incident_events, out)
        return out

    def _grouped(self, verdict: Verdict, incident_events: list[Incident], out: list[Output]) -> None:
        """An anomaly put in its incident: counted, and what is decided now goes out."""
        self.anomalies += 1
        self._uncounted[verdict is Verdict.DANGER] += 1  # (counted once per batch: `_count`)
        # Each anomaly's event goes out once it is decided, with its incident's id (a weak one
        # waits for a related strong one); a storm's repeats are counted, not emitted.
        out.extend(self._decided())
        for inc in incident_events:
            if inc.state is IncidentState.OPEN:
                _count_incident(inc.severity)
        out.extend(incident_events)

    def _counted(self, line: CountedLine, out: list[Output]) -> None:
        """`_judge` of a never-seen line on the counted road (agent/counted_road.py), in its turn:
        its vote is known not NORMAL and no operator expects its template (checked in the loop),
        so drift sees it and its incident counts it, from its pieces."""
        template_id = line.key[0]
        self._drift(template_id, line.template, line.time, True, True)
        incident_id, incident_events = self.grouper.count(line)
        self.feedback.remember(incident_id, template_id, line.template, line.parts[1])
        self.storm_counted += 1
        self.counted_road += 1
        self._grouped(line.verdict, incident_events, out)

    def _in_turn(self, line: Deferred, vote: NewLineVote, due: dict[int, tuple[bool, ...]], out: list[Output]) -> None:
        """A never-seen line predicted counted before its template's incident was known
        (`IncidentGrouper.plan_repeat`), in its turn: counted when `repeat_in_turn` says so,
        else the full road it would have taken, as from the loop (its entity's history and the
        explainer's counts as at its turn; its scores computed now: each a function of its
        context and the schedule's flags)."""
        key = line.key
        repeat = self.grouper.repeat_in_turn(key[0], key[1], line.t, key[2])
        if repeat is not None and repeat.incident is not None:
            self._counted(CountedLine(repeat.incident, key, line.parts, line.template, line.params, line.t,
                                      line.from_arrival, vote.score, vote.verdict, vote.scores, line.facts), out)
            return
        self.counted_late += 1
        tl = TemplatedLine(ParsedLine(*line.parts), key[0], line.template, line.params, 0, True, line.t,
                           line.from_arrival)
        self.explainer.remember(tl, line.previous, line.noted)
        ctx = LineContext(tl, np.asarray(line.row, dtype=np.float32), line.history, line.levels)
        due[id(ctx)] = line.flags  # (the batch's: a late witness reads it there)
        self._facts_at[id(ctx)] = line.facts
        voted: dict[int, tuple[list[DetectorScore], float, Verdict]] = {}
        kept, per_detector = self._score([ctx], due, voted)
        if kept:
            out.extend(self._judge(ctx, [d[0] for d in per_detector], voted.get(id(ctx))))

    def _drift(self, template_id: int, template: str, t: float, anomalous: bool, is_new: bool) -> None:
        """A judged line for online learning (`DriftLearner.observe`)."""
        learned = self.drift.observe(template_id, template, t, anomalous, is_new)
        if learned is not None:  # said once, saved at once: it survives a restart
            log.info("template_learned", message=learned.describe(), template_id=learned.template_id)
            self.drift.save()

    def _new_line_vote(self) -> NewLineVote | None:
        """The vote on a never-seen line when it is known from its token alone and the counted
        road may be taken (agent/counted_road.py: the storm road and the cascade on), else None."""
        if not (self.storm_road and self.config.cascade):
            return None
        return new_line_vote(self.cascade.voters, self.ensemble, self.kinds)

    def _facts(self, line: TemplatedLine) -> tuple[Explanation, ...]:
        """The line's fact explanations (`Explainer.facts`), one tuple per distinct sequence."""
        return _shared(self._explanation_tuples, self.explainer.facts(line))

    def _late_witnesses(self, ctx: LineContext, detector_scores: list[DetectorScore | None]) -> list[DetectorScore]:
        """The line's scores with its witnesses' (skipped at scoring time on a storm prediction
        that did not hold), as the cascade would have scored them (`_score_some`)."""
        filled = list(detector_scores)
        for k, d in enumerate(self.detectors):
            if filled[k] is None and d.name in self.cascade.witness_names:
                filled[k] = self._score_some(d, [ctx], [0], self._due)[0]
        return self._at_line_hour(ctx, [s for s in filled if s is not None])

    def _fact_floor(self, template_id: int, level: Level) -> float:
        """The largest window count at which the explanation facts leave a training template's
        line at this level NORMAL: its burst floor (`Explainer.burst_floor`), or -1 when the
        template and level alone make it notable (`Explainer.notable_template`); remembered."""
        key = (template_id, level)
        found = self._floors.get(key)
        if found is None:
            if len(self._floors) >= 65_536:
                self._floors.clear()
            explainer = self.explainer
            found = self._floors[key] = (-1.0 if explainer.notable_template(template_id, False, level)
                                         else explainer.burst_floor(template_id))
        return found

    def _observed(self, result: LineResult, out: list[Output]) -> None:
        """Every line's result goes to the observers (and out, with `emit_all`)."""
        for observe in self.observers:
            observe(result)
        for observe in self.verdict_observers:
            observe(result)
        if self.config.emit_all:
            out.append(result)

    def _reject(self, source: str, line: str, stage: str, exc: BaseException) -> None:
        self.rejected.append(rejected(source, line, stage, exc))

    def take_rejected(self) -> list[Rejected]:
        """Records dropped since the last call (the daemon counts, logs and dead-letters them)."""
        out, self.rejected = self.rejected, []
        return out

    def _advance_log_clock(self, t: float) -> None:
        """Move the log clock to line time `t`; every `SWEEP_SECS` of log time, end the sessions
        of entities idle `idle_entity_secs` by that clock (before this line joins its entity).
        The ended sessions are judged together after the micro-batch's loop (`_judge_ended`)."""
        if not math.isfinite(t) or t <= self._log_clock:
            return
        self._log_clock = t
        if t - self._swept_at >= SWEEP_SECS:
            self._swept_at = t
            ended = self.features.end_idle(t, SESSION_MIN_TOKENS)
            if ended:  # most sweeps end nothing
                judged = self._judged
                self._ending.extend(s for s in ended if judged(s))

    def _judge_ended(self, out: list[Output]) -> None:
        """Judge the sessions the log clock ended during the micro-batch's loop all together (one
        batch per model: `Cascade.judge_sessions`), before its lines are scored (the models' memos
        then answer the lines' windows the sessions' scoring computed). Nothing a verdict reads
        changes inside the loop (no line is judged there: drift learns and the detectors score
        after it; expected templates change only in `tick`; the models and the memos are pure),
        and only session verdicts go out during it, so the outputs are those of judging each
        sweep's sessions at once, whatever the arrival batching."""
        ended, self._ending = self._ending, []
        try:
            judged = self.cascade.judge_sessions(ended, self.ensemble, self.kinds, self.session_memo)
        except Exception:  # each judged alone, and one that fails is dropped alone
            judged = [self._judge_alone(s) for s in ended]
        out.extend(self._session_verdicts(ended, judged))

    # -- records held back (multi-line stitching) ------------------------------------------------

    def pending_records(self) -> int:
        """Records received but not yet turned into lines (a stitched record waits for the next
        line to know it is complete). The daemon acks a batch only when none of it is held."""
        return self.stitcher.pending if self.stitcher is not None else 0

    def held_by_source(self) -> dict[str, int]:
        """Physical lines held back per source (the daemon acks a batch only once none are)."""
        return self.stitcher.held() if self.stitcher is not None else {}

    def flush_pending(self, now: float) -> list[Output]:
        """Process whatever the stitcher holds (input paused, or end of input)."""
        out: list[Output] = []
        if self.stitcher is not None and self.stitcher.pending:
            self._process_batch(self.stitcher.flush(), now, out)
        return out

    # -- time-driven work ---------------------------------------------------------------------

    def tick(self, now: float) -> list[Output]:
        """Time-driven work: held records once input pauses, idle sessions, quiet incidents."""
        out: list[Output] = []
        self.feedback.refresh()  # labels written by `logdetect feedback` apply at once
        self.feedback.maybe_save(now)
        if now - self._last_input >= STITCH_IDLE_SECS:
            # A stitched record is complete only when the next line starts; on a quiet stream the
            # next line may never come, so hand on what is pending once input pauses.
            out.extend(self.flush_pending(now))
        # Sessions end and incidents resolve on the log's clock (see _advance_log_clock). Only
        # when input has stopped for `idle_entity_secs` does the wall clock move it on, so a
        # quiet service's last sessions are judged and its incidents resolve.
        silent = now - self._last_input
        clock = self._log_clock
        idle = silent >= self.config.idle_entity_secs
        if idle and math.isfinite(clock):
            clock += silent
            out.extend(self._session_verdicts(self.features.end_idle(clock, SESSION_MIN_TOKENS)))
        if math.isfinite(clock):
            # Incidents resolve on the grouper's own clock (the anomalies' believed times), as
            # its sweep in `add` does in a scan: the lines' clock may believe a lone timestamp
            # far ahead, and a tick on it would make live grouping depend on arrival timing.
            grouper_clock = self.grouper.clock + (silent if idle else 0.0)
            resolved = self.grouper.tick(min(clock, grouper_clock)) if math.isfinite(grouper_clock) else []
            out.extend(self._decided())
            out.extend(resolved)
        if self.snapshotter is not None and self.snapshotter.maybe_save(now):
            metrics.snapshot_bytes.set((self.snapshotter.path).stat().st_size)
            self.drift.save()  # the online counts go with the snapshot
        if self.held_back_state is not None and self.explainer.ongoing is not None:
            # on the snapshot's timer, whether or not the miner learnt anything (the outage's
            # lines may all be of templates it knows)
            self.held_back_state.maybe_save(self.explainer.ongoing, now)
        return out

    def _save_held_back(self) -> None:
        if self.held_back_state is not None and self.explainer.ongoing is not None:
            self.held_back_state.save(self.explainer.ongoing)

    def close(self, now: float) -> list[Output]:
        """End of input: everything held, every open session and incident, then a snapshot."""
        out = self.flush_pending(now)
        out.extend(self._session_verdicts(self.features.end_all(SESSION_MIN_TOKENS)))
        resolved = self.grouper.close()
        out.extend(self._decided())
        out.extend(resolved)
        self.save_state()
        return out

    def _decided(self) -> list[Output]:
        return [a.with_incident(incident_id) for a, incident_id in self.grouper.drain()]

    def _session_verdicts(self, sessions: Iterable[EndedSession], verdicts: Sequence[Judged | None] | None = None
                          ) -> list[Output]:
        """The verdicts to emit on ended sessions (`verdicts`: the judgements of these sessions,
        all judged, when already made)."""
        # Sessions ending together are judged together (agent/detectors/cascade.py: windows batched
        # across them; detectors outside the vote only on the sessions the vote flags).
        ended = [s for s in sessions if self._judged(s)] if verdicts is None else list(sessions)
        out: list[Output] = []
        if not ended:
            return out
        if verdicts is None:
            verdicts = self.cascade.judge_sessions(ended, self.ensemble, self.kinds, self.session_memo)
        for s, judged in zip(ended, verdicts, strict=True):
            if judged is None or judged[2] is Verdict.NORMAL:
                continue
            expected = self.feedback.expected
            if expected and self._rests_on(s, expected):  # an operator marked what makes it anomalous as expected
                self.feedback.suppressed_sessions += 1
                metrics.feedback_suppressed_sessions.inc()
                continue
            if self.drift.learned and self._rests_on(s, expected | self.drift.learned.keys()):
                self.drift.quiet_sessions += 1  # its only news is a template learned online
                continue
            scores, score, verdict = judged
            out.append(SessionVerdict(s.entity, s.tokens, tuple(scores), score, verdict, s.last_seen,
                                      self.explainer.explain_session(s.tokens, tuple(scores))))
        return out

    def _judged(self, s: EndedSession) -> bool:
        """Whether an ended session is judged at all."""
        # The whole stream is no session; a session that only went quiet (or was cut by the
        # end of input) and does not end the way training sessions end is a fragment: its
        # set and order say nothing, so it is judged only when it holds a template never
        # seen in training (then it is anomalous however it would have gone on).
        if len(s.tokens) < SESSION_MIN_TOKENS or s.whole_stream:
            return False
        return 0 in s.tokens or self.features.looks_complete(s)

    def _judge_alone(self, s: EndedSession) -> Judged | None:
        """One judged session's judgement, None (and the session rejected) when judging raises."""
        try:
            return self.cascade.judge_sessions([s], self.ensemble, self.kinds, self.session_memo)[0]
        except Exception as exc:
            self._reject(s.entity, f"session of {len(s.tokens)} lines ending at {s.last_seen}", "session", exc)
            return None

    def _judge_session(self, s: EndedSession) -> Judged | None:
        """The session models' verdict on one ended session, None when it is not judged."""
        if not self._judged(s):
            return None
        return self.cascade.judge_sessions([s], self.ensemble, self.kinds, self.session_memo)[0]

    def _rests_on(self, s: EndedSession, expected: AbstractSet[int]) -> bool:
        """True when the session holds `expected` templates (labelled normal by an operator, or
        learned online) and, judged without their lines, is not anomalous: the verdict's only
        reasons are expected ones. A token is dropped only when every template of the session
        behind it is expected (all templates unknown to training share token 0)."""
        if s.templates is None or expected.isdisjoint(s.templates):
            return False
        all_expected: dict[int, bool] = {}
        for tid in s.templates:
            token = self.vocab.get(tid, 0)
            all_expected[token] = all_expected.get(token, True) and tid in expected
        drop = {token for token, yes in all_expected.items() if yes}
        keep = [i for i, token in enumerate(s.tokens) if token not in drop]
        rest = s._replace(tokens=tuple(s.tokens[i] for i in keep),
                          levels=tuple(s.levels[i] for i in keep if i < len(s.levels)))
        judged = self._judge_session(rest)
        return judged is None or judged[2] is Verdict.NORMAL

    def detector_stats(self) -> dict[str, dict[str, float]]:
        """Each detector's counters, by name."""
        return {d.name: d.stats() for d in self.detectors}


@runtime_checkable
class RowScorer(Protocol):
    """A detector that scores lines from their feature rows alone (the Isolation Forest)."""

    name: str

    def score_rows(self, rows: Sequence[Sequence[float]]) -> list[DetectorScore]:
        """`score_lines` of lines with these feature rows."""


class Pending(NamedTuple):
    """A line that takes the short road unless its row's score is not clear (`Pipeline._settle`):
    what the full road needs of it, as it stood at its turn (a named tuple: one per line that
    missed the row cache, built in the loop, where a frozen dataclass costs several times more)."""

    at: int  # its place among the batch's full-road contexts
    row: tuple[float, ...]
    parts: tuple[Any, ...]  # `LineParser.parts`
    tid: int
    template: str
    params: tuple[str, ...]
    token: int
    is_new: bool
    t: float
    from_arrival: bool
    history: tuple[int, ...]
    levels: tuple[int, ...]
    flags: tuple[bool, ...]
    previous: int | None
    noted: int  # its template's window count when noted (`Explainer.note_at`)


class Deferred(NamedTuple):
    """A never-seen line predicted counted before its template's incident was known
    (`IncidentGrouper.plan_repeat`): its pieces, and what the full road needs of it as it
    stood at its turn, should it be emitted after all (`Pipeline._in_turn`)."""

    key: tuple[int, str, tuple[str, ...]]  # its repeat key: template, entity, fact kinds
    parts: tuple[Any, ...]  # `LineParser.parts`
    template: str
    params: tuple[str, ...]
    t: float
    from_arrival: bool
    facts: tuple[Explanation, ...]
    row: tuple[float, ...]
    history: tuple[int, ...]
    levels: tuple[int, ...]
    flags: tuple[bool, ...]
    previous: int | None
    noted: int  # its template's window count when noted (`Explainer.note_at`)


class TemplateTexts(Mapping[int, str]):
    """Template text by id across the frozen training miner and the online miner (ids offset by
    ONLINE_ID_BASE), so explanations name templates born after training too."""

    def __init__(self, training: TemplateMiner, online: TemplateMiner) -> None:
        self.training = training
        self.online = online

    def __getitem__(self, template_id: int) -> str:
        if template_id >= ONLINE_ID_BASE:
            text = self.online.template(template_id - ONLINE_ID_BASE)
        else:
            text = self.training.template(template_id)
        if text is None:
            raise KeyError(template_id)
        return text

    def __iter__(self) -> Iterator[int]:
        yield from self.training.templates()
        yield from (ONLINE_ID_BASE + t for t in self.online.templates())

    def __len__(self) -> int:
        return len(self.training) + len(self.online)


def _at_hour(
    scores: list[DetectorScore], multiplier: float, kinds: Mapping[str, DetectorKind] | None = None
) -> list[DetectorScore]:
    """Scores judged against thresholds scaled by the hour's multiplier (fixed rules keep theirs)."""
    if multiplier == 1.0:
        return scores
    out = []
    for s in scores:
        if kinds is not None and kinds.get(s.detector) is DetectorKind.RULE:
            out.append(s)
            continue
        threshold = s.threshold * multiplier if s.threshold > 0 else s.threshold
        out.append(dataclasses.replace(s, threshold=threshold, fired=s.score > threshold))
    return out


SHARED_TUPLES = 1024  # distinct tuples `_shared` keeps (emptied when full)
_T = TypeVar("_T")


def _shared(memo: dict[tuple[int, ...], tuple[_T, ...]], items: tuple[_T, ...]) -> tuple[_T, ...]:
    """The tuple of these very objects kept in `memo` (keyed by their ids: the kept tuple holds
    them, so an id in a key stays theirs), else `items`, now kept. A tracked object fewer for
    every anomaly that repeats another's scores or explanations (the collector's work)."""
    key = tuple(map(id, items))
    found = memo.get(key)
    if found is None:
        remember(memo, key, items, SHARED_TUPLES)
        return items
    return found


def _ort_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "none"
    return str(onnxruntime.__version__)


def _provider_of(detectors: Sequence[Detector]) -> str:
    for d in detectors:
        model = getattr(d, "model", None)
        provider = getattr(model, "provider", None)
        if isinstance(provider, str):
            return provider
    return "CPUExecutionProvider"


def _replace(cfg: ParserConfig, **changes: Any) -> ParserConfig:
    return dataclasses.replace(cfg, **changes)


def check_bundle_compatible(bundle: Bundle) -> None:
    """Fail fast on a bundle missing what the pipeline needs (clear message, not a KeyError)."""
    for name in ("drain_state.json", "vocab.json", "features.json", "profile.json"):
        if name not in bundle.manifest.get("files", {}):
            raise BundleError(f"bundle {bundle.path} has no {name}: retrain it with this logdetect")

