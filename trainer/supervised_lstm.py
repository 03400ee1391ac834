"""The supervised sequence classifier of seed 003: an LSTM over learned template embeddings.

Trained only when `train` is given labels (`trainer/labels.py`). Each training row is the window
of `window` model tokens (and levels) ending at a line, left-padded like the LSTM-AE's, and its
target is that line's label: the model learns the probability that the line ending a window is
an anomaly, from what came before it as well as from the line itself. Identical (window, label)
rows are merged with their count as weight, and the two classes are balanced (anomalies are
rare); the loss is the weighted binary cross-entropy.

The exported ONNX graph outputs the probability per window. Thresholds start like every model's:
quantiles of its scores on the held-back normal lines of the labelled training data (the first
half of the held-back part), at each level's target false-positive rate. The held-back labelled
anomalies of that half then raise each level's threshold half-way towards the lowest anomaly it
catches (`raised`): no held-back anomaly is lost, false alarms can only drop. The section
records both, and how many held-back anomalies each level catches. Whether it votes is judged
with the other learned detectors on the second half (`trainer/membership.py`, real labelled
anomalies there).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.bundle import BundleWriter
from agent.detectors.lstm_ae import LEVEL_COUNT, LstmAeScorer, window_ending
from agent.detectors.supervised_lstm import LEVELS, OUTPUT, TOKENS
from agent.errors import InputError
from agent.onnx_session import OnnxModel, RuntimeOptions
from trainer.calibrate import calibrate
from trainer.export import OPSET, export_windows
from trainer.sequences import spread_rows
from trainer.torch_base import FitConfig, SequenceTrainer, import_torch
from trainer.training_data import LabelledSequences, TrainingData

MAX_CLASS_WEIGHT = 100.0  # anomalies weigh at most this many times a normal window


@dataclass
class SupervisedLstmOptions:
    """The classifier's architecture (seed 003: embeddings, one LSTM layer, a binary head)."""

    window: int = 16
    embed_dim: int = 16
    level_dim: int = 4
    hidden: int = 64
    layers: int = 1


def build_net(vocab_size: int, opts: SupervisedLstmOptions) -> Any:
    """The LSTM classifier over template and level embeddings (torch imported here)."""
    torch = import_torch()
    nn = torch.nn

    class SupervisedLstm(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab_size + 2, opts.embed_dim)
            self.level_embed = nn.Embedding(LEVEL_COUNT, opts.level_dim)
            self.lstm = nn.LSTM(opts.embed_dim + opts.level_dim, opts.hidden, num_layers=opts.layers,
                                batch_first=True)
            self.head = nn.Linear(opts.hidden, 1)

        def logit(self, tokens: Any, levels: Any) -> Any:
            """The anomaly logit of the line ending each window (the last position's state)."""
            h, _ = self.lstm(torch.cat([self.embed(tokens), self.level_embed(levels)], dim=-1))
            return self.head(h[:, -1, :]).squeeze(-1)

        def forward(self, tokens: Any, levels: Any) -> Any:
            return torch.sigmoid(self.logit(tokens, levels))

    return SupervisedLstm()


class SupervisedLstmTrainer(SequenceTrainer[SupervisedLstmOptions]):
    """Fits the classifier with the shared torch training loop."""

    name = "supervised_lstm"
    net = staticmethod(build_net)

    def loss(self, model: Any, batch: Sequence[Any]) -> Any:
        """Weighted binary cross-entropy of the windows' labels (weights: count × class balance)."""
        torch = import_torch()
        tokens, levels, target, weight = batch
        bce = torch.nn.functional.binary_cross_entropy_with_logits(model.logit(tokens, levels), target,
                                                                    reduction="none")
        return (bce * weight).sum() / weight.sum()


