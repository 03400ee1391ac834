"""Isolation Forest served from ONNX: one call per micro-batch, identical rows answered once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.detectors.onnx_scorer import OnnxScorer, memo_stats, publish_hit_ratio
from agent.detectors.section import ModelLoad
from agent.errors import BundleError
from agent.features import FEATURE_NAMES
from agent.onnx_session import OnnxModel
from agent.types import DetectorKind, DetectorScore, LineContext


class IsolationForestScorer(OnnxScorer[bytes, float]):
    """Feature rows (as float32 bytes) -> −decision_function: higher = more anomalous."""

    def __init__(self, model: OnnxModel, name: str, input_name: str = "X", output_name: str = "scores",
                 cache_size: int = 65536) -> None:
        super().__init__(model, name, cache_size)
        self.input_name = input_name
        self.output_name = output_name

    def compute(self, keys: list[bytes]) -> list[float]:
        """−decision_function of distinct feature rows, one ONNX call."""
        x = np.frombuffer(b"".join(keys), dtype=np.float32).reshape(len(keys), -1)
        out = self.run({self.input_name: x}, [self.output_name])[0].reshape(-1)
        return [float(-s) for s in out]


class IsolationForestDetector:
    """Isolation Forest served through ONNX Runtime on the per-line feature vector."""

    kind = DetectorKind.FEATURE

    def __init__(self, name: str, scorer: IsolationForestScorer, threshold: float) -> None:
        self.name = name
        self.scorer = scorer
        self.model = scorer.model
        self.threshold = threshold

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> IsolationForestDetector:
        """The detector for a bundle section; refuses a bundle trained on other features."""
        name, section = load.name, load.section
        if list(section.get("features", [])) != list(FEATURE_NAMES):
            raise BundleError(
                f"model {name!r} was trained on features {section.get('features')}, this agent computes "
                f"{list(FEATURE_NAMES)}: retrain the bundle with this version"
            )
        model = load.onnx()
        input_name = str(section.get("input", "X"))
        model.check_inputs({input_name: 2})
        return cls(name, IsolationForestScorer(model, name, input_name, str(section.get("output", "scores"))),
                   load.threshold)

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        """−decision_function of each line's features (memoised: feature rows repeat)."""
        if not contexts:
            return []
        keys = [np.asarray(c.features, dtype=np.float32).tobytes() for c in contexts]
        scores = self.scorer.score(keys)
        publish_hit_ratio(self.name, self.scorer.cache)
        th = self.threshold
        return [DetectorScore(self.name, s, th, s > th) for s in scores]

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """None: a per-line model; sessions are judged by the sequence models."""
        return None  # a per-line model: sessions are judged by the sequence models

    def stats(self) -> dict[str, float]:
        """Calls, rows and memo hits/misses, for benchmarks and metrics."""
        return {**self.scorer.stats(), **memo_stats(self.scorer.cache)}
