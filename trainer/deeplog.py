"""DeepLog (Du et al., CCS'17): an LSTM that predicts the next template from the previous h.

Embedding → 2-layer LSTM → linear → softmax over the model tokens plus END (the session closes
here), trained on every position of every normal session (left-padded, see
`agent.detectors.deeplog`). Seed 000's frequent/rare split: a line whose template, or whose
predecessor's template, has a share of the training events below `rare_fraction` is judged by
a lookup of the consecutive pairs seen in training instead of the softmax, which ranks what it
saw a handful of times badly.

`fit_and_export` trains, exports ONNX (dynamic batch axis), checks torch/ONNX Runtime parity,
draws the training curve and calibrates the session thresholds on held-back normal sessions
through the serving code itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.bundle import BundleWriter
from agent.detectors.deeplog import INPUT, OUTPUT, DeepLogScorer
from agent.errors import InputError
from agent.onnx_session import OnnxModel, RuntimeOptions
from trainer.calibrate import calibrate
from trainer.export import OPSET, check_parity, export_torch, sample_rows
from trainer.sequences import next_token_rows, rare_bigrams, spread_rows, token_counts
from trainer.torch_base import FitConfig, SequenceTrainer, import_torch
from trainer.training_data import TrainingData


@dataclass
class NextTokenOptions:
    """The rules of a next-template model (DeepLog, LogAnomaly): window h, top-g, rare-template share."""

    window: int = 10  # h: previous templates the model sees
    top_g: int = 9  # a template outside the g most likely next ones is a miss
    rare_fraction: float = 0.001  # below this share of training events a template is "rare"
    predict_end: bool = True  # also predict the end of a session (judged by score_session)
    end_top_g: int | None = None  # END is a miss outside the top end_top_g (None: top_g)
    # besides rare lines, the rare path judges: "previous" (lines after a rare one), "window"
    # (lines with a rare one in their window) or "none"
    rare_context: str = "previous"
    session_score: str = "misses"  # "misses" (count) or "fraction" (per position)
    min_session_threshold: float = 0.5  # never below "at least one miss"


@dataclass
class DeepLogOptions(NextTokenOptions):
    """DeepLog's architecture on top of its rules."""

    embed_dim: int = 16
    hidden: int = 64
    layers: int = 2


def build_net(vocab_size: int, opts: DeepLogOptions) -> Any:
    """The DeepLog network: embedding, LSTM, next-token logits (torch imported here)."""
    torch = import_torch()
    nn = torch.nn

    class DeepLogNet(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab_size + 2, opts.embed_dim)  # + END, PAD
            self.lstm = nn.LSTM(opts.embed_dim, opts.hidden, num_layers=opts.layers, batch_first=True)
            self.head = nn.Linear(opts.hidden, vocab_size + 1)  # tokens + END

        def logits(self, window: Any) -> Any:
            out, _ = self.lstm(self.embed(window))
            return self.head(out[:, -1, :])

        def forward(self, window: Any) -> Any:
            return torch.softmax(self.logits(window), dim=-1)

    return DeepLogNet()


class DeepLogTrainer(SequenceTrainer[DeepLogOptions]):
    """Fits DeepLog on next-token rows with the shared torch training loop."""

    name = "deeplog"
    net = staticmethod(build_net)

    def loss(self, model: Any, batch: Sequence[Any]) -> Any:
        """Weighted cross-entropy of the next token."""
        return next_token_loss(model, batch)


def next_token_loss(model: Any, batch: Sequence[Any]) -> Any:
    """Weighted cross-entropy of the next token (weights: how often each distinct row occurs);
    `model.logits(window)` gives the next-token logits (DeepLog, LogAnomaly)."""
    torch = import_torch()
    x, y, weight = batch
    nll = torch.nn.functional.cross_entropy(model.logits(x), y, reduction="none")
    return (nll * weight).sum() / weight.sum()


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: DeepLogOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """Train DeepLog on normal sessions of model tokens and return its manifest section."""
    trainer = DeepLogTrainer(data.vocab_size, options, fit)
    trainer.name = name
    return fit_next_token(data, writer, name, options, trainer, "deeplog", target_fpr)


