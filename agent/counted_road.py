"""The counted road: a never-seen line that its incident will only count costs a few dict hits.

An anomaly storm is mostly lines of a template never seen in training, repeated on many nodes
(BGL's `iar … dear …`): after its first few lines, its incident only counts them
(`agent/incidents.py`, `repeat_emitted`). When no voter reads such a line to score it (the vote
at the served sensitivity is the novelty rule, with the novel-set rule, which scores no line:
every learned model is a witness, as on the bench bundles at medium), its verdict is known from
its model token alone (`new_line_vote`), and what decides whether it is only counted — its
template's incident's counters and its explanation facts — is known in the pipeline's per-line
loop (`IncidentGrouper.plan_repeat`, `Explainer.facts_at`). Such a line then builds no line
object, no `LineContext`, no model call, no ensemble call, no explanation and no event: its
entity, the explainer's counts, the log clock and the sessions move on as on the short road, and
its incident counts it from its pieces in its turn among the batch's judged lines
(`IncidentGrouper.count`). The pipeline keeps the road off with observers (every line's scores
are wanted), hour-dependent thresholds, no short road, no cascade or no storm road.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.detectors.base import Detector
from agent.detectors.novel_set import NovelSetDetector
from agent.detectors.novelty import NoveltyDetector
from agent.ensemble import Ensemble
from agent.types import DetectorKind, DetectorScore, Verdict


@dataclass(frozen=True)
class NewLineVote:
    """The vote on every never-seen line: the voters' scores (in the pipeline's order), the
    combined score and the verdict (never NORMAL), and the voters that count such a line."""

    scores: tuple[DetectorScore, ...]
    score: float
    verdict: Verdict
    counters: tuple[NoveltyDetector, ...]

    def count(self, lines: int) -> None:
        """Count lines that took the counted road in the voters' line counters (as scoring them would)."""
        for d in self.counters:
            d.count_new(lines)


def new_line_vote(voters: Sequence[Detector], ensemble: Ensemble, kinds: Mapping[str, DetectorKind]
                  ) -> NewLineVote | None:
    """The vote on a never-seen line when no voter reads the line to score it (the novelty rule
    gives every such line one score, the novel-set rule none), and it is not NORMAL; None when a
    voter reads the line, or when the vote on its scores alone is NORMAL (the explanation facts
    then decide: the full road)."""
    scores: list[DetectorScore] = []
    counters: list[NoveltyDetector] = []
    for d in voters:
        if isinstance(d, NoveltyDetector):
            scores.append(d.new_line_score())
            counters.append(d)
        elif not isinstance(d, NovelSetDetector):
            return None
    score, verdict = ensemble.combine(scores, kinds)
    if verdict is Verdict.NORMAL:
        return None
    return NewLineVote(tuple(scores), score, verdict, tuple(counters))
