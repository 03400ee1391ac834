"""Isolation Forest on the per-line features: fit (scikit-learn), export (skl2onnx), parity check,
threshold calibration on held-back normal lines.

The agent's score is −decision_function, so higher = more anomalous like every other detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.bundle import BundleWriter
from agent.features import FEATURE_NAMES
from trainer.calibrate import calibrate
from trainer.export import PARITY_TOLERANCE, max_abs_diff, onnx_outputs, require_parity
from trainer.forest_arrays import write_forest
from trainer.torch_base import FitConfig
from trainer.training_data import TrainingData

OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class IsolationForestOptions:
    """Isolation Forest settings (scikit-learn's) and the row cap for training."""

    n_estimators: int = 100
    max_samples: int = 256
    max_train_rows: int = 200_000  # a random subset beyond this: IF needs few samples per tree
    seed: int = 42


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: IsolationForestOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """Fit on `data.train_x`, export, check parity, calibrate on `data.val_x`: the manifest section.
    (`fit` is the torch models' configuration: the forest takes its seed from `options`)."""
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.ensemble import IsolationForest
    except ImportError:
        from agent.errors import DependencyError

        raise DependencyError(
            "the Isolation Forest needs scikit-learn and skl2onnx: pip install 'logdetect[train]'"
        ) from None

    opts = options
    val_x = data.val_x
    rng = np.random.default_rng(opts.seed)
    x = np.asarray(data.train_x, dtype=np.float32)
    if len(x) > opts.max_train_rows:
        x = x[rng.choice(len(x), opts.max_train_rows, replace=False)]
    model = IsolationForest(
        n_estimators=opts.n_estimators,
        max_samples=min(opts.max_samples, len(x)),
        random_state=opts.seed,
        n_jobs=1,
    )
    model.fit(x)
    onx = convert_sklearn(
        model, initial_types=[("X", FloatTensorType([None, x.shape[1]]))], target_opset=OPSET
    )
    path = writer.path_for(f"{name}.onnx")
    path.write_bytes(onx.SerializeToString())
    probe = np.concatenate([x[:500], np.asarray(val_x[:500], dtype=np.float32)])
    check_parity(model, path, probe)
    trees = write_forest(path, writer.path_for(f"{name}.trees.npz"), writer.path_for(f"{name}.tail.onnx"), probe)
    held_back = np.asarray(val_x if len(val_x) else x, dtype=np.float32)
    normal_scores = -model.decision_function(held_back)
    section: dict[str, Any] = {
        "type": "isolation_forest",
        "file": path.name,
        "features": list(FEATURE_NAMES),
        "input": "X",
        "output": "scores",
        "opset": OPSET,
        "n_estimators": opts.n_estimators,
        "train_rows": len(x),
        **calibrate(normal_scores, target_fpr),
    }
    if trees is not None:  # the trees as arrays beside the graph: the agent walks them with numpy
        section.update(trees=trees.trees, tail=trees.tail, tail_input=trees.tail_input)
    return section


def check_parity(model: Any, path: Path, x: np.ndarray, tol: float = PARITY_TOLERANCE) -> float:
    """Max |sklearn − ONNX Runtime| of decision_function on real rows; ModelError beyond `tol`."""
    x = np.asarray(x, dtype=np.float32)
    got = onnx_outputs(path, {"X": x}, ["scores"])[0].reshape(-1)
    return require_parity(max_abs_diff([model.decision_function(x)], [got]), "Isolation Forest", tol)