def fit_next_token(
    data: TrainingData, writer: BundleWriter, name: str, options: NextTokenOptions, trainer: SequenceTrainer[Any],
    model_type: str, target_fpr: float | None,
) -> dict[str, Any]:
    """Fit a next-template model (window of tokens in, probabilities of the next token and END
    out), export it with the parity check, and calibrate its thresholds through `DeepLogScorer`
    on the held-back sessions: the one recipe of DeepLog and LogAnomaly."""
    train_seqs, val_seqs, vocab_size = data.train_seqs, data.val_seqs, data.vocab_size
    if vocab_size < 2:
        raise InputError(f"{name}: a vocabulary of {vocab_size} tokens is too small to learn sequences")
    counts = token_counts(train_seqs)
    total = sum(counts.values())
    if total == 0:
        raise InputError(f"{name}: every training session is empty")
    rare = {t for t in range(1, vocab_size) if counts.get(t, 0) < options.rare_fraction * total}
    x, y, c = next_token_rows(train_seqs, options.window, vocab_size, options.predict_end)
    index, weight = spread_rows(c)
    hist = trainer.fit(x[index], y[index], weight)

    onnx_path = writer.path_for(f"{name}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the LSTM batch-size note: parity below checks it
        export_torch(trainer.model, (import_torch().as_tensor(x[:2]),), onnx_path, [INPUT], [OUTPUT])
    rows = sample_rows(len(x), 512, trainer.config.seed)
    parity = max(
        check_parity(trainer.model, onnx_path, {INPUT: x[rows]}, OUTPUT),
        check_parity(trainer.model, onnx_path, {INPUT: x[rows[:1]]}, OUTPUT),
    )
    trainer.save_curve(writer.path_for(f"{name}_curve.png"))

    line_threshold = options.top_g - 0.5
    section: dict[str, Any] = {
        "type": model_type,
        "file": f"{name}.onnx",
        "curve": f"{name}_curve.png",
        "input": INPUT,
        "output": OUTPUT,
        "inputs": [INPUT],
        "outputs": [OUTPUT],
        "opset": OPSET,
        "window": options.window,
        "top_g": options.top_g,
        "vocab_size": vocab_size,
        "end_token": vocab_size,
        "pad_token": vocab_size + 1,
        "predict_end": options.predict_end,
        "end_top_g": options.end_top_g if options.end_top_g is not None else options.top_g,
        "session_score": options.session_score,
        "rare": {
            "fraction": options.rare_fraction,
            "context": options.rare_context,
            "tokens": sorted(rare),
            "bigrams": rare_bigrams(train_seqs, vocab_size, rare, options.predict_end),
        },
        "thresholds": {"low": line_threshold, "medium": line_threshold, "high": line_threshold},
        "options": asdict(options),
        "training": {"rows": len(x), "windows": float(c.sum()), **hist.summary()},
        "parity_max_abs_diff": parity,
    }
    scorer = DeepLogScorer(OnnxModel(onnx_path, RuntimeOptions(device="cpu")), section, name)
    calib_seqs = val_seqs if val_seqs else train_seqs
    scores = np.asarray([scorer.session_score(s, options.session_score) for s in calib_seqs])
    # Line thresholds: the rank of each held-back normal line (misses of the rare and unknown
    # paths rank last), so that a sensitivity's share of normal lines fires; never below DeepLog's
    # top_g rule. Sessions (above) keep top_g: their threshold is the number of misses.
    line_ranks = np.asarray([float(j.rank) for s in calib_seqs for j in scorer.judge_session(s) if j.path != "end"])
    line_cal = calibrate(line_ranks, target_fpr)
    section["thresholds"] = {k: max(float(v), line_threshold) for k, v in line_cal["thresholds"].items()}
    section["line_calibration"] = line_cal["calibration"]
    cal = calibrate(scores, target_fpr)
    floor = options.min_session_threshold
    section["session_thresholds"] = {k: max(float(v), floor) for k, v in cal["thresholds"].items()}
    section["calibration"] = {**cal["calibration"], "target_fpr": cal["target_fpr"],
                              "level": "session", "on": "validation" if val_seqs else "training"}
    return section
