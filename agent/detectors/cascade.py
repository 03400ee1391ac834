"""The cascade: which detector runs on which lines and sessions, and in how many model calls.

**The rule.** A line's or a session's verdict is the ensemble's vote at the served sensitivity
(`agent/ensemble.py`). A detector that is not a member there (the trainer left it out of the
vote at this level: `levels`, `trainer/membership.py`) cannot change any verdict or the combined
score: `Ensemble.combine` skips it. Its score only travels with what is emitted about an
anomalous line or session (the event's scores, and the explanation built from them). So

- *voters* (the members at the served sensitivity; every detector when the bundle has no
  ensemble section) run on every line and every session, on the full schedule, as before;
- *witnesses* (the others) run only on the lines and sessions the voters and the explanation
  facts judge not normal, on the same schedule restricted to them (LogBERT still counts every
  line of an entity towards its every-16-lines schedule, `score_lines_where`).

Every emitted output is therefore the one the full schedule emits (the later steps of
judging, operator feedback and online learning, only ever turn a non-normal line normal); normal
lines and sessions are never emitted. The one consumer of normal lines' scores is the
`LineResult` given to observers and to `emit_all`; with either present the pipeline scores
lines on the full schedule (`full`). The test is `tests/integration/test_cascade.py`: the same
outputs, line for line, with and without the cascade, on a real stream with every model.

**Fewer calls.** Sessions that end together are judged together: each voter that can
(`prefetch_sessions`) scores the windows of all of them in one memoised batch before each
session is scored from the memo.

**Sessions judged once per shape.** Every served detector's `score_session` is a pure function
of the session's tokens and levels (the models are frozen; LogBERT's line schedule is not read
by it), and so are the ensemble's vote and the cascade's split. So a session whose (tokens,
levels) was judged before gets the same scores, combined score and verdict from `SessionMemo`
without a model call (HDFS blocks, sshd connections and BGL components repeat a few shapes);
sessions ending together with the same shape are judged once. What the pipeline does next
(operator feedback, drift, the explanation) still runs per session. Only the detectors' own
counters (sessions judged, new sets) see fewer sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agent.detectors.base import Detector
from agent.ensemble import Ensemble
from agent.types import DetectorKind, DetectorScore, LineContext, Verdict

Column = list[DetectorScore | None]  # one detector's scores of a batch's lines
ScoreAll = Callable[[Detector, list[LineContext]], Column]  # a detector's scores of every line
ScoreSome = Callable[[Detector, list[LineContext], list[int]], Column]  # ... of the lines at some positions


@runtime_checkable
class ScoresSomeLines(Protocol):
    """A detector with per-line state (a schedule) that must see every line even when only some
    of them are to be scored."""

    def score_lines_where(self, contexts: Sequence[LineContext], wanted: Sequence[int]) -> Column:
        """Scores of the lines at positions `wanted` (None elsewhere); every line advances the state."""


@runtime_checkable
class PrefetchesSessions(Protocol):
    """A detector that can score the windows of many sessions in one batch (into its memo)."""

    def prefetch_sessions(self, sessions: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        """Score every window `score_session` will need for these sessions, in as few calls as possible."""


class Session(Protocol):
    """What the cascade reads of an ended session."""

    @property
    def tokens(self) -> Sequence[int]:
        """The session's model tokens, in order."""

    @property
    def levels(self) -> Sequence[int]:
        """Their `Level` values."""


Judged = tuple[tuple[DetectorScore, ...], float, Verdict]
"""A session's scores (pipeline order), combined score and verdict (immutable: the memo shares it)."""
Shape = tuple[tuple[int, ...], tuple[int, ...]]  # a session's (tokens, levels)

MEMO_SESSIONS = 4096  # session shapes remembered (the memo is emptied when full) ...
MEMO_SESSION_TOKENS = 256  # ... of at most this many lines: ≤ ≈ 16 MiB of keys in all


