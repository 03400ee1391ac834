"""The short road: a normal line whose verdict is already known skips the models.

Most lines of a running system are a known template in a known context whose scores are far
below every threshold. Such a line costs a parse, its template match, its feature row and a
few dictionary hits: no `LineContext`, no model call, no ensemble, no explanation, no incident
grouper, no event. Every other line takes the full road, unchanged.

Each served detector scores a line of a training template (model token > 0) from one *key*:
- the Isolation Forest from the feature row;
- DeepLog (and LogAnomaly, which keys a training-template line as DeepLog does) from the
  entity's last `window + 1` (token, level) pairs, the LSTM-AE and the
  supervised classifier from their last `window` pairs, AutoLog from its last `window` pairs
  and its inputs' windows (a *context*: interned to an int per entity and reach, so advancing
  it costs a dict hit per line, on both roads);
- novelty and novel_set never score such a line;
- LogBERT (*scheduled*) scores every `score_every` lines of an entity and nothing in between.

The full road teaches the short road each score it computes under its key (`learn`). A score of
an ensemble member is kept only when it is *clear* (`clear`): not fired, and, when it is the
vote's one keyed member, the vote on that score alone is NORMAL (the other members do not score
a line the short road may take, so that is the line's vote, computed as the full road computes
it: exact, up to the threshold); with several keyed members, scaled (`Member.scale`) to at most
`CLEAR_SHARE` of the ensemble's threshold. A line takes the short road (`check`) when

1. its template is a training template;
2. every member's key for it holds a clear score: the line's vote is then NORMAL (one member),
   or the weighted mean of the scaled scores at most `CLEAR_SHARE` of the threshold with
   nothing fired;
3. the explanation facts cannot make it notable: not by its template and level
   (`Explainer.notable_template`, fixed per pair), nor by a burst (its template's window count
   is at most `Explainer.burst_floor`);
4. no scheduled detector of the vote is due on it (any scheduled detector with observers). With a
   short road the pipeline runs every scheduled detector's schedule itself, on every line in
   line order (`schedule`), and has the due lines of the full road scored (`score_due`): the
   detector counts exactly as its `score_lines` would have, short-road lines included. A
   scheduled witness (outside the vote) scores only lines the vote flags (the cascade), so its
   due line that the vote clears is never scored on either road (`due_matters`; with the
   cascade off, every due line takes the full road as before).

When the vote's one keyed member is keyed by the feature row (the Isolation Forest) and nobody
observes, a line that meets 1, 3 and 4 but whose row is not in the cache yet does not take the
full road at once (`settles_rows`): the pipeline keeps what the full road would need of it (its
entity's history and explainer counts as at its turn) and scores the batch's unknown rows in one
call at the end of the loop (`Pipeline._settle`, the same memo and scores as `score_lines`).
A clear row's line is done and its score is kept (`settle`, as `learn` keeps it); the others take
the full road in their place among the batch's lines. The row holds per-line values (message
length, hour), so on a day of many hours about half its lines met a row not seen yet.

Drift learning and operator feedback act only on lines that are not NORMAL, so they are not
concerned. With observers (`scan`, `eval`, reports), every detector's score for the line comes
from the same caches (detectors outside the vote are kept whatever they scored) and the
`LineResult` carries exactly what the full road would have built. A pipeline serving a detector
that is neither keyed, silent nor scheduled, or hour-dependent thresholds, has no short road.
Every cache is bounded: when one is full it is emptied (context ids are never reused, so nothing
stale can hit). `tests/integration/test_short_road.py` compares both roads line for line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.detectors.base import Detector
from agent.ensemble import Ensemble
from agent.features import Entity
from agent.types import DetectorKind, DetectorScore, LineContext, Verdict

CLEAR_SHARE = 0.5  # a clear score is at most this share of the ensemble threshold, once scaled
MAX_SCORES = 32_768  # scores kept per detector (each cache emptied when full)
MAX_CONTEXTS = 32_768  # interned contexts kept per reach (≈ 0.5 KB each at reach 20)
ROW = -1  # the key of a detector that reads the feature row
_DUE, _NOT_DUE = (True,), (False,)


class Scheduled(Protocol):
    """A detector that scores only some lines of an entity, on a schedule it keeps (LogBERT):
    `score_lines` is `schedule` on every line, then `score_due` on the due ones."""

    name: str

    def schedule(self, entity: str) -> bool:
        """Count one line of the entity; whether it is due for a score."""

    def score_due(self, contexts: Sequence[LineContext]) -> list[DetectorScore]:
        """Scores of lines `schedule` found due."""


def line_key(detector: Detector, served: Mapping[str, Detector] | None = None) -> int | None:
    """What a detector's score of a training-template line is a pure function of: ROW (the
    feature row), a reach > 0 (the entity's last `reach` (token, level) pairs), 0 (it never
    scores such a line); None when it is none of these. `served`: the pipeline's detectors by
    name (AutoLog reads the line scores of served sequence models)."""
    from agent.detectors.autolog import AutoLogDetector
    from agent.detectors.deeplog import DeepLogDetector
    from agent.detectors.isolation_forest import IsolationForestDetector
    from agent.detectors.lstm_ae import WindowDetector
    from agent.detectors.novel_set import NovelSetDetector
    from agent.detectors.novelty import NoveltyDetector

    if isinstance(detector, DeepLogDetector):  # LogAnomaly too: a training template keys as in DeepLog
        return detector.scorer.window + 1
    if isinstance(detector, WindowDetector):  # the LSTM-AE, the supervised classifier
        return detector.scorer.window
    if isinstance(detector, IsolationForestDetector):
        return ROW
    if isinstance(detector, NoveltyDetector | NovelSetDetector):
        return 0
    if isinstance(detector, AutoLogDetector):
        # the window's counts and the line scores of its inputs, each a function of its own window
        reach = detector.scorer.window
        for x in detector.scorer.inputs:
            given: Detector | None = served.get(x.name) if served is not None else None
            if given is None or id(detector.shared.get(x.name)) != id(given):
                return None  # an input the pipeline does not serve (AutoLog loaded its own copy)
            r = line_key(given)
            if r is None or r <= 0:
                return None
            reach = max(reach, r)
        return reach
    return None


class Contexts:
    """Interned contexts of one reach: the flat (token, level, token, level, ...) of an entity's
    last `reach` lines, as ints; the transition (context, token, level) → context is one dict hit."""

    def __init__(self, reach: int) -> None:
        self.reach = reach
        self._span = 2 * reach
        self.known: dict[tuple[int, int, int], int] = {}  # (context, token, level) -> context
        self._flat: dict[int, tuple[int, ...]] = {0: ()}
        self._ids: dict[tuple[int, ...], int] = {(): 0}
        self._last_id = 0

    def advance(self, old: int, token: int, level: int, state: Entity) -> int:
        """The context after a line (`state`'s history already ends with it)."""
        # Plain ints (not `Level` members): the garbage collector stops tracking a tuple of ints, so
        # the remembered contexts add nothing to its full collections (~70,000 of them tracked on
        # the incident day made one full collection cost 80 ms).
        level = int(level)
        step = (old, token, level)
        ctx = self.known.get(step)
        if ctx is None:
            ctx = self._intern(old, token, level, state)
            self.known[step] = ctx
        return ctx

    def rebuild(self, state: Entity) -> int:
        """The context of the entity's history as it stands (its ids were not kept up to date)."""
        n = min(self.reach, len(state.history))
        tokens = list(state.history)[len(state.history) - n :]
        levels = list(state.levels)[len(state.levels) - n :]
        return self._id_of(tuple(v for pair in zip(tokens, levels, strict=True) for v in pair))

    def _intern(self, old: int, token: int, level: int, state: Entity) -> int:
        before = self._flat.get(old)
        if before is None:  # emptied since: rebuild from the entity's history
            return self.rebuild(state)
        return self._id_of((*before, token, level)[-self._span :])

    def _id_of(self, flat: tuple[int, ...]) -> int:
        ctx = self._ids.get(flat)
        if ctx is None:
            if len(self._flat) >= MAX_CONTEXTS:
                self._flat.clear()
                self._ids.clear()
                self.known.clear()
                self._flat[0], self._ids[()] = (), 0
            self._last_id += 1
            ctx = self._last_id
            self._flat[ctx] = flat
            self._ids[flat] = ctx
        return ctx

    def __len__(self) -> int:
        return len(self._flat)


@dataclass
class Keyed:
    """One detector whose scores the short road keeps: where its key comes from, and the scores."""

    name: str
    slot: int  # ROW, or the index of its reach in `ShortRoad.reaches`
    member: bool  # votes: only clear scores are kept
    scores: dict[object, DetectorScore] = field(default_factory=dict)


class ShortRoad:
    """The caches behind the short road (see the module docstring)."""

    def __init__(self, keyed: Sequence[Keyed], order: Sequence[Keyed | None], reaches: Sequence[int],
                 scheduled: Sequence[Scheduled], ensemble: Ensemble, kinds: Mapping[str, DetectorKind]) -> None:
        self.keyed = list(keyed)
        self.members = [k for k in keyed if k.member]
        self.order = list(order)  # per served detector: its Keyed, or None (silent, scheduled)
        self.contexts = [Contexts(r) for r in reaches]
        self.scheduled = list(scheduled)
        self._one = self.scheduled[0] if len(self.scheduled) == 1 else None
        self.ensemble = ensemble
        self.kinds = dict(kinds)
        self.clear_below = CLEAR_SHARE * ensemble.threshold
        self._scale = {k.name: m.scale for k in keyed if (m := ensemble.member(k.name, kinds)) is not None}
        # One keyed member: the other members do not score a line the short road may take (rules
        # never score a training template, a voting scheduled detector's due line takes the full
        # road), so the line's vote is the vote on its one score, and that is the clear test.
        self._alone = len(self.members) == 1
        self.taken = 0  # lines that took the short road
        self.settled = 0  # ... of them, lines whose row was scored with their batch (`settles_rows`)
        # which scheduled detectors vote: a witness's due line need not take the full road
        self._voting_scheduled = any(ensemble.member(d.name, kinds) is not None for d in self.scheduled)
        # Whether the entities' context ids are kept up to date. They are needed only when a
        # member's score is keyed by one, or when observers want every detector's score: a
        # pipeline whose vote has no keyed member (every model left out at this sensitivity)
        # and no observer stops advancing them (`track`), and rebuilds them from each entity's
        # history once they are needed again.
        self.tracking = True

    @classmethod
    def for_detectors(
        cls, detectors: Sequence[Detector], ensemble: Ensemble, kinds: Mapping[str, DetectorKind], history_len: int
    ) -> ShortRoad | None:
        """The short road for these detectors, or None when one of them is neither keyed, silent
        nor scheduled, or reads more history than the pipeline keeps."""
        reaches: list[int] = []
        keyed: list[Keyed] = []
        order: list[Keyed | None] = []
        scheduled: list[Scheduled] = []
        served = {d.name: d for d in detectors}
        for d in detectors:
            key = line_key(d, served)
            if key is None:
                if not (callable(getattr(d, "schedule", None)) and callable(getattr(d, "score_due", None))):
                    return None
                scheduled.append(d)  # type: ignore[arg-type]  # has schedule and score_due: checked above
                order.append(None)
                continue
            if key == 0:
                order.append(None)
                continue
            if key > history_len:
                return None
            if key > 0 and key not in reaches:
                reaches.append(key)
            k = Keyed(d.name, ROW if key == ROW else reaches.index(key), ensemble.member(d.name, kinds) is not None)
            keyed.append(k)
            order.append(k)
        return cls(keyed, order, reaches, scheduled, ensemble, kinds)

    # -- every line -----------------------------------------------------------------------------

    def needs_keys(self, everyone: bool) -> bool:
        """Whether lines need their keys (the context ids, the feature row) to be checked or
        taught: some member is keyed, or `everyone` (observers want every detector's score)."""
        return everyone or bool(self.members)

    def needs_ids(self, everyone: bool) -> bool:
        """Whether lines need their context ids: some member is keyed by a context (a sequence
        model that votes), or `everyone`. A vote whose only keyed member is the feature row's
        (the Isolation Forest) checks and teaches by the row alone."""
        return everyone or any(k.slot != ROW for k in self.members)

    def due_matters(self, everyone: bool) -> bool:
        """Whether a line due for a scheduled detector must take the full road: the detector votes
        (its score enters the combined score), or `everyone` (observers want every score, or the
        cascade is off). A witness (outside the vote) scores only the lines the vote flags (the
        cascade), and the short road already counted the line in its schedule: on a line the vote
        clears, its due score is never computed on either road."""
        return everyone or self._voting_scheduled

    def settles_rows(self, everyone: bool) -> bool:
        """Whether a line whose only unknown is its feature row's score may wait for its batch:
        the vote's one keyed member is keyed by the row (the Isolation Forest) and nobody
        observes. The pipeline then scores the batch's unknown rows in one call (`settle`), and
        only the lines whose row is not clear take the full road, in their place."""
        return not everyone and len(self.members) == 1 and self.members[0].slot == ROW

    def settle(self, row: tuple[float, ...], score: DetectorScore) -> bool:
        """The row member's score of a row scored with its batch (`settles_rows`): kept when
        clear, as `learn` keeps it; whether it is clear."""
        k = self.members[0]
        if not self.clear(k, score):
            return False
        cache = k.scores
        if len(cache) >= MAX_SCORES:
            cache.clear()
        cache[row] = score
        return True

    def clear(self, k: Keyed, score: DetectorScore) -> bool:
        """Whether a member's score is clear: not fired, and the vote on it alone NORMAL when it
        is the one keyed member (exact: that is the line's vote), else scaled to at most
        `CLEAR_SHARE` of the ensemble's threshold (several members' scores are combined)."""
        if score.fired:
            return False
        if self._alone:
            return self.ensemble.combine((score,), self.kinds)[1] is Verdict.NORMAL
        return self._scale[k.name](score) <= self.clear_below

    def track(self, tracking: bool, states: Iterable[Entity]) -> None:
        """Keep the entities' context ids up to date from now on, or stop. Resuming forgets the
        ids of `states` (every entity's state): `advance` rebuilds them from their history."""
        if tracking and not self.tracking:
            for state in states:
                state.context = None
        self.tracking = tracking

    def advance(self, state: Entity, token: int, level: int) -> list[int]:
        """Move the entity's contexts on by its line (every line, on either road, while
        `tracking`); its context ids."""
        ids: list[int] | None = state.context
        if ids is None:
            if len(state.history) > 1:  # ids forgotten (`track`): the history as it stands
                ids = state.context = [contexts.rebuild(state) for contexts in self.contexts]
                return ids
            ids = state.context = [0] * len(self.contexts)
        for j, contexts in enumerate(self.contexts):
            old = ids[j]
            ctx = contexts.known.get((old, token, level))  # `Contexts.advance`, its dict hit inlined
            ids[j] = ctx if ctx is not None else contexts.advance(old, token, level, state)
        return ids

    def check(self, row: tuple[float, ...], ids: Sequence[int], everyone: bool) -> bool:
        """Whether every member (every keyed detector with `everyone`) has a known clear score for
        this line (the facts and the schedule are the caller's)."""
        for k in self.keyed if everyone else self.members:
            if (row if k.slot == ROW else ids[k.slot]) not in k.scores:
                return False
        return True

    def schedule(self, entity: str) -> tuple[bool, ...]:
        """Count the line in every scheduled detector's schedule; which of them it is due for."""
        if self._one is not None:
            return _DUE if self._one.schedule(entity) else _NOT_DUE
        if not self.scheduled:
            return ()
        return tuple(d.schedule(entity) for d in self.scheduled)

    def scores(self, row: tuple[float, ...], ids: Sequence[int]) -> tuple[tuple[DetectorScore, ...], float]:
        """The line's scores, in the detectors' order, and their combined score (for observers;
        after `check` with `everyone`)."""
        out = tuple(k.scores[row if k.slot == ROW else ids[k.slot]] for k in self.order if k is not None)
        return out, self.ensemble.combine(out, self.kinds)[0]

    # -- the full road teaches ------------------------------------------------------------------

    def learn(self, row: tuple[float, ...], ids: Sequence[int], scores: Sequence[DetectorScore | None],
              everyone: bool) -> None:
        """Keep the scores the full road computed for a training-template line, under their keys:
        a member's only when clear, the others' (only needed by observers) when `everyone`."""
        for k, s in zip(self.order, scores, strict=True):
            if k is None or s is None:
                continue
            if k.member:
                if not self.clear(k, s):
                    continue
            elif not everyone:
                continue
            cache = k.scores
            if len(cache) >= MAX_SCORES:
                cache.clear()
            cache[row if k.slot == ROW else ids[k.slot]] = s
