"""The LSTM autoencoder of seed 002: LSTM(64) → LSTM(32) → latent → LSTM(32) → LSTM(64).

Each position's input is a learned template embedding concatenated with a level embedding.
The decoder rebuilds every position's token and level as classes (a cross-entropy
reconstruction): rebuilding the learned embeddings themselves with MSE would let the
embeddings collapse to a point and make every error zero. Training minimises the mean token +
level NLL over the non-pad positions; the exported graph outputs one error per window, by
default the worst position's NLL (a mean over 20 positions dilutes a single odd line); see
`agent.detectors.lstm_ae`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.bundle import BundleWriter
from agent.detectors.lstm_ae import LEVEL_COUNT, LEVELS, OUTPUT, TOKENS, WORST, LstmAeScorer
from agent.errors import InputError
from agent.onnx_session import OnnxModel, RuntimeOptions
from trainer.calibrate import calibrate
from trainer.export import OPSET, export_windows
from trainer.sequences import reconstruction_rows, spread_rows
from trainer.torch_base import FitConfig, SequenceTrainer, import_torch
from trainer.training_data import TrainingData


@dataclass
class LstmAeOptions:
    """The autoencoder's architecture (seed 002's 64-32-latent-32-64) and served score."""

    window: int = 20
    embed_dim: int = 16
    level_dim: int = 4
    hidden: int = 64  # outer LSTMs
    latent: int = 32  # inner LSTMs and the latent code
    score: str = "max"  # window error served: "max" (worst position) or "mean" NLL over positions


def build_net(vocab_size: int, opts: LstmAeOptions) -> Any:
    """The LSTM autoencoder that rebuilds each position's template and level (torch imported here)."""
    torch = import_torch()
    nn = torch.nn
    pad = vocab_size + 1

    class LstmAutoencoder(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab_size + 2, opts.embed_dim)
            self.level_embed = nn.Embedding(LEVEL_COUNT, opts.level_dim)
            self.enc1 = nn.LSTM(opts.embed_dim + opts.level_dim, opts.hidden, batch_first=True)
            self.enc2 = nn.LSTM(opts.hidden, opts.latent, batch_first=True)
            self.dec1 = nn.LSTM(opts.latent, opts.latent, batch_first=True)
            self.dec2 = nn.LSTM(opts.latent, opts.hidden, batch_first=True)
            self.token_head = nn.Linear(opts.hidden, vocab_size + 2)
            self.level_head = nn.Linear(opts.hidden, LEVEL_COUNT)

        def forward(self, tokens: Any, levels: Any) -> Any:
            per_position, mask = self.per_position(tokens, levels)
            if self.training or opts.score == "mean":
                return per_position.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            # serving: the worst-rebuilt position, so one odd line is not averaged away
            return per_position.max(dim=1).values

        def per_position(self, tokens: Any, levels: Any) -> tuple[Any, Any]:
            """Each position's negative log-likelihood (0 at padding), and the padding mask."""
            x = torch.cat([self.embed(tokens), self.level_embed(levels)], dim=-1)
            h, _ = self.enc1(x)
            h, _ = self.enc2(h)
            latent = h[:, -1:, :]  # the code: last state of the inner encoder
            d, _ = self.dec1(latent.expand(-1, opts.window, -1))
            d, _ = self.dec2(d)
            tok_nll = -torch.log_softmax(self.token_head(d), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            lvl_nll = -torch.log_softmax(self.level_head(d), dim=-1).gather(-1, levels.unsqueeze(-1)).squeeze(-1)
            mask = (tokens != pad).to(tok_nll.dtype)
            return (tok_nll + lvl_nll) * mask, mask

    return LstmAutoencoder()


def served(net: Any) -> Any:
    """The exported graph: the window's error and the position rebuilt worst (which line of
    the window the explanation names)."""
    torch = import_torch()

    class Served(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, tokens: Any, levels: Any) -> Any:
            per_position, _ = self.net.per_position(tokens, levels)
            return self.net(tokens, levels), per_position.argmax(dim=1)

    return Served()


class LstmAeTrainer(SequenceTrainer[LstmAeOptions]):
    """Fits the LSTM autoencoder on windows with the shared torch training loop."""

    name = "lstm_ae"
    net = staticmethod(build_net)

    def loss(self, model: Any, batch: Sequence[Any]) -> Any:
        """Weighted mean reconstruction loss of the windows (weights: how often each distinct window occurs)."""
        tokens, levels, weight = batch
        return (model(tokens, levels) * weight).sum() / weight.sum()


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: LstmAeOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """Train the autoencoder on normal sessions of model tokens and return its manifest section."""
    train_seqs, train_levels, vocab_size = data.train_seqs, data.train_levels, data.vocab_size
    val_seqs, val_levels = data.val_seqs, data.val_levels
    if vocab_size < 2:
        raise InputError(f"{name}: a vocabulary of {vocab_size} tokens is too small to learn sequences")
    toks, lvls, counts = reconstruction_rows(train_seqs, train_levels, options.window, vocab_size)
    trainer = LstmAeTrainer(vocab_size, options, fit)
    trainer.name = name
    index, weight = spread_rows(counts)
    hist = trainer.fit(toks[index], lvls[index], weight)

    onnx_path = writer.path_for(f"{name}.onnx")
    parity = export_windows(served(trainer.model), trainer.model, toks, lvls, onnx_path, [TOKENS, LEVELS],
                            [OUTPUT, WORST], fit.seed)
    trainer.save_curve(writer.path_for(f"{name}_curve.png"))

    section: dict[str, Any] = {
        "type": "lstm_ae",
        "file": f"{name}.onnx",
        "curve": f"{name}_curve.png",
        "inputs": [TOKENS, LEVELS],
        "output": OUTPUT,
        "outputs": [OUTPUT, WORST],
        "worst_output": WORST,
        "opset": OPSET,
        "window": options.window,
        "vocab_size": vocab_size,
        "pad_token": vocab_size + 1,
        "options": asdict(options),
        "training": {"rows": len(toks), "windows": float(counts.sum()), **hist.summary()},
        "parity_max_abs_diff": parity,
    }
    scorer = LstmAeScorer(OnnxModel(onnx_path, RuntimeOptions(device="cpu")), section, name)
    calib_seqs, calib_levels = (val_seqs, val_levels) if val_seqs else (train_seqs, train_levels)
    line_scores: list[float] = []
    session_scores: list[float] = []
    for k, s in enumerate(calib_seqs):
        errors = scorer.errors(scorer.session_windows(s, calib_levels[k] if calib_levels else None))
        line_scores.extend(errors)
        session_scores.append(max(errors))
    line_cal = calibrate(np.asarray(line_scores), target_fpr)
    session_cal = calibrate(np.asarray(session_scores), target_fpr)
    section["thresholds"] = line_cal["thresholds"]
    section["session_thresholds"] = session_cal["thresholds"]
    section["calibration"] = {**line_cal["calibration"], "target_fpr": line_cal["target_fpr"], "level": "line",
                              "on": "validation" if val_seqs else "training"}
    section["session_calibration"] = {**session_cal["calibration"], "level": "session"}
    return section
