"""The one interface every served model implements, and the registry that loads them.

A detector receives a micro-batch of `LineContext`s (the pipeline builds them: a line, its
feature vector and its entity's recent history) and returns one `DetectorScore` per line, or
None where it does not score that line (history too short, or it scores only at session close).
Scores are "higher = more anomalous"; thresholds come from the bundle, chosen by sensitivity.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

from agent.bundle import Bundle
from agent.errors import BundleError
from agent.onnx_session import RuntimeOptions
from agent.types import DetectorKind, DetectorScore, LineContext, Sensitivity


class Detector(Protocol):
    name: str
    kind: DetectorKind

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]: ...

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None: ...

    def stats(self) -> dict[str, float]:
        """Counters for benchmarks and metrics (calls, rows, cache hits/misses)."""
        ...


# manifest `models.<name>.type` -> "module:Class"; each class has
# `from_bundle(bundle, name, section, options, sensitivity)`.
REGISTRY: dict[str, str] = {
    "isolation_forest": "agent.detectors.isolation_forest:IsolationForestDetector",
    "deeplog": "agent.detectors.deeplog:DeepLogDetector",
    "lstm_ae": "agent.detectors.lstm_ae:LstmAutoencoderDetector",
    "logbert": "agent.detectors.logbert:LogBertDetector",
    "novel_set": "agent.detectors.novel_set:NovelSetDetector",
}


def threshold_for(section: dict[str, Any], sensitivity: Sensitivity) -> float:
    """The calibrated threshold of a model section for a sensitivity (see `thresholds`)."""
    thresholds = section.get("thresholds")
    if not isinstance(thresholds, dict) or sensitivity.value not in thresholds:
        raise BundleError(f"model section has no {sensitivity.value!r} threshold: retrain the bundle")
    return float(thresholds[sensitivity.value])


def load_detectors(
    bundle: Bundle,
    options: RuntimeOptions | None = None,
    sensitivity: Sensitivity = Sensitivity.MEDIUM,
    only: Sequence[str] | None = None,
) -> list[Detector]:
    detectors: list[Detector] = []
    for name, section in bundle.models.items():
        if only is not None and name not in only:
            continue
        target = REGISTRY.get(str(section.get("type")))
        if target is None:
            raise BundleError(f"model {name!r} has unknown type {section.get('type')!r}")
        module_name, cls_name = target.split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        detectors.append(cls.from_bundle(bundle, name, section, options or RuntimeOptions(), sensitivity))
    return detectors
