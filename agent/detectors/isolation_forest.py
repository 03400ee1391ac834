"""Isolation Forest served from ONNX: one call per micro-batch, identical rows answered once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent import metrics
from agent.bundle import Bundle
from agent.detectors.base import threshold_for
from agent.detectors.memo import BoundedCache, score_unique
from agent.errors import BundleError
from agent.features import FEATURE_NAMES
from agent.onnx_session import OnnxModel, RuntimeOptions
from agent.types import DetectorKind, DetectorScore, LineContext, Sensitivity


class IsolationForestDetector:
    kind = DetectorKind.FEATURE

    def __init__(self, name: str, model: OnnxModel, threshold: float, cache_size: int = 65536) -> None:
        self.name = name
        self.model = model
        self.threshold = threshold
        self.cache: BoundedCache[bytes, float] = BoundedCache(cache_size)
        self.calls = 0
        self.rows = 0

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, name: str, section: dict[str, Any], options: RuntimeOptions,
        sensitivity: Sensitivity,
    ) -> IsolationForestDetector:
        if list(section.get("features", [])) != list(FEATURE_NAMES):
            raise BundleError(
                f"model {name!r} was trained on features {section.get('features')}, this agent computes "
                f"{list(FEATURE_NAMES)}: retrain the bundle with this version"
            )
        model = OnnxModel(bundle.file(section["file"]), options)
        model.check_inputs({section.get("input", "X"): 2})
        return cls(name, model, threshold_for(section, sensitivity))

    def _run(self, keys: list[bytes]) -> list[float]:
        x = np.frombuffer(b"".join(keys), dtype=np.float32).reshape(len(keys), -1)
        started = time.perf_counter()
        out = self.model.run({"X": x}, ["scores"])[0].reshape(-1)
        metrics.inference_seconds.labels(model=self.name).observe(time.perf_counter() - started)
        metrics.inference_batch.labels(model=self.name).observe(len(keys))
        self.calls += 1
        self.rows += len(keys)
        return [float(-s) for s in out]

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        if not contexts:
            return []
        keys = [np.asarray(c.features, dtype=np.float32).tobytes() for c in contexts]
        scores = score_unique(keys, self.cache, self._run)
        metrics.memo_hit_ratio.labels(model=self.name).set(self.cache.hit_ratio)
        th = self.threshold
        return [DetectorScore(self.name, s, th, s > th) for s in scores]

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        return None  # a per-line model: sessions are judged by the sequence models

    def stats(self) -> dict[str, float]:
        return {"calls": self.calls, "rows": self.rows, "cache_hits": self.cache.hits,
                "cache_misses": self.cache.misses, "hit_ratio": self.cache.hit_ratio}
