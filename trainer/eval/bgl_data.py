"""Labelled BGL files as the BGL evaluations read them: label column stripped, duplicates kept once.

Shared by `trainer.eval.bgl` (detectors and ensemble) and `trainer.eval.logbert` (the LogBERT
ablation), so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.parsing import strip_bgl_label
from agent.reader import iter_records
from agent.types import Record


@dataclass(frozen=True)
class Labelled:
    """BGL records with the label column stripped, and whether each was an alert."""

    records: list[Record]
    labels: np.ndarray  # True = alert


def read_labelled(paths: Sequence[Path], seen: set[str] | None = None) -> Labelled:
    """Labelled BGL lines with the label column stripped; duplicate lines (the samples overlap a
    little) are kept once."""
    records: list[Record] = []
    labels: list[bool] = []
    seen = set() if seen is None else seen
    for path in paths:
        for r in iter_records(path):
            if not r.line.strip() or r.line in seen:
                continue
            seen.add(r.line)
            label, rest = strip_bgl_label(r.line)
            records.append(Record(rest, path.name))
            labels.append(label != "-")
    return Labelled(records, np.array(labels, dtype=bool))
