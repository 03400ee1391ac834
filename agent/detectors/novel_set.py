"""Serving the novel-template-set rule: session verdicts only (a line has no set to judge)."""

from __future__ import annotations

from collections.abc import Sequence

from agent.detectors.section import ModelLoad
from agent.errors import BundleError
from agent.types import DetectorKind, DetectorScore, LineContext


def template_set(tokens: Sequence[int]) -> tuple[int, ...]:
    """The canonical key of a session: its distinct tokens, sorted (one implementation for
    training and serving)."""
    return tuple(sorted(set(int(t) for t in tokens)))


class NovelSetDetector:
    """The novel-template-set rule: a session whose set of templates never occurred in training."""

    kind = DetectorKind.RULE

    def __init__(self, name: str, known: set[tuple[int, ...]], threshold: float) -> None:
        self.name = name
        self.known = known
        self.threshold = threshold
        self.sessions = 0
        self.new = 0

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> NovelSetDetector:
        """The detector for a bundle section: the known sets from its JSON file."""
        data = load.bundle.read_json(str(load.section.get("file")))
        try:
            known = {tuple(int(t) for t in s) for s in data["sets"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model {load.name!r}: malformed template sets ({exc!r}): retrain") from None
        return cls(load.name, known, load.session_threshold)

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        """None for every line: this rule judges whole sessions only."""
        return [None] * len(contexts)

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """1 (fires) when the session's set of templates is new, 0 when training saw it."""
        if not tokens:
            return None
        key = template_set(tokens)
        new = key not in self.known
        self.sessions += 1
        self.new += new
        return DetectorScore(self.name, 1.0 if new else 0.0, self.threshold, new, (("templates", len(key)),))

    def stats(self) -> dict[str, float]:
        """Sessions judged and how many had a new set."""
        return {"sessions": self.sessions, "new_sets": self.new}
