"""`SessionMemo`: an ended session's verdict is judged once per (tokens, levels) shape.

The judge here is the real cascade over real detectors (novelty, novel_set: no model file)
on the template sequences of real HDFS blocks (`hdfs` fixture), so what is remembered is what
the cascade computes; the memo must give back exactly that, calling it once per distinct shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.detectors.cascade import Cascade, Judged, Session, SessionMemo
from agent.detectors.novel_set import NovelSetDetector, template_set
from agent.detectors.novelty import NoveltyDetector
from agent.ensemble import Ensemble, default_section
from agent.types import DetectorKind


@dataclass(frozen=True)
class Ended:
    tokens: tuple[int, ...]
    levels: tuple[int, ...]


def _cascade(known: Sequence[Sequence[int]] = ()) -> tuple[Cascade, Ensemble, dict[str, DetectorKind]]:
    """The rules' cascade; novel_set knows the template sets of `known` (its training)."""
    detectors = [NoveltyDetector("novelty", 0.5), NovelSetDetector("novel_set", {template_set(t) for t in known}, 0.5)]
    kinds = {d.name: d.kind for d in detectors}
    ensemble = Ensemble.from_manifest(default_section(kinds), "medium")
    return Cascade.plan(detectors, ensemble), ensemble, kinds


def test_the_memo_gives_the_cascades_verdicts_judging_each_shape_once(
        hdfs: tuple[list[list[int]], dict[int, int]]) -> None:
    """The memo's verdicts are the cascade's, one judging per distinct shape."""
    sessions, _ = hdfs
    ended = [Ended(tuple(s), (2,) * len(s)) for s in sessions[:600]]
    ended.append(Ended((0, *ended[0].tokens), (2,) * (len(ended[0].tokens) + 1)))  # a new template: flagged
    cascade, ensemble, kinds = _cascade(sessions[600:3000])  # some of the 600 have a set never seen
    expected = cascade.judge_sessions(ended, ensemble, kinds)
    judged: list[int] = []

    def judge(todo: Sequence[Session]) -> list[Judged | None]:
        judged.append(len(todo))
        return cascade.judge_sessions(todo, ensemble, kinds)

    memo = SessionMemo()
    got = memo.judge(ended[:300], judge) + memo.judge(ended[300:], judge)
    assert got == expected
    shapes = len({(e.tokens, e.levels) for e in ended})
    assert sum(judged) == memo.misses == shapes < len(ended) // 2  # HDFS blocks repeat their shapes
    assert memo.hits == len(ended) - shapes
    assert any(v is not None and v[2].value != "normal" for v in got)
    # a shape judged before costs no call; levels are part of the shape
    calls = len(judged)
    assert memo.judge(ended[:50], judge) == expected[:50] and len(judged) == calls
    other = Ended(ended[0].tokens, (4,) * len(ended[0].tokens))
    memo.judge([other], judge)
    assert len(judged) == calls + 1


def test_the_memo_is_bounded() -> None:
    """Emptied when full; sessions longer than `max_tokens` are judged every time."""
    cascade, ensemble, kinds = _cascade()
    memo = SessionMemo(capacity=3, max_tokens=4)
    short = [Ended((k, 1), (2, 2)) for k in range(1, 6)]
    long = Ended((1, 2, 3, 4, 5), (2,) * 5)

    def judge(todo: Sequence[Session]) -> list[Judged | None]:
        return cascade.judge_sessions(todo, ensemble, kinds)

    assert memo.judge([*short, long, long], judge) == judge([*short, long, long])
    assert len(memo) <= 3  # emptied when full
    assert memo.misses == 6  # the long session twice in one batch: judged once, never kept
    memo.judge([long], judge)
    assert memo.misses == 7
