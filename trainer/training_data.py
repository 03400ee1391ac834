"""What every trainer function receives: one calling convention for every model.

    fit_and_export(data: TrainingData, writer: BundleWriter, name: str, options, fit: FitConfig,
                   target_fpr: float | None) -> dict[str, Any]   # the manifest section

`data` carries both shapes of training data (per-line feature rows and per-entity token
sequences) split into a training part and a held-back part of normal data; each model reads the
one its `ModelSpec.data` names. The returned section holds `type`, `thresholds` per sensitivity
(calibrated on the held-back part) and whatever the serving class reads back in `from_bundle`;
the caller adds it to the bundle. A supervised model (`TrainingInput.LABELLED`) reads `labelled`:
every line, anomalies included, with its label; it is there only when `train` was given labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from trainer.torch_base import FitConfig

Sequences = Sequence[Sequence[int]]


def _no_rows() -> np.ndarray:
    return np.zeros((0, 0), dtype=np.float32)


@dataclass(frozen=True)
class LabelledSequences:
    """Every line of the labelled training data (anomalies included), per entity in line order:
    model tokens, levels and whether each line was labelled an anomaly (`trainer/labels.py`).
    `train_*` is the training part, `val_*` the first half of the held-back part (thresholds)."""

    train_seqs: Sequences
    train_levels: Sequences
    train_flags: Sequence[Sequence[bool]]
    val_seqs: Sequences = ()
    val_levels: Sequences = ()
    val_flags: Sequence[Sequence[bool]] = ()

    @property
    def anomalies(self) -> int:
        """Training lines labelled an anomaly."""
        return sum(sum(1 for f in flags if f) for flags in self.train_flags)


@dataclass(frozen=True)
class TrainingData:
    """Normal data to learn from (`train_*`) and to calibrate thresholds on (`val_*`).

    `vocab_size` counts the model tokens including UNK (token 0). Levels, when given, align
    with the sequences (None: the format carries no levels). Feature rows are float32
    (rows × `agent.features.FEATURE_NAMES`). `templates` maps model tokens to their template
    text, for models that read the words of templates (empty: the texts are not known)."""

    vocab_size: int
    train_seqs: Sequences = ()
    val_seqs: Sequences = ()
    train_levels: Sequences | None = None
    val_levels: Sequences | None = None
    train_x: np.ndarray = field(default_factory=_no_rows)
    val_x: np.ndarray = field(default_factory=_no_rows)
    labelled: LabelledSequences | None = None  # given labels only (`TrainingInput.LABELLED`)
    templates: Mapping[int, str] = field(default_factory=dict)

    @staticmethod
    def of_sequences(
        train_seqs: Sequences,
        vocab_size: int,
        val_seqs: Sequences = (),
        train_levels: Sequences | None = None,
        val_levels: Sequences | None = None,
        templates: Mapping[int, str] | None = None,
    ) -> TrainingData:
        """Training data for a sequence or session model: token sequences, their levels, and the
        template texts of the tokens when known."""
        return TrainingData(vocab_size, train_seqs, val_seqs, train_levels, val_levels,
                            templates=dict(templates or {}))

    @staticmethod
    def of_features(train_x: np.ndarray, val_x: np.ndarray) -> TrainingData:
        """Training data for a feature model: the feature rows, as float32."""
        return TrainingData(0, train_x=np.asarray(train_x, dtype=np.float32),
                            val_x=np.asarray(val_x, dtype=np.float32))


def train_one(
    model_type: str, data: TrainingData, output: Path, options: Any = None, fit: FitConfig | None = None,
    target_fpr: float | None = None, name: str | None = None,
) -> Path:
    """A bundle of one registered model trained on `data` by its trainer function (tests,
    benchmarks, ablations), under `name` (default: its type); `options` default to the model's own."""
    from agent.bundle import BundleWriter
    from agent.models import spec
    from trainer.torch_base import FitConfig

    model = spec(model_type)
    name = name or model_type
    writer = BundleWriter(output)
    try:
        section = model.trainer_function()(data, writer, name, options or model.default_options(),
                                           fit or FitConfig(progress=False), target_fpr)
        writer.add_model(name, section)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise
