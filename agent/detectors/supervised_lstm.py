"""The supervised sequence classifier (seed 003) served from ONNX: how likely is this line an anomaly?

Trained only when the user has labels (`logdetect train --labels`): an LSTM over learned
template embeddings (and level embeddings) reads the window of `window` model tokens ending at a
line, left-padded like the LSTM-AE's, and its ONNX graph outputs the probability that the line
ending the window is an anomaly. Serving is one call per micro-batch of distinct windows through
the same window scorer as the LSTM-AE (`agent.detectors.lstm_ae.LstmAeScorer`: windows of tokens
and levels in, one value per window out; here the value is a probability, not an error).

A line's score is the probability of the window ending at it; a session's score is the largest
over its windows. Thresholds follow the contract of every model: quantiles of the scores of
held-back normal lines of the labelled training data (`trainer/supervised_lstm.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.detectors.lstm_ae import Window, WindowDetector
from agent.types import DetectorScore

TOKENS = "tokens"
LEVELS = "levels"
OUTPUT = "probability"


class SupervisedLstmDetector(WindowDetector):
    """Lines keyed by the window ending at them; sessions by their most anomalous window."""

    def score_keys(self, keys: list[Window]) -> list[DetectorScore]:
        """Each window's anomaly probability against the line threshold."""
        return [DetectorScore(self.name, p, self.threshold, p > self.threshold,
                              (("probability", round(p, 4)), ("window", self.scorer.window)))
                for p in self.scorer.errors(keys)]

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """The session's most anomalous window, naming the position it ends at."""
        windows = self.scorer.session_windows(tokens, levels)
        probs = self.scorer.errors(windows)
        worst = int(np.argmax(probs))
        p = probs[worst]
        return DetectorScore(self.name, p, self.session_threshold, p > self.session_threshold,
                             (("probability", round(p, 4)), ("position", worst), ("windows", len(windows))))