def labelled_rows(
    seqs: Sequence[Sequence[int]], levels: Sequence[Sequence[int]], flags: Sequence[Sequence[bool]], window: int,
    vocab_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training rows: (tokens, levels, label, count) for the window ending at every line, merged
    when the window and the label are the same."""
    pad = vocab_size + 1
    counts: Counter[tuple[tuple[tuple[int, ...], tuple[int, ...]], bool]] = Counter()
    for s, lv, fl in zip(seqs, levels, flags, strict=True):
        for i in range(len(s)):
            counts[(window_ending(s, lv, i + 1, window, pad), bool(fl[i]))] += 1
    if not counts:
        raise InputError("no labelled training windows: every session is empty")
    items = sorted(counts.items())
    toks = np.asarray([w[0] for (w, _), _ in items], dtype=np.int64).reshape(len(items), window)
    lvls = np.asarray([w[1] for (w, _), _ in items], dtype=np.int64).reshape(len(items), window)
    y = np.asarray([float(f) for (_, f), _ in items], dtype=np.float32)
    c = np.asarray([n for _, n in items], dtype=np.float32)
    return toks, lvls, y, c


def class_weights(y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-row weight that balances anomalous and normal lines (anomalies capped at MAX_CLASS_WEIGHT)."""
    pos = float(counts[y > 0.5].sum())
    neg = float(counts[y <= 0.5].sum())
    up = min(neg / pos, MAX_CLASS_WEIGHT) if pos > 0 else 1.0
    return np.where(y > 0.5, max(up, 1.0), 1.0).astype(np.float32)


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: SupervisedLstmOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """Train the classifier on the labelled lines and return its manifest section."""
    lab, vocab_size = data.labelled, data.vocab_size
    if lab is None or lab.anomalies == 0:
        raise InputError(f"{name}: needs training lines labelled as anomalies (train --labels)")
    if vocab_size < 2:
        raise InputError(f"{name}: a vocabulary of {vocab_size} tokens is too small to learn sequences")
    toks, lvls, y, counts = labelled_rows(lab.train_seqs, lab.train_levels, lab.train_flags, options.window,
                                          vocab_size)
    trainer = SupervisedLstmTrainer(vocab_size, options, fit)
    trainer.name = name
    index, weight = spread_rows(counts)
    weight = weight * class_weights(y, counts)[index]
    hist = trainer.fit(toks[index], lvls[index], y[index], weight)

    onnx_path = writer.path_for(f"{name}.onnx")
    parity = export_windows(trainer.model, trainer.model, toks, lvls, onnx_path, [TOKENS, LEVELS], [OUTPUT], fit.seed)
    trainer.save_curve(writer.path_for(f"{name}_curve.png"))
    section: dict[str, Any] = {
        "type": "supervised_lstm",
        "file": f"{name}.onnx",
        "curve": f"{name}_curve.png",
        "inputs": [TOKENS, LEVELS],
        "output": OUTPUT,
        "opset": OPSET,
        "window": options.window,
        "vocab_size": vocab_size,
        "pad_token": vocab_size + 1,
        "options": asdict(options),
        "training": {"rows": len(toks), "windows": float(counts.sum()),
                     "anomalous_lines": float(counts[y > 0.5].sum()), **hist.summary()},
        "parity_max_abs_diff": parity,
    }
    _calibrate(section, LstmAeScorer(OnnxModel(onnx_path, RuntimeOptions(device="cpu")), section, name), lab,
               target_fpr)
    return section


def _calibrate(section: dict[str, Any], scorer: LstmAeScorer, lab: LabelledSequences,
               target_fpr: float | None) -> None:
    """Thresholds at the target rates on held-back normal lines (training lines when nothing is
    held back), and what each level catches of the held-back labelled anomalies."""
    on_val = any(len(s) for s in lab.val_seqs)
    seqs, levels, flags = (lab.val_seqs, lab.val_levels, lab.val_flags) if on_val else (
        lab.train_seqs, lab.train_levels, lab.train_flags)
    normal: list[float] = []
    anomalous: list[float] = []
    sessions: list[float] = []
    for s, lv, fl in zip(seqs, levels, flags, strict=True):
        if not len(s):
            continue
        probs = scorer.errors(scorer.session_windows(s, lv))
        for p, f in zip(probs, fl, strict=True):
            (anomalous if f else normal).append(p)
        if not any(fl):
            sessions.append(max(probs))
    if not normal:
        raise InputError("supervised_lstm: no normal line to set thresholds on")
    line_cal = calibrate(np.asarray(normal), target_fpr)
    a = np.asarray(anomalous)
    # a probability never exceeds 1: a level whose extrapolated tail lies beyond never fires
    at_rate = {level: min(t, 1.0) for level, t in line_cal["thresholds"].items()}
    section["thresholds"] = {level: raised(t, a) for level, t in at_rate.items()}
    section["calibration"] = {**line_cal["calibration"], "target_fpr": line_cal["target_fpr"], "level": "line",
                              "on": "validation" if on_val else "training", "at_target_rate": at_rate}
    if len(sessions) >= 2:
        session_cal = calibrate(np.asarray(sessions), target_fpr)
        section["session_thresholds"] = {level: min(t, 1.0) for level, t in session_cal["thresholds"].items()}
        section["session_calibration"] = {**session_cal["calibration"], "level": "session"}
    section["held_back_anomalies"] = {
        "lines": len(a), "normal_lines": len(normal),
        "caught": {level: int((a > t).sum()) for level, t in section["thresholds"].items()},
    }


def raised(threshold: float, anomalous: np.ndarray) -> float:
    """A level's threshold raised, by the held-back labelled anomalies, half-way towards the
    lowest of them that it catches: up to there a higher threshold loses no held-back anomaly and
    only drops false alarms, and half-way keeps a margin below the anomalies. Unchanged when it
    catches none. Monotone in `threshold`, so the levels keep their order."""
    above = anomalous[anomalous > threshold]
    return float((threshold + above.min()) / 2) if len(above) else threshold