class SessionMemo:
    """Verdicts of ended sessions by their (tokens, levels): see the module docstring."""

    def __init__(self, capacity: int = MEMO_SESSIONS, max_tokens: int = MEMO_SESSION_TOKENS) -> None:
        self.capacity = capacity
        self.max_tokens = max_tokens
        self._known: dict[Shape, Judged | None] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(session: Session) -> Shape:
        """What a session's verdict is a function of."""
        return tuple(session.tokens), tuple(session.levels)

    def judge(self, sessions: Sequence[Session], judge: Callable[[Sequence[Session]], list[Judged | None]]
              ) -> list[Judged | None]:
        """Each session's verdict: remembered, or `judge`d once per distinct shape not remembered
        (one lookup per remembered session; the judgement itself is shared, not copied)."""
        known = self._known
        keys = [(tuple(s.tokens), tuple(s.levels)) for s in sessions]
        todo: dict[Shape, int] = {}
        for k, key in enumerate(keys):
            if key not in known and key not in todo:
                todo[key] = k
        self.misses += len(todo)
        self.hits += len(sessions) - len(todo)
        if not todo:
            return [known[key] for key in keys]
        fresh = dict(zip(todo, judge([sessions[k] for k in todo.values()]), strict=True))
        for key, judged in fresh.items():
            if len(key[0]) <= self.max_tokens:
                if len(known) >= self.capacity:
                    known.clear()
                known[key] = judged
        return [fresh[key] if key in fresh else known[key] for key in keys]

    def __len__(self) -> int:
        return len(self._known)


@dataclass(frozen=True)
class Cascade:
    """The served detectors split into voters and witnesses (see the module docstring)."""

    detectors: tuple[Detector, ...]  # the pipeline's order
    witness_names: frozenset[str]

    @staticmethod
    def plan(detectors: Sequence[Detector], ensemble: Ensemble, enabled: bool = True) -> Cascade:
        """Witnesses are the detectors the ensemble at this sensitivity does not count."""
        witnesses = frozenset(
            d.name for d in detectors if enabled and ensemble.member(d.name, {d.name: d.kind}) is None
        )
        return Cascade(tuple(detectors), witnesses)

    @property
    def voters(self) -> list[Detector]:
        """The detectors that decide verdicts, in the pipeline's order."""
        return [d for d in self.detectors if d.name not in self.witness_names]

    @property
    def witnesses(self) -> list[Detector]:
        """The detectors that only explain, in the pipeline's order."""
        return [d for d in self.detectors if d.name in self.witness_names]

    def merge(self, voters: Sequence[Column], witnesses: Sequence[Column]) -> list[Column]:
        """Voters' and witnesses' columns back in the pipeline's detector order."""
        v, w = iter(voters), iter(witnesses)
        return [next(w) if d.name in self.witness_names else next(v) for d in self.detectors]

    # -- lines ------------------------------------------------------------------------------

    def score_lines(
        self,
        contexts: list[LineContext],
        full: bool,
        doubtful: Callable[[LineContext, list[DetectorScore | None]], bool],
        reject: Callable[[LineContext, Exception], None],
        score_all: ScoreAll | None = None,
        score_some: ScoreSome | None = None,
    ) -> tuple[list[LineContext], list[Column]]:
        """Every detector's column for the batch (witnesses: None on the lines the voters clear).
        `doubtful(ctx, voter scores)` says whether a line may be emitted; a line a detector
        raises on is rejected alone. With `full`, every detector scores every line. `score_all`
        (default: `score_lines`) and `score_some` (default: `score_where`) let the pipeline
        score scheduled detectors on its own count."""
        every = score_all or _score_lines
        some = score_some or score_where
        if full or not self.witness_names:
            return score_each(self.detectors, contexts, reject, every)
        kept, voted = score_each(self.voters, contexts, reject, every)
        wanted = [i for i, ctx in enumerate(kept) if doubtful(ctx, [col[i] for col in voted])]
        witnessed: list[Column] = []
        failed: set[int] = set()
        for w in self.witnesses:
            try:
                witnessed.append(some(w, kept, wanted))
            except Exception:
                witnessed.append(self._one_by_one(w, kept, wanted, failed, reject, some))
        columns = self.merge(voted, witnessed)
        if failed:
            keep = [i for i in range(len(kept)) if i not in failed]
            return [kept[i] for i in keep], [[col[i] for i in keep] for col in columns]
        return kept, columns

    @staticmethod
    def _one_by_one(
        w: Detector, contexts: list[LineContext], wanted: list[int], failed: set[int],
        reject: Callable[[LineContext, Exception], None], some: ScoreSome,
    ) -> Column:
        column: Column = [None] * len(contexts)
        for i in wanted:
            if i in failed:
                continue
            try:
                column[i] = some(w, contexts, [i])[i]
            except Exception as exc:
                failed.add(i)
                reject(contexts[i], exc)
        return column

    # -- sessions ---------------------------------------------------------------------------

    def judge_sessions(
        self, sessions: Sequence[Session], ensemble: Ensemble, kinds: Mapping[str, DetectorKind],
        memo: SessionMemo | None = None,
    ) -> list[Judged | None]:
        """Each session's scores (pipeline order), combined score and verdict; None where no
        detector judges it. Voters judge all sessions (their windows batched across sessions),
        witnesses only the sessions the voters find not normal. With a `memo`, a session shape
        judged before is not judged again."""
        if memo is not None:
            return memo.judge(sessions, lambda todo: self.judge_sessions(todo, ensemble, kinds))
        voters = self.voters
        voted = session_columns(voters, sessions)
        out: list[Judged | None] = []
        doubtful = []
        for k in range(len(sessions)):
            scores = tuple(s for s in (col[k] for col in voted) if s is not None)
            score, verdict = ensemble.combine(scores, kinds)
            out.append((scores, score, verdict) if scores else None)
            if verdict is not Verdict.NORMAL:
                doubtful.append(k)
        if not self.witness_names or not doubtful:
            return out
        witnessed = session_columns(self.witnesses, [sessions[k] for k in doubtful])
        for j, k in enumerate(doubtful):
            merged = self.merge([[col[k]] for col in voted], [[col[j]] for col in witnessed])
            scores = tuple(col[0] for col in merged if col[0] is not None)
            if scores:
                score, verdict = ensemble.combine(scores, kinds)
                out[k] = (scores, score, verdict)
        return out


