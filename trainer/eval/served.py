"""What a user gets: a bundle's own detectors and vote at each sensitivity, on labelled sessions.

Nothing here looks at labels to choose anything: thresholds and vote membership come from the
bundle (set on held-back training data). Rows per level: each detector as served
(`<name>@<level>`), the vote (`ensemble:vote@<level>`), and the ablation at the same thresholds —
the vote without each member it holds (`ablation@<level>:-<name>`) and with each learned
detector it left out (`ablation@<level>:+<name>`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agent.bundle import Bundle
from agent.detectors.base import Detector, load_detectors
from agent.ensemble import Ensemble
from agent.onnx_session import RuntimeOptions
from agent.types import DetectorKind, DetectorScore, Sensitivity, Verdict
from trainer.eval.metrics import Row, row

LEVELS = ("low", "medium", "high")
NOVELTY = "novelty"


def session_scores(detector: Detector, sessions: Sequence[Sequence[int]]) -> list[DetectorScore | None]:
    """A detector's session scores (None where it does not judge sessions)."""
    return [detector.score_session(s, [0] * len(s)) for s in sessions]


def vote(section: Mapping[str, Any], level: str, kinds: Mapping[str, DetectorKind],
         scored: Mapping[str, Sequence[DetectorScore | None]], n: int) -> np.ndarray:
    """The agent's session verdict (not NORMAL) for each of `n` sessions, novelty included."""
    ensemble = Ensemble.from_manifest(dict(section), level)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        scores = [s for s in (scored[name][i] for name in scored) if s is not None]
        out[i] = ensemble.combine(scores, kinds)[1] is not Verdict.NORMAL
    return out


def with_membership(section: Mapping[str, Any], name: str, level: str, member: bool) -> dict[str, Any]:
    """A copy of the ensemble section with `name` in (or out of) the vote at `level`."""
    out = copy.deepcopy(dict(section))
    m = out["members"][name]
    levels = list(m.get("levels", LEVELS))
    m["levels"] = sorted(set(levels) | {level}) if member else [x for x in levels if x != level]
    return out


def served_rows(
    bundle: Bundle, sessions: Sequence[Sequence[int]], labels: np.ndarray, level_name: str,
    prevalence: float | None, options: RuntimeOptions | None = None, only: Sequence[str] | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    """Rows per level: each detector as served, the vote, and the ablation (see the module docstring)."""
    section = bundle.manifest.get("ensemble", {})
    rows: list[Row] = []
    members: dict[str, list[str]] = {}
    n = len(sessions)
    novelty = [DetectorScore(NOVELTY, 1.0, 0.5, True) if 0 in s else None for s in sessions]
    for level in LEVELS:
        detectors = load_detectors(bundle, options, Sensitivity(level), only)
        kinds = {d.name: d.kind for d in detectors} | {NOVELTY: DetectorKind.RULE}
        scored: dict[str, Sequence[DetectorScore | None]] = {d.name: session_scores(d, sessions) for d in detectors}
        scored[NOVELTY] = novelty
        for d in detectors:
            fired = np.asarray([bool(s is not None and s.fired) for s in scored[d.name]])
            rows.append(row(level_name, f"{d.name}@{level}", labels, fired, prevalence))
        rows.append(row(level_name, f"ensemble:vote@{level}", labels, vote(section, level, kinds, scored, n),
                        prevalence))
        voting = Ensemble.from_manifest(dict(section), level).members
        members[level] = sorted(voting)
        for name in section.get("members", {}):
            if name not in scored:
                continue
            inside = name in voting
            toggled = with_membership(section, name, level, member=not inside)
            sign = "-" if inside else "+"
            rows.append(row(level_name, f"ablation@{level}:{sign}{name}", labels,
                            vote(toggled, level, kinds, scored, n), prevalence))
    return rows, {"vote_members": members}


def line_ablation(
    results: Sequence[Any], section: Mapping[str, Any], level: str, kinds: Mapping[str, DetectorKind],
) -> dict[str, np.ndarray]:
    """Line verdicts of the served vote with each member taken out (`-x`) or each left-out
    learned detector put in (`+x`), from the pipeline's `LineResult`s at `level`. A line raised
    by explanation facts alone (the vote said NORMAL) stays raised in every variant."""
    served = Ensemble.from_manifest(dict(section), level)
    by_facts = np.asarray([r.verdict is not Verdict.NORMAL and served.combine(r.scores, kinds)[1] is Verdict.NORMAL
                           for r in results])
    out: dict[str, np.ndarray] = {}
    present = {s.detector for r in results for s in r.scores}
    for name in section.get("members", {}):
        if name not in present:
            continue
        inside = name in served.members
        variant = Ensemble.from_manifest(with_membership(section, name, level, member=not inside), level)
        raised = np.asarray([variant.combine(r.scores, kinds)[1] is not Verdict.NORMAL for r in results])
        out[f"ablation@{level}:{'-' if inside else '+'}{name}"] = raised | by_facts
    return out
