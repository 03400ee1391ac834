"""Serving the novel-template-set rule: session verdicts only (a line has no set to judge)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.bundle import Bundle
from agent.detectors.base import threshold_for
from agent.errors import BundleError
from agent.onnx_session import RuntimeOptions
from agent.types import DetectorKind, DetectorScore, LineContext, Sensitivity


def template_set(tokens: Sequence[int]) -> tuple[int, ...]:
    """The canonical key of a session: its distinct tokens, sorted (one implementation for
    training and serving)."""
    return tuple(sorted(set(int(t) for t in tokens)))


class NovelSetDetector:
    kind = DetectorKind.FEATURE

    def __init__(self, name: str, known: set[tuple[int, ...]], threshold: float) -> None:
        self.name = name
        self.known = known
        self.threshold = threshold
        self.sessions = 0
        self.new = 0

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, name: str, section: dict[str, Any], options: RuntimeOptions,
        sensitivity: Sensitivity,
    ) -> NovelSetDetector:
        data = bundle.read_json(str(section.get("file")))
        try:
            known = {tuple(int(t) for t in s) for s in data["sets"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model {name!r}: malformed template sets ({exc!r}): retrain") from None
        return cls(name, known, threshold_for(section, sensitivity))

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        return [None] * len(contexts)

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        if not tokens:
            return None
        key = template_set(tokens)
        new = key not in self.known
        self.sessions += 1
        self.new += new
        return DetectorScore(self.name, 1.0 if new else 0.0, self.threshold, new, (("templates", len(key)),))

    def stats(self) -> dict[str, float]:
        return {"sessions": self.sessions, "new_sets": self.new}
