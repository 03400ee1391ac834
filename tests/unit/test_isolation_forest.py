"""Isolation Forest: scikit-learn and its ONNX export agree on real features; the threshold
calibrated on held-back normal lines flags about the target share of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.bundle import BundleWriter
from agent.features import FeatureExtractor
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


def test_onnx_parity_and_calibration(data_dir: Path, tmp_path: Path) -> None:
    """The ONNX export scores like scikit-learn and the threshold flags the target share."""
    pytest.importorskip("sklearn")
    from sklearn.ensemble import IsolationForest

    from trainer.isolation_forest import IsolationForestOptions, check_parity, fit_and_export
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData

    x_train, x_val = _features(data_dir)
    writer = BundleWriter(tmp_path / "b")
    section = fit_and_export(TrainingData.of_features(x_train, x_val), writer, "isolation_forest",
                             IsolationForestOptions(), FitConfig(), 0.01)
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
    writer.abort()
