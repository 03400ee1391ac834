"""`logdetect train` on a small real log: it says which sensitivities the held-back data cannot
support, thresholds stay distinct, and each learned detector's place in the vote is judged and
recorded with its reason; the agent serves exactly that vote at each sensitivity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.bundle import load_bundle
from agent.pipeline import Pipeline, PipelineConfig
from agent.types import Sensitivity

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def zookeeper(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A bundle trained by the CLI on the first 1,000 Zookeeper lines, and what `train` printed."""
    d = tmp_path_factory.mktemp("zk")
    lines = (data_dir / "loghub_2k" / "Zookeeper" / "Zookeeper_2k.log").read_text(errors="replace").splitlines()
    (d / "train.log").write_text("\n".join(lines[:1000]) + "\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "agent.cli", "train", "--input", str(d / "train.log"), "--output",
                        str(d / "model"), "--models", "isolation_forest,novel_set", "--quiet"],
                       capture_output=True, timeout=300, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr.decode()
    return d / "model", r.stdout.decode()


def test_train_says_which_levels_the_data_cannot_support(zookeeper: tuple[Path, str]) -> None:
    """Low is unsupported on 100 held-back lines and `train` says so; thresholds stay distinct."""
    model, out = zookeeper
    manifest = json.loads((model / "manifest.json").read_text())
    support = manifest["training"]["sensitivity_support"]
    assert support["low"]["supported"] is False  # 100 held-back lines cannot support 1 in 10,000
    assert "sensitivity low is NOT supported by the held-back data for isolation_forest" in out
    thresholds = manifest["models"]["isolation_forest"]["thresholds"]
    assert thresholds["low"] > thresholds["medium"] > thresholds["high"]
    assert manifest["models"]["isolation_forest"]["calibration"]["tail"]["peaks"] >= 8


def test_each_learned_detector_is_judged_and_the_agent_serves_that_vote(zookeeper: tuple[Path, str]) -> None:
    """Membership per level is recorded with evidence and served as recorded by the pipeline."""
    model, out = zookeeper
    bundle = load_bundle(model)
    ensemble = bundle.manifest["ensemble"]
    judged = ensemble["membership"]["detectors"]["isolation_forest"]["judged"]
    assert set(judged) == {"low", "medium", "high"}
    for level, j in judged.items():
        evidence = j["evidence"][0]
        assert evidence["unit"] == "line" and evidence["units"] == 100 and evidence["pseudo_anomalies"] > 0
        assert j["reason"]
        assert j["kept"] == (level in ensemble["members"]["isolation_forest"]["levels"])
        if not j["kept"]:
            assert "isolation_forest" in out and j["reason"] in out
        pipe = Pipeline.from_bundle(bundle, PipelineConfig(sensitivity=Sensitivity(level)))
        assert ("isolation_forest" in pipe.ensemble.members) == j["kept"]
        assert {"novelty", "novel_set"} <= set(pipe.ensemble.members)  # the plain rules always vote
        facts = ensemble["membership"]["detectors"]["facts"]["judged"][level]
        assert pipe.ensemble.facts == facts["kept"] == (level in ensemble["facts"]["levels"])


def test_a_learned_detector_judged_on_too_few_lines_is_left_out_for_lack_of_evidence(
    zookeeper: tuple[Path, str],
) -> None:
    """100 judged lines cannot show medium's rate (1 in 1,000): the forest raised no false alarm
    there, and is left out of medium for lack of evidence (before its catches are weighed), the
    bundle records why, and `train` says so per level. At high (1 in 100) 100 lines do allow
    one false alarm, and it is judged on what it shows."""
    model, out = zookeeper
    ensemble = json.loads((model / "manifest.json").read_text())["ensemble"]
    medium = ensemble["membership"]["detectors"]["isolation_forest"]["judged"]["medium"]
    evidence = medium["evidence"][0]
    assert not medium["kept"] and evidence["why"] == "no_evidence" and evidence["false_alarms"] == 0
    assert evidence["units"] == 100 and evidence["needs_units"] == 1000
    assert "lack of evidence: 100 held-back lines cannot show a false-alarm rate of 0.001" in medium["reason"]
    assert ensemble["membership"]["no_evidence"]["medium"] == [
        {"unit": "line", "units": 100, "needs_units": 1000, "detectors": ["isolation_forest"]}]
    assert "medium: isolation_forest left out for lack of evidence (100 held-back lines judged" in out
    assert "high" not in ensemble["membership"]["no_evidence"]
    assert ensemble["membership"]["detectors"]["isolation_forest"]["judged"]["high"]["evidence"][0]["allowed"] == 1
