"""Combine the detectors' opinions: a calibrated weighted score (seed 002) and a vote (seed 000).

Every member's score is brought to one scale where 1.0 is "at its calibrated threshold":
- `tail` members carry a sample of their scores on held-back normal data (`normal_tail`:
  sorted `score` values and the share of normal data scoring at least that much); the scaled
  value is log(share) / log(target_fpr), so 1.0 means "as rare among normal data as the
  target false-positive rate", 2.0 "that rarity squared", 0 "as common as anything".
- otherwise `score / threshold` when the threshold is positive, else `1 + (score − threshold)`.
The ensemble score is the weighted mean of the scaled values of the members that scored the
line; it fires above `threshold` (default 1.0).

The verdict is seed 000's vote over the members with `vote: true`: DANGER when a SEQUENCE
detector and a FEATURE, SEMANTIC or RULE detector both fire (a rule votes on the feature side),
WATCH when any voter fires or the combined score fires, NORMAL otherwise. Members, weights and the threshold are bundle
settings (`manifest["ensemble"]`), not code. A member with `levels` takes part only at those
sensitivities: the trainer leaves a learned detector out where it did not earn its place
(`trainer/membership.py`; the reason is kept in `manifest["ensemble"]["membership"]`).
Likewise `facts.levels` says at which sensitivities explanation facts alone may raise a line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.errors import BundleError
from agent.types import DetectorKind, DetectorScore, Verdict

MAX_SCALED = 10.0  # one extreme member must not drown the others
NOT_SEQUENCE = frozenset({DetectorKind.FEATURE, DetectorKind.SEMANTIC, DetectorKind.RULE})


@dataclass(frozen=True)
class Member:
    """One detector's place in the ensemble: weight, vote, and its calibrated score tail."""

    name: str
    kind: DetectorKind
    weight: float
    vote: bool
    tail_scores: np.ndarray | None = None  # ascending
    tail_shares: np.ndarray | None = None  # share of normal data scoring >= tail_scores[i]
    tail_target: float = 0.01

    def scale(self, score: DetectorScore) -> float:
        """The score in units of this member's threshold (1.0 = at it), from its normal tail."""
        if self.tail_scores is not None and self.tail_shares is not None and len(self.tail_scores):
            i = int(np.searchsorted(self.tail_scores, score.score, side="right")) - 1
            share = 1.0 if i < 0 else float(self.tail_shares[i])
            if i == len(self.tail_scores) - 1 and score.score > self.tail_scores[-1]:
                share = min(share, 0.5 / max(len(self.tail_scores), 1))  # beyond all normal data seen
            value = math.log(max(share, 1e-12)) / math.log(self.tail_target)
        elif score.threshold > 0:
            value = score.score / score.threshold
        else:
            value = 1.0 + (score.score - score.threshold)
        return float(min(max(value, 0.0), MAX_SCALED))


def tail_of(normal_scores: Sequence[float], points: int = 256) -> dict[str, list[float]]:
    """A compact `normal_tail`: up to `points` distinct scores with the share of normal data
    scoring at least each (the trainer/eval stores it in an ensemble member)."""
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if len(s) == 0:
        return {"score": [], "share": []}
    values = np.unique(s)
    if len(values) > points:
        values = np.unique(np.quantile(s, np.linspace(0, 1, points)))
    share = 1.0 - np.searchsorted(s, values, side="left") / len(s)
    return {"score": [float(v) for v in values], "share": [float(x) for x in share]}


