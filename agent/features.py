"""Per-line and time-window features (seed 002's tables), and the per-entity state behind them.

One implementation serves training and the agent, so train/serve skew cannot happen: the
trainer runs every training line through the same `FeatureExtractor` the agent runs live.

State is bounded: entities are kept in an LRU of at most `max_entities`, idle entities are
evicted after `idle_secs`, and each entity's window holds at most `max_window_lines` lines.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np

from agent.types import Level, TemplatedLine

FEATURE_NAMES: tuple[str, ...] = (
    "template_token",  # which template (model token; 0 = never seen in training)
    "template_log_freq",  # log10 of the template's training frequency (rarity)
    "level",  # Level value
    "hour_of_day",
    "day_of_week",
    "msg_length",
    "param_count",
    "template_freq_window",  # this template's count in the entity's window
    "burst_ratio",  # that count over its mean in training windows
    "level_ratio",  # share of WARN-or-worse lines in the window
    "distinct_templates_window",
    "new_template",  # 1 when the template was not in the training vocabulary
    "transition_prob",  # P(this template | the entity's previous template), from training
)
N_FEATURES = len(FEATURE_NAMES)
MIN_TRAINING_SESSIONS = 10  # fewer training sessions say nothing about how a session ends
# A calendar feature says something only where the history covers its whole cycle: the hour of
# day from a day of history, the day of week from a week. A history of four weekdays makes
# every other weekday "outside its training range" (Mac_2k's Isolation Forest flagged routine
# lines on a Sunday for that alone); below the span the feature is served as 0 in training and
# serving alike, so no model can split on it.
CLOCK_SPANS: dict[str, float] = {"hour_of_day": 86400.0, "day_of_week": 7 * 86400.0}
MIN_END_SHARE = 0.01
_IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}
NO_ROW: tuple[float, ...] = ()  # `FeatureExtractor.advance` asked for no row
# Lines an entity holds back from its window and history while advanced without a row (each
# one's (time, token, level): the same tuple its window then keeps)
BACKLOG_LINES = 64
_WARN = int(Level.WARN)


@dataclass(frozen=True)
class FeatureConfig:
    """Feature windows and the bounds of per-entity state (entities, idle time, history)."""

    window_secs: float = 60.0
    max_window_lines: int = 512
    history_len: int = 64  # tokens of recent history kept per entity for the sequence models
    max_entities: int = 100_000
    idle_secs: float = 600.0
    max_session_tokens: int = 1024  # tokens kept per entity for session verdicts (the last ones)


@dataclass
class FeatureStats:
    """What the extractor learns from training lines (saved as features.json in the bundle)."""

    token_counts: dict[int, int] = field(default_factory=dict)
    transitions: dict[int, dict[int, int]] = field(default_factory=dict)
    mean_window_freq: dict[int, float] = field(default_factory=dict)
    total: int = 0
    # How training sessions (entities other than the whole stream) end: the last token of each
    # and their count and shortest length, so the agent can tell a complete session from a
    # fragment that only went quiet.
    session_ends: dict[int, int] = field(default_factory=dict)
    sessions: int = 0
    session_min_len: int = 0
    # Seconds between the first and last training line (None: a bundle from before it was kept,
    # whose calendar features are all served); gates the calendar features (`CLOCK_SPANS`).
    span_secs: float | None = None

    def clock_used(self, name: str) -> bool:
        """Whether the history is long enough for this calendar feature (`CLOCK_SPANS`)."""
        return self.span_secs is None or self.span_secs >= CLOCK_SPANS[name]

    def to_json(self) -> dict[str, Any]:
        """The training statistics as plain JSON (keys as strings)."""
        return {
            "token_counts": {str(k): v for k, v in self.token_counts.items()},
            "transitions": {str(a): {str(b): c for b, c in row.items()} for a, row in self.transitions.items()},
            "mean_window_freq": {str(k): v for k, v in self.mean_window_freq.items()},
            "total": self.total,
            "session_ends": {str(k): v for k, v in self.session_ends.items()},
            "sessions": self.sessions,
            "session_min_len": self.session_min_len,
            "span_secs": self.span_secs,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FeatureStats:
        """The training statistics from their bundle JSON."""
        return cls(
            token_counts={int(k): int(v) for k, v in obj["token_counts"].items()},
            transitions={
                int(a): {int(b): int(c) for b, c in row.items()} for a, row in obj["transitions"].items()
            },
            mean_window_freq={int(k): float(v) for k, v in obj["mean_window_freq"].items()},
            total=int(obj["total"]),
            session_ends={int(k): int(v) for k, v in (obj.get("session_ends") or {}).items()},
            sessions=int(obj.get("sessions", 0)),
            session_min_len=int(obj.get("session_min_len", 0)),
            span_secs=None if obj.get("span_secs") is None else float(obj["span_secs"]),
        )


class EntityState:
    """The recent past of one entity: its time window, history and session tokens."""

    __slots__ = ("backlog", "context", "counts", "history", "last_seen", "last_token", "levels", "session",
                 "session_levels", "session_templates", "severe", "whole_stream", "window")

    def __init__(self, cfg: FeatureConfig, whole_stream: bool = False,
                 blank: tuple[deque[int], deque[int]] | None = None) -> None:
        # `blank`: empty deques bounded as the history and the session are, the session's copied
        # here, the history's when it takes its first line in (`FeatureExtractor.advance`; a copy
        # is about three times cheaper than building a bounded deque: a new entity every third
        # line on an sshd stream)
        long = (blank if blank is not None else _blanks(cfg))[1]
        # The window and the recent history are made when they first take a line in
        # (`FeatureExtractor.advance`): an entity whose lines all take the short road without a
        # row (an sshd connection) never needs them. Until then they are the shared, empty `_NONE`.
        self.window: deque[tuple[float, int, int]] = _NONE
        self.counts: dict[int, int] = {}
        self.severe = 0
        self.history: deque[int] = _NONE
        self.levels: deque[int] = _NONE
        self.session: deque[int] = long.copy()
        self.session_levels: deque[int] = long.copy()
        # The distinct template ids of the session (None once more than max_session_tokens), so
        # a verdict can tell which templates it rests on (operator feedback).
        self.session_templates: set[int] | None = set()
        self.last_token: int | None = None
        self.last_seen = 0.0
        self.whole_stream = whole_stream  # the entity is the stream itself: no session to judge
        self.context: list[int] | None = None  # the short road's context ids (agent/short_road.py)
        # Lines advanced without a row whose (time, token, level) the window and the history have
        # not taken in yet (`FeatureExtractor.advance`, want_row False): taken in, in order,
        # before anything reads them.
        self.backlog: list[tuple[float, int, int]] = []

    @classmethod
    def from_first(cls, cfg: FeatureConfig, first: FirstLine, blank: tuple[deque[int], deque[int]]) -> EntityState:
        """The state an entity holds after its first line (`first`), built at its second."""
        state = cls(cfg, first.whole_stream, blank)
        token, level = first.history[0], first.levels[0]
        state.backlog.append((first.last_seen, token, level))  # its window and history take it in
        state.session.append(token)
        state.session_levels.append(level)
        state.session_templates = {first.template_id}
        state.last_token = token
        state.last_seen = first.last_seen
        state.context = first.context
        return state


class FirstLine:
    """An entity that has logged one line: what `EntityState` would hold then, without its
    window and bounded deques (on BGL, entity = component, ~6,400 of 7,000 lines open an entity
    and ~5,000 entities end after that one line). `FeatureExtractor.advance` turns it into an
    `EntityState` at the entity's second line (`EntityState.from_first`); readers see the same
    history, levels, session and templates as that state's."""

    __slots__ = ("context", "history", "last_seen", "last_token", "levels", "severe", "template_id", "whole_stream")

    def __init__(self, whole_stream: bool, now: float, token: int, level: int, template_id: int) -> None:
        self.history = (token,)
        self.levels = (level,)
        self.severe = 1 if level >= _WARN else 0
        self.template_id = template_id
        self.last_token: int | None = token
        self.last_seen = now
        self.whole_stream = whole_stream
        self.context: list[int] | None = None  # the short road's context ids (agent/short_road.py)

    @property
    def session(self) -> tuple[int, ...]:
        """The session's tokens: its one line's."""
        return self.history

    @property
    def session_levels(self) -> tuple[int, ...]:
        """The session's levels: its one line's."""
        return self.levels

    @property
    def session_templates(self) -> set[int]:
        """The session's template ids: its one line's."""
        return {self.template_id}


