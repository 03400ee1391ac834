"""Isolation Forest: scikit-learn and its ONNX export agree on real features; the threshold
calibrated on held-back normal lines flags about the target share of them; the trees walked by
numpy (`agent/detectors/forest.py`) give ONNX Runtime's very scores, bit for bit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.bundle import BundleWriter
from agent.detectors.isolation_forest import IsolationForestDetector
from agent.detectors.section import ModelLoad, ModelSection
from agent.features import FeatureExtractor
from agent.onnx_session import RuntimeOptions
from agent.reader import iter_records
from agent.templates import TemplateMiner
from trainer.train import parse_records, template_lines


def _features(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from agent.parsing import ParserConfig

    records = list(iter_records(data_dir / "loghub_2k/HDFS/HDFS_2k.log"))
    parsed, _ = parse_records(records, ParserConfig(log_format="hdfs", entity=r"regex:(blk_-?\d+)"))
    miner = TemplateMiner()
    for p in parsed[:1500]:
        miner.add(p.message)
    vocab = {tid: i + 1 for i, tid in enumerate(sorted(miner.templates()))}
    lines, _ = template_lines(parsed, miner, vocab)
    extractor, x_train = FeatureExtractor.fit(lines[:1500])
    x_val = np.array([extractor.update(tl)[0] for tl in lines[1500:]], dtype=np.float32)
    return x_train, x_val


@dataclass(frozen=True)
class Trained:
    """One forest fitted and exported on real HDFS features (shared by this module's tests)."""

    writer: BundleWriter
    section: dict[str, Any]
    x_train: np.ndarray
    x_val: np.ndarray


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """Fit and export once: skl2onnx's conversion is most of the cost."""
    pytest.importorskip("sklearn")
    from trainer.isolation_forest import IsolationForestOptions, fit_and_export
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData

    x_train, x_val = _features(data_dir)
    writer = BundleWriter(tmp_path_factory.mktemp("forest") / "b")
    section = fit_and_export(TrainingData.of_features(x_train, x_val), writer, "isolation_forest",
                             IsolationForestOptions(), FitConfig(), 0.01)
    yield Trained(writer, section, x_train, x_val)
    writer.abort()


def test_onnx_parity_and_calibration(trained: Trained) -> None:
    """The ONNX export scores like scikit-learn and the threshold flags the target share."""
    from sklearn.ensemble import IsolationForest

    from trainer.isolation_forest import check_parity

    x_train, x_val, section, writer = trained.x_train, trained.x_val, trained.section, trained.writer
    # Parity on rows the model was not fitted on, with a fresh reference model of the same seed.
    ref = IsolationForest(n_estimators=section["n_estimators"], max_samples=min(256, len(x_train)),
                          random_state=42, n_jobs=1).fit(x_train)
    diff = check_parity(ref, writer.path_for("isolation_forest.onnx"), x_val)
    assert diff <= 1e-5
    th = section["thresholds"]
    assert th["low"] >= th["medium"] >= th["high"]
    # The medium threshold flags about 1% of the held-back normal lines it was set on (ties allow more).
    from agent.onnx_session import OnnxModel

    scores = -OnnxModel(writer.path_for("isolation_forest.onnx")).run({"X": x_val}, ["scores"])[0].reshape(-1)
    assert (scores > th["medium"]).mean() <= 0.02


def _detector(trained: Trained, numpy_trees: bool) -> IsolationForestDetector:
    load = ModelLoad(trained.writer.draft(), ModelSection.parse("isolation_forest", trained.section),
                     RuntimeOptions(numpy_trees=numpy_trees))
    return IsolationForestDetector.from_bundle(load)


def test_numpy_trees_score_exactly_as_onnx_runtime(trained: Trained) -> None:
    """Every real row (and rows pushed far outside training) scores the same float32 on both
    paths, in calls of any size; stored probe scores that disagree make the agent serve the graph."""
    section = trained.section
    assert section["trees"] == "isolation_forest.trees.npz" and section["tail"] == "isolation_forest.tail.onnx"
    fast, whole = _detector(trained, True), _detector(trained, False)
    assert fast.stats()["numpy_trees"] == 1.0 and whole.stats()["numpy_trees"] == 0.0
    rng = np.random.default_rng(0)
    far = trained.x_val * rng.choice([0.0, 0.5, 3.0, 100.0], size=trained.x_val.shape).astype(np.float32)
    rows = np.concatenate([trained.x_train, trained.x_val, far]).astype(np.float32)
    for batch in (1, 7, 256, len(rows)):
        keys = [r.tobytes() for r in rows[:batch]]
        assert fast.scorer.score_uncached(keys) == whole.scorer.score_uncached(keys)
    assert fast.scorer.calls > 0 and whole.scorer.calls > 0

    from agent.detectors.forest import load_forest

    trees_path = trained.writer.path_for(section["trees"])
    stored = load_forest(trees_path)
    stored.arrays.save(trees_path, stored.probe, stored.probe_scores + np.float32(1e-3))
    try:
        assert _detector(trained, True).stats()["numpy_trees"] == 0.0
    finally:
        stored.arrays.save(trees_path, stored.probe, stored.probe_scores)
