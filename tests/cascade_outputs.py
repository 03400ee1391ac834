"""Comparing what a pipeline emitted with and without the cascade (`agent/detectors/cascade.py`).

Everything must be equal: the same outputs in the same order, every verdict, combined score,
incident, session verdict and every score of the vote's members. A detector outside the vote (a
*witness*) runs on fewer lines with the cascade, so its model calls carry other batches; ONNX
Runtime's CPU kernels are not bit-invariant to the batch size (AutoLog's dense layers differ in
the last float32 bit), so a witness's score is compared to 1e-5 relative, as the contract suite
compares scores under any batch split, with the same `fired`; its details and the explanations
are compared by kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from agent.types import Anomaly, DetectorScore, Output, SessionVerdict


def _score(s: DetectorScore, witnesses: frozenset[str]) -> Any:
    if s.detector not in witnesses:
        return s
    return (s.detector, s.threshold, s.fired, pytest.approx(s.score, rel=1e-5, abs=1e-6))


def comparable(o: Output, witnesses: frozenset[str]) -> Any:
    """`o` with witnesses' scores as (name, threshold, fired, ≈score) and explanations by kind."""
    if isinstance(o, SessionVerdict | Anomaly):
        return dataclasses.replace(o, scores=tuple(_score(s, witnesses) for s in o.scores),
                                   explanations=tuple(e.kind for e in o.explanations))
    return o


def assert_same_outputs(got: Sequence[Output], expected: Sequence[Output], witnesses: frozenset[str]) -> None:
    """The cascade's outputs are the full schedule's (see the module docstring)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert type(g) is type(e)
        assert comparable(e, witnesses) == comparable(g, witnesses), (g, e)
