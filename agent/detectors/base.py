"""The one interface every served model implements, and the loader that serves a bundle.

A detector receives a micro-batch of `LineContext`s (the pipeline builds them: a line, its
feature vector and its entity's recent history) and returns one `DetectorScore` per line, or
None where it does not score that line (history too short, or it scores only at session close).
`score_session` judges a whole ended session, or returns None when the model judges lines only.
Scores are "higher = more anomalous"; thresholds come from the bundle (the threshold contract of
`agent.detectors.section`), chosen by sensitivity when the detector is built by `from_bundle`.
Which class serves which manifest `type` is the model table, `agent.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agent.bundle import Bundle
from agent.detectors.section import ModelLoad, ModelSection
from agent.errors import BundleError
from agent.models import MODELS, find
from agent.onnx_session import RuntimeOptions
from agent.types import DetectorKind, DetectorScore, LineContext, Sensitivity


class Detector(Protocol):
    """A served model (see the module docstring)."""

    name: str
    kind: DetectorKind

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        """One score per context (None where this model does not judge the line), same order."""

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """A score for a whole ended session, or None when this model does not judge sessions."""

    def stats(self) -> dict[str, float]:
        """Counters for benchmarks and metrics (calls, rows, cache hits/misses)."""
        ...


class DetectorClass(Protocol):
    """A serving class: builds its detector from its bundle section, thresholds included
    (`load.threshold`, `load.session_threshold`: the contract of `agent.detectors.section`)."""

    def from_bundle(self, load: ModelLoad) -> Detector:
        """The serving detector of one bundle section at one sensitivity."""


def load_detector(
    bundle: Bundle, section: ModelSection, options: RuntimeOptions | None = None,
    sensitivity: Sensitivity = Sensitivity.MEDIUM,
) -> Detector:
    """The detector of one section, by its registered `type`."""
    spec = find(section.type)
    if spec is None:
        raise BundleError(f"model {section.name!r} has unknown type {section.type!r}")
    cls: DetectorClass = spec.serving_class()
    return cls.from_bundle(ModelLoad(bundle, section, options or RuntimeOptions(), sensitivity))


def load_detectors(
    bundle: Bundle,
    options: RuntimeOptions | None = None,
    sensitivity: Sensitivity = Sensitivity.MEDIUM,
    only: Sequence[str] | None = None,
    builtin_defaults: bool = False,
) -> list[Detector]:
    """Every model of the bundle (or those named in `only`; built-in rules are always kept).

    With `builtin_defaults`, built-in rules the bundle has no section for (it was written before
    they were registered) are served with their default section, as they were before."""
    sections = dict(bundle.models)
    if builtin_defaults:
        for spec in MODELS:
            if spec.builtin and spec.name not in sections:
                sections[spec.name] = spec.serving_class().default_section()
    detectors: list[Detector] = []
    for name, raw in sections.items():
        section = ModelSection.parse(name, raw)
        registered = find(section.type)
        if only is not None and name not in only and not (registered is not None and registered.builtin):
            continue
        detectors.append(load_detector(bundle, section, options, sensitivity))
    share_inputs(detectors)
    return detectors


def judge_session(detectors: Sequence[Detector], tokens: Sequence[int], levels: Sequence[int]) -> list[DetectorScore]:
    """Every detector's score of one ended session, in order (those that judge sessions). A
    model that reads other models' session scores (AutoLog: `score_session_given`) is handed the
    ones already computed instead of asking for them again."""
    scores: list[DetectorScore] = []
    given: dict[str, DetectorScore | None] = {}
    for d in detectors:
        with_given = getattr(d, "score_session_given", None)
        judged = with_given(tokens, levels, given) if with_given is not None else d.score_session(tokens, levels)
        given[d.name] = judged
        if judged is not None:
            scores.append(judged)
    return scores


def share_inputs(detectors: Sequence[Detector]) -> None:
    """A model that reads other models' scores (AutoLog: `bind_inputs`) is given the served
    instances of those models, so their memos answer it and nothing is scored twice."""
    served = {d.name: d for d in detectors}
    for d in detectors:
        bind = getattr(d, "bind_inputs", None)
        if bind is not None:
            bind(served)