# What `FeatureExtractor.advance` hands back about an entity (read: history, levels, context)
Entity = EntityState | FirstLine


_NONE: deque[Any] = deque(maxlen=0)  # an entity's window or history not made yet (never appended to)


def _blanks(cfg: FeatureConfig) -> tuple[deque[int], deque[int]]:
    """Empty deques bounded as an entity's history and session are (`EntityState`)."""
    return deque(maxlen=cfg.history_len), deque(maxlen=cfg.max_session_tokens)


class EndedSession(NamedTuple):
    """An entity's session when it ends (idle, evicted or closed): its tokens and levels (a named
    tuple: one per ended session, most of them judged NORMAL from the session memo at once,
    where a frozen dataclass cost 1.3 µs to build, more than judging it)."""

    entity: str
    tokens: tuple[int, ...]
    levels: tuple[int, ...]
    last_seen: float
    whole_stream: bool = False
    templates: frozenset[int] | None = None  # distinct template ids (None: too many to keep)


class FeatureExtractor:
    """Per-line and time-window features with bounded per-entity state (LRU + idle TTL)."""

    def __init__(self, config: FeatureConfig | None = None, stats: FeatureStats | None = None) -> None:
        self.config = config or FeatureConfig()
        self.stats = stats or FeatureStats()
        self.entities: OrderedDict[str, Entity] = OrderedDict()
        self.evicted_over_cap = 0
        self._blank = _blanks(self.config)  # never appended to: copied for each new entity
        # An entity's first line builds a `FirstLine` (when history and session keep a line at all)
        self._first = self.config.history_len >= 1 and self.config.max_session_tokens >= 1
        self._refresh_cache()

    def _refresh_cache(self) -> None:
        total = max(self.stats.total, 1)
        self._log_freq = {t: math.log10(c / total) for t, c in self.stats.token_counts.items()}
        self._floor_log_freq = math.log10(0.5 / total)
        self._trans_total = {a: sum(row.values()) for a, row in self.stats.transitions.items()}
        self._trans: dict[tuple[int | None, int], float] = {}  # (previous, token) -> transition_prob
        self._lengths: dict[int, float] = {}  # message length -> length_bucket
        self._clock_at, self._clock = math.nan, (0.0, 0.0)  # the last line time -> (hour, day of week)
        self._clock_used = (self.stats.clock_used("hour_of_day"), self.stats.clock_used("day_of_week"))
        # `round(x, n)` of a float costs ≈ 1 µs (correctly rounded, by way of its digits): the two
        # ratios a row rounds are pure functions of a few small values, remembered by them
        self._bursts: dict[tuple[int, float], float] = {}  # (count, template's mean) -> burst_ratio
        self._level_ratios: dict[tuple[int, int], float] = {}  # (severe, window lines) -> level_ratio
        self._mean_window_freq = self.stats.mean_window_freq  # the same dict (fit fills it in place)

    def _transition(self, prev: int | None, token: int) -> float:
        """P(token | prev) in training, rounded as the feature is (1.0 for an entity's first line)."""
        trans = 0.0
        if prev is not None:
            row = self.stats.transitions.get(prev)
            if row:
                trans = row.get(token, 0) / self._trans_total[prev]
        else:
            trans = 1.0  # the first line of an entity has no predecessor to disagree with
        trans = round(trans, 2)
        if len(self._trans) >= 65_536:
            self._trans.clear()
        self._trans[(prev, token)] = trans
        return trans

    def update(self, line: TemplatedLine) -> tuple[tuple[float, ...], Entity]:
        """Advance the line's entity by this line; return its feature row and the entity state."""
        parsed = line.line
        return self.advance(parsed.entity, parsed.source, line.time, line.token, parsed.level, len(parsed.message),
                            len(line.params), line.is_new, line.template_id)

    def advance(self, ent: str, source: str, now: float, token: int, line_level: int, length_chars: int,
                n_params: int, is_new: bool, template_id: int, want_row: bool = True
                ) -> tuple[tuple[float, ...], Entity]:
        """`update` from the line's pieces (the pipeline's short road builds no line object): its
        entity and source, time, model token, level, message length in characters, parameter
        count, whether the template is new, template id. Without `want_row` the row is not built
        (`NO_ROW`: the short road needs none when no detector's score is keyed by it) and the
        entity's window and recent history take the line in only when they are next read (its
        backlog); its session advances at once, so sessions end as before.

        An entity's first line makes a `FirstLine` (no window, no deques: most BGL components log
        one line), its second the `EntityState` it would have had (`EntityState.from_first`)."""
        cfg = self.config
        entities = self.entities
        level = int(line_level)
        found = entities.get(ent)
        if found is None and self._first:
            first = entities[ent] = FirstLine(ent == source, now, token, level, template_id)
            if len(entities) > cfg.max_entities:
                entities.popitem(last=False)
                self.evicted_over_cap += 1
            if not want_row:
                return NO_ROW, first
            # the row of a first line: it alone in the window, no previous token
            return self._row(None, token, now, level, length_chars, n_params, is_new, 1, first.severe, 1, 1), first
        if found is None:
            state = entities[ent] = EntityState(cfg, ent == source, self._blank)
            if len(entities) > cfg.max_entities:
                entities.popitem(last=False)
                self.evicted_over_cap += 1
        else:
            entities.move_to_end(ent)
            if isinstance(found, FirstLine):  # its second line: the state its first left
                state = entities[ent] = EntityState.from_first(cfg, found, self._blank)
            else:
                state = found
        backlog = state.backlog
        backlog.append((now, token, level))
        # The window and the recent history are read only with a row (a line on the full road):
        # without one, the line waits in the entity's backlog (bounded), taken in, in order, with
        # the next row's line (or when the backlog is full), or never when the session ends first.
        if want_row or len(backlog) >= BACKLOG_LINES:
            if state.window is _NONE:  # the entity's first line taken in: make them
                state.window, state.history, state.levels = deque(), self._blank[0].copy(), self._blank[0].copy()
            window, counts, history, levels = state.window, state.counts, state.history, state.levels
            window_secs, cap = cfg.window_secs, cfg.max_window_lines
            for entry in backlog:
                at, taken, taken_level = entry
                # Expire lines older than the window (times may go backwards: keep those, never crash).
                horizon = at - window_secs
                while window and (window[0][0] < horizon or len(window) >= cap):
                    _, old_token, old_level = window.popleft()
                    c = counts[old_token] - 1
                    if c:
                        counts[old_token] = c
                    else:
                        del counts[old_token]
                    if old_level >= _WARN:
                        state.severe -= 1
                window.append(entry)
                counts[taken] = counts.get(taken, 0) + 1
                if taken_level >= _WARN:
                    state.severe += 1
                history.append(taken)
                levels.append(taken_level)
            backlog.clear()
        prev = state.last_token
        state.session.append(token)
        state.session_levels.append(level)
        seen = state.session_templates
        if seen is not None and template_id not in seen:
            if len(seen) >= cfg.max_session_tokens:
                state.session_templates = None
            else:
                seen.add(template_id)
        state.last_token = token
        state.last_seen = now
        if not want_row:
            return NO_ROW, state
        counts = state.counts
        return self._row(prev, token, now, level, length_chars, n_params, is_new, counts[token], state.severe,
                         len(state.window), len(counts)), state

    def _row(self, prev: int | None, token: int, now: float, level: int, n: int, n_params: int, is_new: bool,
             freq: int, severe: int, n_window: int, n_distinct: int) -> tuple[float, ...]:
        """A line's feature row (`advance`): `n` its length in characters, `freq` its template's
        count in the entity's window of `n_window` lines, `severe` of them WARN or worse, holding
        `n_distinct` templates; `prev` the entity's token before it."""
        # The same few values recur line after line: remember them (each a pure function of its key).
        trans = self._trans.get((prev, token))
        if trans is None:
            trans = self._transition(prev, token)
        if now != self._clock_at:
            # the hour of the day and the day of the week (Monday = 0; 1970-01-01 was a Thursday),
            # inline: most lines of a stream have a time of their own (a time that is not finite
            # raises here, as it always did, whether the calendar is used or not)
            days = math.floor(now / _SECONDS_PER_DAY)
            self._clock_at = now
            hour_used, dow_used = self._clock_used
            if hour_used or dow_used:
                self._clock = (float(int((now - days * _SECONDS_PER_DAY) // 3600)) if hour_used else 0.0,
                               float((days + 3) % 7) if dow_used else 0.0)
        hour, dow = self._clock
        length = self._lengths.get(n)
        if length is None:
            length = self._lengths[n] = length_bucket(n)
        mean = self._mean_window_freq.get(token, 1.0)
        burst = self._bursts.get((freq, mean))
        if burst is None:
            burst = _remember(self._bursts, (freq, mean), round(freq / max(mean, 1.0), 1))
        if severe:
            level_ratio = self._level_ratios.get((severe, n_window))
            if level_ratio is None:
                level_ratio = _remember(self._level_ratios, (severe, n_window), round(severe / n_window, 2))
        else:
            level_ratio = 0.0
        return (
            float(token),
            self._log_freq.get(token, self._floor_log_freq),
            float(level),
            hour,
            dow,
            length,
            float(n_params),
            float(freq),
            burst,  # burst_ratio: round(freq / max(mean, 1.0), 1)
            level_ratio,  # round(severe / n_window, 2) if severe else 0.0
            float(n_distinct),
            1.0 if is_new else 0.0,
            trans,
        )

    def end_idle(self, now: float, min_tokens: int = 0) -> list[EndedSession]:
        """Remove entities idle for `idle_secs` and hand back their sessions for verdicts (those of
        at least `min_tokens` lines: the shorter ones end without a verdict and without an object)."""
        ended: list[EndedSession] = []
        horizon = now - self.config.idle_secs
        entities = self.entities
        while entities:
            ent = next(iter(entities))  # the least recently seen
            state = entities[ent]
            if state.last_seen >= horizon:
                break
            del entities[ent]
            if len(state.session) >= min_tokens:
                ended.append(_ended(ent, state))
        return ended

    def looks_complete(self, session: EndedSession) -> bool:
        """Whether a session looks whole by the training sessions' own statistics: enough training
        sessions to say, at least as long as the shortest, and ending the way at least
        `MIN_END_SHARE` of them ended. Anything else is a fragment (it only went quiet)."""
        st = self.stats
        if session.whole_stream or st.sessions < MIN_TRAINING_SESSIONS or not session.tokens:
            return False
        if len(session.tokens) < st.session_min_len:
            return False
        return st.session_ends.get(session.tokens[-1], 0) >= MIN_END_SHARE * st.sessions

    def end_all(self, min_tokens: int = 0) -> list[EndedSession]:
        """End every entity's session and forget all state (stream end, reload); hand back the
        sessions of at least `min_tokens` lines."""
        ended = [_ended(ent, state) for ent, state in self.entities.items() if len(state.session) >= min_tokens]
        self.entities.clear()
        return ended

    # -- training -------------------------------------------------------------------------

    @classmethod
    def fit(
        cls, lines: Iterable[TemplatedLine], config: FeatureConfig | None = None
    ) -> tuple[FeatureExtractor, np.ndarray]:
        """Learn the statistics from training lines and return the extractor with their features.

        Two passes over the same code path: the first counts templates and transitions
        (`FeatureCounts.count`); the second computes every line's features exactly as the agent
        will (`training_rows`), then `finish_rows` sets what needs every row. Distributed training
        runs the same three steps on each entity owner's lines and merges the counts
        (`FeatureCounts.merge`; trainer/distributed.py).
        """
        cfg = config or FeatureConfig()
        inputs = [feature_input(tl) for tl in lines]
        counts, prevs = FeatureCounts.count(inputs)
        stats = FeatureCounts.merge([counts])
        rows = training_rows(inputs, prevs, stats, cfg)
        finish_rows(rows, stats)
        return cls(cfg, stats), rows


# One line as `FeatureExtractor.advance` takes it: entity, source, time, model token, level,
# message length in characters, parameter count, whether the template is new, template id.
FeatureInput = tuple[str, str, float, int, int, int, int, bool, int]


def feature_input(tl: TemplatedLine) -> FeatureInput:
    """A templated line as `advance`'s arguments."""
    p = tl.line
    return (p.entity, p.source, tl.time, tl.token, int(p.level), len(p.message), len(tl.params), tl.is_new,
            tl.template_id)


@dataclass
class FeatureCounts:
    """The first pass of `FeatureExtractor.fit` over some entities' training lines: what
    `FeatureStats` counts. Every count is per line or per entity, so the counts of disjoint sets
    of entities merge into exactly the counts of all their lines (`merge`)."""

    token_counts: dict[int, int] = field(default_factory=dict)
    transitions: dict[int, dict[int, int]] = field(default_factory=dict)
    session_ends: dict[int, int] = field(default_factory=dict)
    sessions: int = 0
    session_min_len: int = 0  # over `sessions` (0: none)
    total: int = 0
    first_time: float = math.inf
    last_time: float = -math.inf

    @classmethod
    def count(cls, lines: Sequence[FeatureInput]) -> tuple[FeatureCounts, list[int | None]]:
        """The counts of `lines` (every line of each of their entities, in line order) and each
        line's predecessor token in its entity (None for an entity's first line)."""
        out = cls()
        last: dict[str, int] = {}
        prevs: list[int | None] = []
        lengths: dict[str, int] = {}
        for ent, source, now, token, *_ in lines:
            out.token_counts[token] = out.token_counts.get(token, 0) + 1
            prev = last.get(ent)
            prevs.append(prev)
            if prev is not None:
                row = out.transitions.setdefault(prev, {})
                row[token] = row.get(token, 0) + 1
            last[ent] = token
            if ent != source:
                lengths[ent] = lengths.get(ent, 0) + 1
            out.first_time = min(out.first_time, now)
            out.last_time = max(out.last_time, now)
        for entity in lengths:
            out.session_ends[last[entity]] = out.session_ends.get(last[entity], 0) + 1
        out.sessions = len(lengths)
        out.session_min_len = min(lengths.values(), default=0)
        out.total = len(lines)
        return out, prevs

    @staticmethod
    def merge(parts: Sequence[FeatureCounts]) -> FeatureStats:
        """The statistics of all the parts' lines (`mean_window_freq` is left to `finish_rows`).
        Keys are sorted: the same JSON whatever the parts' order."""
        tokens: dict[int, int] = {}
        transitions: dict[int, dict[int, int]] = {}
        ends: dict[int, int] = {}
        for part in parts:
            for t, c in part.token_counts.items():
                tokens[t] = tokens.get(t, 0) + c
            for a, row in part.transitions.items():
                into = transitions.setdefault(a, {})
                for b, c in row.items():
                    into[b] = into.get(b, 0) + c
            for t, c in part.session_ends.items():
                ends[t] = ends.get(t, 0) + c
        total = sum(p.total for p in parts)
        first = min((p.first_time for p in parts), default=math.inf)
        last = max((p.last_time for p in parts), default=-math.inf)
        return FeatureStats(
            token_counts=dict(sorted(tokens.items())),
            transitions={a: dict(sorted(row.items())) for a, row in sorted(transitions.items())},
            total=total,
            session_ends=dict(sorted(ends.items())),
            sessions=sum(p.sessions for p in parts),
            session_min_len=min((p.session_min_len for p in parts if p.sessions), default=0),
            span_secs=last - first if total else 0.0,
        )


def training_rows(
    lines: Sequence[FeatureInput], prevs: Sequence[int | None], stats: FeatureStats, config: FeatureConfig,
) -> np.ndarray:
    """The second pass of `fit` over some entities' training lines (`prevs` from
    `FeatureCounts.count`, `stats` merged over all lines): every line's row as the agent computes
    it, except the transition probability, which leaves the row's own transition out. Counted
    in, every training transition has been seen at least once, so a model learns that "never
    seen" (0) does not happen and then flags every new pair of routine templates (most of
    Mac_2k's Isolation Forest alarms); left out, a pair seen once in training reads 0 there too,
    as a new pair will when served. The burst ratio is set by `finish_rows`."""
    extractor = FeatureExtractor(config, dataclasses.replace(stats, mean_window_freq={}))
    rows = np.array([extractor.advance(*x)[0] for x in lines], dtype=np.float32).reshape(-1, N_FEATURES)
    totals = {a: sum(row.values()) for a, row in stats.transitions.items()}
    column = _IDX["transition_prob"]
    for i, (prev, x) in enumerate(zip(prevs, lines, strict=True)):
        if prev is not None:
            total = totals[prev] - 1
            rows[i, column] = round((stats.transitions[prev][x[3]] - 1) / total, 2) if total else 0.0
    return rows


def rows_before_stats(lines: Sequence[FeatureInput], config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The rows a fresh extractor computes for `lines` before the training statistics are known
    (distributed training computes them while the driver merges the statistics), and each line's
    entity's previous token (-1: none). Every column is final but the three `with_stats` fills
    (no entity state depends on the statistics) and the burst ratio (`finish_rows`)."""
    extractor = FeatureExtractor(config, FeatureStats())  # no span: the calendar columns computed
    entities, advance = extractor.entities, extractor.advance
    prevs = np.empty(len(lines), dtype=np.int64)
    rows = []
    for i, x in enumerate(lines):
        state = entities.get(x[0])
        prev = None if state is None else state.last_token
        prevs[i] = -1 if prev is None else prev
        rows.append(advance(*x)[0])
    return np.array(rows, dtype=np.float32).reshape(-1, N_FEATURES), prevs


def with_stats(rows: np.ndarray, prevs: np.ndarray, stats: FeatureStats, counted: np.ndarray | None = None) -> None:
    """Fill in place the columns of `rows_before_stats` that read the statistics, with the values
    an extractor holding `stats` computes: the template's log frequency, the calendar columns (0
    where the history is too short for them), the transition probability from the entity's
    previous token (`prevs`). `counted`: the training rows' previous tokens from
    `FeatureCounts.count` (-1: none): where there is one, the transition leaves the row's own out,
    as `training_rows` does."""
    if not len(rows):
        return
    extractor = FeatureExtractor(FeatureConfig(), stats)
    tokens = rows[:, _IDX["template_token"]].astype(np.int64)
    unique, back = np.unique(tokens, return_inverse=True)
    log_freq, floor = extractor._log_freq, extractor._floor_log_freq
    rows[:, _IDX["template_log_freq"]] = np.array([log_freq.get(t, floor) for t in unique.tolist()],
                                                  dtype=np.float32)[back.reshape(-1)]
    for name, used in zip(("hour_of_day", "day_of_week"), extractor._clock_used, strict=True):
        if not used:
            rows[:, _IDX[name]] = 0.0
    out = counted is not None
    keys = np.stack([prevs, tokens, counted if counted is not None else np.full(len(tokens), -1)], axis=1)
    pairs, back = np.unique(keys, axis=0, return_inverse=True)
    totals = {a: sum(row.values()) for a, row in stats.transitions.items()}
    values = []
    for prev, token, before in pairs.tolist():
        if out and before >= 0:
            total = totals[before] - 1
            values.append(round((stats.transitions[before][token] - 1) / total, 2) if total else 0.0)
        else:
            values.append(extractor._transition(None if prev < 0 else prev, token))
    rows[:, _IDX["transition_prob"]] = np.array(values, dtype=np.float32)[back.reshape(-1)]


def finish_rows(rows: np.ndarray, stats: FeatureStats) -> None:
    """What needs every training row (in line order): the mean in-window frequency per template
    (into `stats`), then the burst ratio column it normalises (in place)."""
    tokens = rows[:, _IDX["template_token"]].astype(np.int64)
    freq = rows[:, _IDX["template_freq_window"]]
    stats.mean_window_freq.clear()
    order = np.argsort(tokens, kind="stable")  # each token's rows in row order, as a mask takes them
    unique, starts = np.unique(tokens[order], return_index=True)
    for token, group in zip(unique.tolist(), np.split(freq[order], starts[1:]), strict=True):
        stats.mean_window_freq[token] = float(group.mean())
    set_burst_ratios(rows, stats)


def set_burst_ratios(rows: np.ndarray, stats: FeatureStats) -> None:
    """Rows computed before `stats.mean_window_freq` was known, given their burst ratio (in place):
    the value `advance` computes with the final statistics."""
    if not len(rows):
        return
    tokens = rows[:, _IDX["template_token"]].astype(np.int64)
    freq = rows[:, _IDX["template_freq_window"]].astype(np.int64)  # a count of lines
    width = int(freq.max()) + 1
    unique, back = np.unique(tokens * width + freq, return_inverse=True)  # few: templates x window counts
    means = stats.mean_window_freq
    ratios = np.array([burst_ratio(float(k % width), means.get(k // width, 1.0)) for k in unique.tolist()],
                      dtype=np.float32)
    rows[:, _IDX["burst_ratio"]] = ratios[back.reshape(-1)]


# Continuous features are kept coarse on purpose: the Isolation Forest cannot tell 1,000 from
# 1,003 characters apart anyway, and coarse rows repeat, so the detectors' memo answers most
# lines without a model call.
def length_bucket(n: int) -> float:
    """Message length in quarter-octave buckets (0, 1, 1.19, 1.41, 1.68, 2, ... as powers of 2)."""
    return round(2 ** (round(4 * math.log2(n + 1)) / 4), 1)


def burst_ratio(freq: float, mean: float) -> float:
    """How many times its usual window frequency a template occurs now (one decimal)."""
    return round(freq / max(mean, 1.0), 1)


def _ended(entity: str, state: Entity) -> EndedSession:
    seen = state.session_templates
    return EndedSession(entity, tuple(state.session), tuple(state.session_levels), state.last_seen,
                        state.whole_stream, frozenset(seen) if seen is not None else None)


_SECONDS_PER_DAY = 86400.0


_K = TypeVar("_K")
_ROUNDED_KEPT = 65_536  # entries of each rounded-ratio memo (emptied when full)


def _remember(memo: dict[_K, float], key: _K, value: float) -> float:
    if len(memo) >= _ROUNDED_KEPT:
        memo.clear()
    memo[key] = value
    return value


def feature_index(name: str) -> int:
    """Column of a named feature in the feature vector."""
    return _IDX[name]


def config_dict(cfg: FeatureConfig) -> dict[str, Any]:
    """The feature settings as a plain dict for the bundle manifest."""
    return asdict(cfg)
