"""The novelty rule's trainer: nothing to learn, one fixed threshold, and how often held-back
normal lines were new (what the rule will cost on tomorrow's normal logs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.bundle import BundleWriter
from agent.detectors.novelty import UNK, NoveltyDetector
from trainer.torch_base import FitConfig
from trainer.training_data import TrainingData


@dataclass(frozen=True)
class NoveltyOptions:
    """The rule has no settings."""


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: NoveltyOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """The rule's section: its threshold and the share of held-back normal lines that were new."""
    lines = sum(len(s) for s in data.val_seqs)
    new = sum(1 for s in data.val_seqs for t in s if t == UNK)
    rate = new / lines if lines else 0.0
    return {**NoveltyDetector.default_section(), "calibration": {"held_back_new_line_rate": rate, "n_normal": lines}}
