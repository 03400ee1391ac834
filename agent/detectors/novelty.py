"""The novelty rule: a line whose template was never seen in training (model token 0, UNK).

The plainest detector, and on BGL the strongest single signal. A line fires when its template
is new; a session fires when any of its lines was. It has nothing to learn: its section holds
the one threshold (the score is 1.0 or nothing) and, from the trainer, how often held-back normal
lines were new. It is `builtin` in `agent.models`: bundles written before it was registered
are served with `NoveltyDetector.default_section`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.detectors.section import ModelLoad
from agent.types import DetectorKind, DetectorScore, LineContext

UNK = 0


class NoveltyDetector:
    """The novelty rule: a line whose template never occurred in training (UNK) fires."""

    kind = DetectorKind.RULE

    @staticmethod
    def default_section() -> dict[str, Any]:
        """The section of a bundle written before the rule was registered (and what training writes)."""
        return {"type": "novelty", "thresholds": {"low": 0.5, "medium": 0.5, "high": 0.5}}

    def __init__(self, name: str, threshold: float) -> None:
        self.name = name
        self.threshold = threshold
        self.lines = 0
        self.new_lines = 0
        self.new_sessions = 0
        # every new line's score is this one object (an emitted anomaly keeps fewer objects alive)
        self._score = DetectorScore(self.name, 1.0, self.threshold, self.threshold < 1.0)

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> NoveltyDetector:
        """The rule at the threshold of the load's sensitivity (the section has no file)."""
        return cls(load.name, load.threshold)

    def _new(self) -> DetectorScore:
        if self._score.threshold != self.threshold:  # (set anew after it was built)
            self._score = DetectorScore(self.name, 1.0, self.threshold, self.threshold < 1.0)
        return self._score

    def new_line_score(self) -> DetectorScore:
        """What `score_lines` gives every line with a new template (read without a line: the
        pipeline's counted road), not counted."""
        return self._new()

    def count_new(self, lines: int) -> None:
        """Count lines with a new template that `score_lines` did not see (the counted road)."""
        self.lines += lines
        self.new_lines += lines

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        """A firing score for each line with a new template, None for the others."""
        self.lines += len(contexts)
        out: list[DetectorScore | None] = [None] * len(contexts)
        for i, c in enumerate(contexts):
            if c.line.is_new:
                out[i] = self._new()
                self.new_lines += 1
        return out

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """A firing score when the session holds a new template, else None."""
        if UNK not in tokens:
            return None
        self.new_sessions += 1
        return self._new()

    def stats(self) -> dict[str, float]:
        """Lines judged, new lines and sessions with a new template."""
        return {"lines": float(self.lines), "new_lines": float(self.new_lines),
                "new_sessions": float(self.new_sessions)}
