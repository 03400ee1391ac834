"""LogAnomaly served from ONNX: DeepLog's rules over a model that reads template semantics and counts.

The ONNX graph (`trainer.loganomaly`) takes the same window of model tokens as DeepLog's and
answers the same next-token probabilities, so lines and sessions are judged by DeepLog's rules
(`DeepLogScorer`: top-g, the rare path, misses per session) and memoised the same way.

What differs is a line whose template was born after training (token 0): its words are embedded
with the bundle's template vectors (`agent.template_vectors`) and, when its nearest training
template is at least `min_similarity` alike (cosine) and the line's level is not above the
highest level that template had in training (`max_level`), the line is judged as that template
(path `approximated`): a message whose wording changed by one word ranks where its neighbour
would, but a FATAL variant of an INFO message does not pass for it.
Otherwise it is unknown, a miss, as in DeepLog. Templates born after training that sit earlier in
the window stay UNK (a window holds tokens, not texts); sessions are judged on tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from agent.detectors.deeplog import DeepLogDetector, DeepLogScorer
from agent.detectors.memo import BoundedCache
from agent.detectors.section import ModelLoad
from agent.errors import BundleError
from agent.template_vectors import Neighbour, TemplateVectors
from agent.types import DetectorKind, DetectorScore, LineContext

KNOWN = -1  # the last key entry of a line whose template is in the vocabulary
PERMILLE = 1000  # similarities in the key are integers (hashable, exact)


class LogAnomalyDetector(DeepLogDetector):
    """Keys: the window, the token judged (the line's own, or its nearest training template's),
    and the similarity in permille (KNOWN for a training template)."""

    kind = DetectorKind.SEQUENCE

    def __init__(self, name: str, scorer: DeepLogScorer, vectors: TemplateVectors, min_similarity: float,
                 session_threshold: float, session_mode: str, line_cache_size: int = 16384,
                 line_threshold: float | None = None, neighbour_cache_size: int = 4096) -> None:
        super().__init__(name, scorer, session_threshold, session_mode, line_cache_size, line_threshold)
        self.vectors = vectors
        self.min_similarity = min_similarity
        self.max_level: tuple[int, ...] = ()  # per token, its highest training level (empty: not gated)
        self.neighbours: BoundedCache[str, Neighbour] = BoundedCache(neighbour_cache_size)

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> LogAnomalyDetector:
        """The detector for a section: DeepLog's scorer on the ONNX file, and the template vectors."""
        section = load.section
        semantic = section.get("semantic")
        if not isinstance(semantic, dict) or "file" not in semantic:
            raise BundleError(f"model {load.name!r}: the section names no template vectors: retrain the bundle")
        vectors = TemplateVectors.load(load.bundle.file(str(semantic["file"])))
        scorer = DeepLogScorer(load.onnx(), section.raw, load.name, section.integer("cache_size", 65536))
        det = cls(load.name, scorer, vectors, float(semantic.get("min_similarity", 0.85)), load.session_threshold,
                  str(section.get("session_score", "misses")), section.integer("line_cache_size", 16384),
                  load.threshold)
        det.max_level = tuple(int(x) for x in semantic.get("max_level", []))
        return det

    def neighbour(self, text: str) -> Neighbour:
        """The nearest training template of a template text (memoised by text)."""
        found = self.neighbours.get(text)
        if found is None:
            found = self.vectors.nearest(text)
            self.neighbours.put(text, found)
        return found

    def line_keys(self, contexts: Sequence[LineContext]) -> tuple[list[int], list[tuple[int, ...]]]:
        """DeepLog's keys, with a never-seen template replaced by its neighbour when alike enough."""
        todo, keys = super().line_keys(contexts)
        out: list[tuple[int, ...]] = []
        for i, key in zip(todo, keys, strict=True):
            if key[-1] != 0:
                out.append((*key, KNOWN))
                continue
            n = self.neighbour(contexts[i].line.template)
            token = n.token if n.similarity >= self.min_similarity and self._level_fits(n.token, contexts[i]) else 0
            out.append((*key[:-1], token, round(n.similarity * PERMILLE)))
        return todo, out

    def _level_fits(self, token: int, context: LineContext) -> bool:
        """Whether the line's level is at most the highest level `token` had in training."""
        top = self.max_level
        return not top or token >= len(top) or int(context.line.line.level) <= top[token]

    def score_keys(self, keys: list[tuple[int, ...]]) -> list[DetectorScore]:
        """One model call for the distinct windows; approximated lines are judged as their neighbour."""
        s = self.scorer
        windows = [k[:-2] for k in keys]
        out: list[DetectorScore] = []
        for window, key, p in zip(windows, keys, s.probabilities(windows), strict=True):
            token, similarity = key[-2], key[-1]
            j = s.judge(window, token, p)
            if similarity == KNOWN:
                out.append(self.line_score(j, p))
                continue
            if token > 0:
                j = dataclasses.replace(j, actual=0, path="approximated")
            out.append(self.line_score(j, p, (("nearest_template", token), ("similarity", similarity / PERMILLE))))
        return out

    def stats(self) -> dict[str, float]:
        """DeepLog's counters plus how often a never-seen template's neighbour came from the memo."""
        return {**super().stats(), "neighbour_cache_hit_ratio": self.neighbours.hit_ratio}
