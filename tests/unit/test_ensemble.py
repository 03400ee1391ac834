"""The ensemble: a calibrated weighted score and seed 000's vote, configured by the bundle."""

from __future__ import annotations

import numpy as np
import pytest

from agent.ensemble import Ensemble, default_section, tail_of
from agent.errors import BundleError
from agent.types import DetectorKind, DetectorScore, Verdict

KINDS = {
    "deeplog": DetectorKind.SEQUENCE,
    "lstm_ae": DetectorKind.SEQUENCE,
    "isolation_forest": DetectorKind.FEATURE,
    "logbert": DetectorKind.SEMANTIC,
}


def score(name: str, value: float, threshold: float = 1.0) -> DetectorScore:
    """A detector score that fires above its threshold."""
    return DetectorScore(name, value, threshold, value > threshold)


def test_vote_danger_needs_a_sequence_and_a_feature_or_semantic_detector() -> None:
    """DANGER when both kinds fire, WATCH when one fires (two sequence models are one kind)."""
    ens = Ensemble.from_manifest(default_section(KINDS))
    assert ens.combine([score("deeplog", 2), score("isolation_forest", 2)], KINDS)[1] is Verdict.DANGER
    assert ens.combine([score("lstm_ae", 2), score("logbert", 3)], KINDS)[1] is Verdict.DANGER
    assert ens.combine([score("deeplog", 2), score("lstm_ae", 2)], KINDS)[1] is Verdict.WATCH
    assert ens.combine([score("logbert", 2), score("deeplog", 0.1)], KINDS)[1] is Verdict.WATCH
    assert ens.combine([score("deeplog", 0.5), score("isolation_forest", 0.2)], KINDS)[1] is Verdict.NORMAL


def test_weights_and_voters_are_bundle_settings() -> None:
    """The combined score is the weighted mean of scaled scores; non-voters do not vote."""
    section = default_section(KINDS, weights={"deeplog": 3.0, "isolation_forest": 1.0})
    section["members"]["isolation_forest"]["vote"] = False
    section["threshold"] = 5.0
    ens = Ensemble.from_manifest(section)
    combined, verdict = ens.combine([score("deeplog", 0.5), score("isolation_forest", 4.0, 2.0)], KINDS)
    assert combined == pytest.approx((3 * 0.5 + 1 * 2.0) / 4)
    assert verdict is Verdict.NORMAL  # the forest fired but does not vote; 0.875 < 5
    combined, verdict = ens.combine([score("deeplog", 1.5), score("isolation_forest", 4.0, 2.0)], KINDS)
    assert verdict is Verdict.WATCH


def test_tail_scale_is_rarity_among_normal_scores() -> None:
    """With a normal tail, 1.0 means 'as rare as the target FPR'; beyond all normal data > 1."""
    rng = np.random.default_rng(3)
    normal = rng.normal(0.0, 1.0, 5000)
    section = default_section({"lstm_ae": DetectorKind.SEQUENCE}, target_fpr=0.01)
    section["members"]["lstm_ae"]["normal_tail"] = tail_of(normal.tolist())
    member = Ensemble.from_manifest(section).members["lstm_ae"]
    at_target = float(np.quantile(normal, 0.99))
    assert member.scale(score("lstm_ae", float(np.median(normal)))) < 0.2
    assert member.scale(score("lstm_ae", at_target)) == pytest.approx(1.0, abs=0.1)
    assert member.scale(score("lstm_ae", float(normal.max()) + 5)) > 1.5
    tail = tail_of(normal.tolist(), points=64)
    assert len(tail["score"]) <= 64 and tail["share"][0] == 1.0


def test_threshold_scale_handles_non_positive_thresholds() -> None:
    """Scaling works with thresholds at or below zero and clips huge scores."""
    ens = Ensemble.from_manifest(default_section(KINDS))
    m = ens.members["isolation_forest"]
    assert m.scale(DetectorScore("isolation_forest", 0.2, -0.1, True)) == pytest.approx(1.3)
    assert m.scale(DetectorScore("isolation_forest", 1e9, 1.0, True)) == 10.0  # clipped


def test_absent_section_lets_every_detector_vote_and_bad_sections_are_refused() -> None:
    """Without an ensemble section every detector votes; malformed sections are BundleErrors."""
    ens = Ensemble.from_manifest({})
    assert ens.combine([score("deeplog", 2), score("logbert", 2)], KINDS)[1] is Verdict.DANGER
    with pytest.raises(BundleError):
        Ensemble.from_manifest({"threshold": 1.0})
    with pytest.raises(BundleError):
        Ensemble.from_manifest({"members": {"deeplog": {"kind": "sequential"}}})
    assert Ensemble.from_manifest(default_section(KINDS)).combine([], KINDS) == (0.0, Verdict.NORMAL)
