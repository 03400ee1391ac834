"""Novel template set: a session is anomalous when its SET of templates never occurred as a
whole in training.

This is count-vector novelty reduced to presence: the rule behind the strongest trivial
baseline on HDFS sessions (BASELINES.md), served as a real detector so the ensemble can use it.
It generalises the line-level `novelty` rule to sessions: sequence models judge order, this
judges composition (a replicate-then-delete session whose every step is ordinary, but whose
combination never happens in normal operation).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from agent.bundle import BundleWriter
from agent.detectors.novel_set import template_set
from trainer.torch_base import FitConfig
from trainer.training_data import TrainingData


@dataclass(frozen=True)
class NovelSetOptions:
    """Bound on the template sets kept in the bundle."""

    # Bounded bundle size: beyond this many distinct sets the most frequent are kept (a rare
    # normal set then reads as new; the held-back rate below shows how often).
    max_sets: int = 200_000


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: NovelSetOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """The training sessions' template sets (the most frequent `max_sets`) and the held-back rate."""
    counts = Counter(template_set(s) for s in data.train_seqs if s)
    kept = [key for key, _ in counts.most_common(options.max_sets)]
    known = set(kept)
    writer.add_json(f"{name}.json", {"sets": [list(k) for k in sorted(kept)]})
    held_back = [template_set(s) for s in data.val_seqs if s]
    new_rate = sum(k not in known for k in held_back) / len(held_back) if held_back else 0.0
    return {
        "type": "novel_set",
        "file": f"{name}.json",
        "sets": len(kept),
        "sets_dropped": max(0, len(counts) - len(kept)),
        # The score is 1.0 for a never-seen set, 0.0 otherwise: one threshold at every sensitivity.
        "thresholds": {"low": 0.5, "medium": 0.5, "high": 0.5},
        "calibration": {"held_back_new_set_rate": new_rate, "n_normal": len(held_back)},
    }