def _score_lines(detector: Detector, contexts: list[LineContext]) -> Column:
    return list(detector.score_lines(contexts))


def score_each(
    detectors: Sequence[Detector], contexts: list[LineContext], reject: Callable[[LineContext, Exception], None],
    score_all: ScoreAll = _score_lines,
) -> tuple[list[LineContext], list[Column]]:
    """Every detector's scores for the batch (one call each); when a call raises, the batch is
    scored line by line and only the lines a detector fails on are dropped (`reject`)."""
    try:
        return contexts, [score_all(d, contexts) for d in detectors]
    except Exception:
        pass
    kept: list[LineContext] = []
    rows: list[list[DetectorScore | None]] = []
    for ctx in contexts:
        try:
            row = [score_all(d, [ctx])[0] for d in detectors]
        except Exception as exc:
            reject(ctx, exc)
            continue
        kept.append(ctx)
        rows.append(row)
    return kept, [[row[k] for row in rows] for k in range(len(detectors))]


def score_where(detector: Detector, contexts: list[LineContext], wanted: list[int]) -> Column:
    """The detector's scores of the lines at `wanted` (None elsewhere). A detector with per-line
    state sees every line (`ScoresSomeLines`); the others are scored on the wanted lines alone
    (their score of a line depends on that line's context only)."""
    if isinstance(detector, ScoresSomeLines):
        return detector.score_lines_where(contexts, wanted)
    column: Column = [None] * len(contexts)
    if wanted:
        for i, s in zip(wanted, detector.score_lines([contexts[i] for i in wanted]), strict=True):
            column[i] = s
    return column


def session_columns(detectors: Sequence[Detector], sessions: Sequence[Session]) -> list[Column]:
    """Each detector's score of each session; windows of all sessions batched where the
    detector can (`PrefetchesSessions`)."""
    columns: list[Column] = []
    for d in detectors:
        if len(sessions) > 1 and isinstance(d, PrefetchesSessions):
            d.prefetch_sessions([(s.tokens, s.levels) for s in sessions])
        columns.append([d.score_session(s.tokens, s.levels) for s in sessions])
    return columns