class Ensemble:
    """Combines detector scores into one calibrated score and a DANGER/WATCH/NORMAL vote."""

    def __init__(
        self, members: Mapping[str, Member], threshold: float = 1.0, everyone: bool = False, facts: bool = True
    ) -> None:
        self.members = dict(members)
        self.facts = facts  # explanation facts may raise a line on their own (see `manifest["ensemble"]["facts"]`)
        self.threshold = threshold
        self.everyone = everyone  # unlisted detectors join with weight 1 (no ensemble section)

    def member(self, name: str, kinds: Mapping[str, DetectorKind]) -> Member | None:
        """The member for a detector (a default one when the bundle lists no ensemble)."""
        found = self.members.get(name)
        if found is None and self.everyone:
            found = Member(name, kinds.get(name, DetectorKind.SEQUENCE), 1.0, True)
        return found

    @classmethod
    def from_manifest(cls, section: dict[str, Any], sensitivity: str | None = None) -> Ensemble:
        """From `manifest["ensemble"]`; an absent/empty section means every detector votes with
        weight 1 (bundles written before the ensemble existed). With `sensitivity`, members whose
        `levels` leave it out are not members."""
        if not section:
            return cls({}, 1.0, everyone=True)
        if not isinstance(section, dict) or not isinstance(section.get("members"), dict):
            raise BundleError("the bundle's ensemble section has no members: retrain the bundle")
        members: dict[str, Member] = {}
        for name, m in section["members"].items():
            if sensitivity is not None and "levels" in m and sensitivity not in m["levels"]:
                continue
            try:
                tail = m.get("normal_tail")
                members[name] = Member(
                    name=name,
                    kind=DetectorKind(m.get("kind", "sequence")),
                    weight=float(m.get("weight", 1.0)),
                    vote=bool(m.get("vote", True)),
                    tail_scores=np.asarray(tail["score"], dtype=np.float64) if tail else None,
                    tail_shares=np.asarray(tail["share"], dtype=np.float64) if tail else None,
                    tail_target=float(m.get("tail_target", section.get("target_fpr", 0.01))),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(f"ensemble member {name!r} is malformed ({exc!r}): retrain the bundle") from None
        facts = section.get("facts")
        facts_vote = sensitivity is None or not isinstance(facts, dict) or sensitivity in facts.get("levels", ())
        return cls(members, float(section.get("threshold", 1.0)), facts=facts_vote)

    def scaled(self, scores: Sequence[DetectorScore]) -> dict[str, float]:
        """Each member's scaled score, by detector name."""
        return {s.detector: self.members[s.detector].scale(s) for s in scores if s.detector in self.members}

    def combine(
        self, scores: Sequence[DetectorScore], kinds: Mapping[str, DetectorKind]
    ) -> tuple[float, Verdict]:
        """The weighted calibrated score and the vote, for one line's (or session's) scores."""
        total = weight = 0.0
        fired: set[DetectorKind] = set()
        for s in scores:
            member = self.member(s.detector, kinds)
            if member is None:
                continue
            total += member.weight * member.scale(s)
            weight += member.weight
            if member.vote and s.fired:
                fired.add(kinds.get(s.detector, member.kind))
        combined = total / weight if weight > 0 else 0.0
        if DetectorKind.SEQUENCE in fired and fired & NOT_SEQUENCE:
            return combined, Verdict.DANGER
        if fired or combined > self.threshold:
            return combined, Verdict.WATCH
        return combined, Verdict.NORMAL


def default_section(
    model_names_and_kinds: Mapping[str, DetectorKind] | Sequence[tuple[str, DetectorKind]],
    weights: Mapping[str, float] | None = None,
    target_fpr: float = 0.01,
) -> dict[str, Any]:
    """The trainer's starting `manifest["ensemble"]`: every model votes, equal weights unless
    given; members gain a `normal_tail` when the trainer has normal scores for them."""
    pairs = model_names_and_kinds.items() if isinstance(model_names_and_kinds, Mapping) else model_names_and_kinds
    members = {
        name: {"kind": DetectorKind(kind).value, "weight": float((weights or {}).get(name, 1.0)), "vote": True}
        for name, kind in pairs
    }
    return {"members": members, "threshold": 1.0, "target_fpr": target_fpr, "scale": "threshold_or_tail"}
