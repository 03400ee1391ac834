"""Run a draft bundle's real detectors over held-back data and its pseudo-anomalies, at each
sensitivity, and apply the membership rule (`trainer/membership.py`).

Sessions are scored with each detector's `score_session`; lines go through the real agent
`Pipeline` (once as they came, once with a sample of lines moved elsewhere), so the judgement
sees exactly what the agent will serve. When training was given labels (`train --labels`) and
the judged part holds labelled anomalies, those real anomalies replace the pseudo-anomalies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.bundle import Bundle
from agent.detectors.base import load_detectors
from agent.parsing import ParserConfig
from agent.types import Record, Sensitivity
from trainer.membership import FACTS, RULES, Fired, Judgement, decide, perturb_sessions, relocate_lines

NOVELTY = "novelty"
MIN_SESSIONS = 20  # fewer held-back sessions than this: nothing to judge sessions on


def session_fired(
    bundle: Bundle, level: str, normal: Sequence[Sequence[int]], pseudo: Sequence[Sequence[int]],
    names: Sequence[str] | None = None,
) -> Fired:
    """Which detectors fire on each held-back session and each pseudo-anomalous session at `level`."""
    detectors = load_detectors(bundle, sensitivity=Sensitivity(level), only=names)
    normal_t: dict[str, np.ndarray] = {NOVELTY: np.array([0 in s for s in normal], dtype=bool)}
    pseudo_t: dict[str, np.ndarray] = {NOVELTY: np.array([0 in s for s in pseudo], dtype=bool)}
    for d in detectors:
        judged_normal = [d.score_session(s, [0] * len(s)) for s in normal]
        if all(j is None for j in judged_normal):
            continue  # a per-line model: judged on lines
        normal_t[d.name] = np.array([bool(j is not None and j.fired) for j in judged_normal], dtype=bool)
        pseudo_t[d.name] = np.array(
            [bool(j is not None and j.fired) for j in (d.score_session(s, [0] * len(s)) for s in pseudo)], dtype=bool)
    return Fired("session", normal_t, pseudo_t)


def line_fired(bundle: Bundle, level: str, records: Sequence[Record], parser: ParserConfig, seed: int,
               anomalous: Sequence[bool] | None = None) -> Fired:
    """Which detectors fire on each held-back line and on each line moved elsewhere, through the
    Pipeline; given labels (`anomalous`, one per record), on each held-back normal line and each
    labelled anomaly as the lines came."""
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.types import LineResult, Verdict

    def run(recs: Sequence[Record], judged: Bundle = bundle) -> list[LineResult]:
        pipe = Pipeline(judged, PipelineConfig(parser=dataclasses.replace(parser, multiline=False),
                                               sensitivity=Sensitivity(level)))
        results: list[LineResult] = []
        pipe.observers.append(results.append)
        for start in range(0, len(recs), 1024):
            pipe.process(recs[start : start + 1024], 0.0)
        return results

    normal = run(records)
    normal_rows: Sequence[int] = range(len(normal))
    if anomalous is None:
        order, moved = relocate_lines(len(records), seed)
        shuffled, pseudo_rows = run([records[i] for i in order]), moved
    else:  # real anomalies replace the pseudo-anomalies
        normal_rows = [i for i in range(len(normal)) if not anomalous[i]]
        shuffled, pseudo_rows = normal, [i for i in range(len(normal)) if anomalous[i]]
    line_models = {s.detector for r in normal for s in r.scores} | {NOVELTY}

    def table(results: Sequence[LineResult], rows: Sequence[int]) -> dict[str, np.ndarray]:
        return {name: np.array([any(s.fired for s in results[i].scores if s.detector == name) for i in rows],
                               dtype=bool) for name in line_models}

    normal_t, pseudo_t = table(normal, normal_rows), table(shuffled, pseudo_rows)
    # facts that raise a line alone: the verdict of a vote that holds the plain rules only
    ensemble = bundle.manifest.get("ensemble", {})
    rules_only = {**ensemble, "members": {n: m for n, m in ensemble.get("members", {}).items() if n in RULES}}
    plain = run(records, Bundle(bundle.path, {**bundle.manifest, "ensemble": rules_only}))
    normal_t[FACTS] = np.array([plain[i].verdict is not Verdict.NORMAL
                                and not any(s.fired for s in plain[i].scores if s.detector in RULES)
                                for i in normal_rows], dtype=bool)
    return Fired("line", normal_t, pseudo_t)


def judge(
    bundle: Bundle,
    targets: dict[str, float],
    sessions: Sequence[Sequence[int]] = (),
    known_sessions: Sequence[Sequence[int]] = (),
    records: Sequence[Record] = (),
    parser: ParserConfig | None = None,
    seed: int = 42,
    anomalous_sessions: Sequence[Sequence[int]] | None = None,
    anomalous_lines: Sequence[bool] | None = None,
) -> tuple[list[Judgement], dict[str, Any]]:
    """Judgements of every learned detector at every level, on held-back `sessions` (with
    pseudo-anomalies made from them) and/or held-back `records` (lines). Returns the judgements
    and what was judged on. Given labels, the labelled anomalies replace the pseudo-anomalies:
    `anomalous_sessions` (sessions holding one) and `anomalous_lines` (one flag per record)."""
    learned = [n for n in bundle.models if n not in RULES]
    out: list[Judgement] = []
    facts: dict[str, Any] = {}
    if not learned:
        return out, facts
    if len(sessions) >= MIN_SESSIONS:
        known = {tuple(s) for s in known_sessions} | {tuple(s) for s in sessions}
        tokens = sorted({t for s in known_sessions for t in s if t != 0})
        if anomalous_sessions:  # labelled ones (none: pseudo-anomalies as without labels)
            pseudo = [list(s) for s in anomalous_sessions]
            facts["sessions"] = {"held_back": len(sessions), "labelled_anomalies": len(pseudo)}
        else:
            pseudo, kinds = perturb_sessions(sessions, known, tokens, seed)
            facts["sessions"] = {"held_back": len(sessions), "pseudo_anomalies": len(pseudo),
                                 "kinds": {k: kinds.count(k) for k in sorted(set(kinds))}}
        for level, fpr in targets.items():
            out.extend(decide(session_fired(bundle, level, sessions, pseudo), level, fpr))
    if records and parser is not None:
        facts["lines"] = {"held_back": len(records)}
        if anomalous_lines is not None:
            facts["lines"]["labelled_anomalies"] = sum(anomalous_lines)
        for level, fpr in targets.items():
            out.extend(decide(line_fired(bundle, level, records, parser, seed, anomalous_lines), level, fpr))
    return out, facts
