"""One base class for the torch models (after PyOD's `base_dl`).

`fit()` is shared: seeding, device choice, batching, a validation split with early stopping,
a progress bar on stderr, and a training-curve PNG. A model only says how it is built
(`build`), what one batch's loss is (`loss`), and how it is exported (`export_onnx`).
"""

from __future__ import annotations

import math
import random
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import structlog

log = structlog.get_logger(__name__)


def import_torch() -> Any:
    """The torch module, or a DependencyError naming the `train` extra."""
    try:
        import torch
    except ImportError:
        from agent.errors import DependencyError

        raise DependencyError(
            "training needs torch: pip install 'logdetect[train]' (torch==2.13.0 CPU wheel)"
        ) from None
    return torch


def choose_device(device: str) -> str:
    """`auto` → cuda when available, else cpu; `cuda` without CUDA → cpu with one warning."""
    torch = import_torch()
    if device not in ("auto", "cpu", "cuda"):
        from agent.errors import UserError

        raise UserError(f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        log.warning("cuda_unavailable_training_on_cpu")
    return "cpu"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a training run repeats."""
    torch = import_torch()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class FitConfig:
    """Training-loop settings shared by the torch models: epochs, batches, early stop, budget."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    val_fraction: float = 0.1
    patience: int = 3
    seed: int = 42
    device: str = "auto"
    progress: bool = True
    max_seconds: float | None = None  # a wall-clock budget; training stops cleanly when spent


@dataclass
class FitHistory:
    """What a training run did: losses per epoch, the best epoch, time and device."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    device: str = "cpu"

    def summary(self) -> dict[str, Any]:
        """The manifest's record of a training run (epochs counted from 1)."""
        return {
            "epochs": len(self.train_loss),
            "best_epoch": self.best_epoch + 1,
            "seconds": round(self.seconds, 2),
            "device": self.device,
            "final_val_loss": self.val_loss[-1] if self.val_loss else None,
        }


class TorchDetector(ABC):
    """Base of DeepLog, the LSTM autoencoder and LogBERT.

    Subclasses implement `build()` (returns the nn.Module) and `loss(model, batch)`
    (a scalar tensor for one batch of the arrays given to `fit`). `fit` keeps the
    best-on-validation weights.
    """

    name: str = "torch"

    def __init__(self, config: FitConfig | None = None) -> None:
        self.config = config or FitConfig()
        self.model: Any = None
        self.history = FitHistory()

    @abstractmethod
    def build(self) -> Any:
        """A fresh, untrained network."""

    @abstractmethod
    def loss(self, model: Any, batch: Sequence[Any]) -> Any:
        """The training loss of one batch."""

    def fit(self, *arrays: np.ndarray) -> FitHistory:
        """Train on the arrays with early stopping on a validation split; keep the best weights."""
        torch = import_torch()
        cfg = self.config
        seed_everything(cfg.seed)
        device = choose_device(cfg.device)
        n = len(arrays[0])
        if n == 0:
            from agent.errors import InputError

            raise InputError(f"{self.name}: no training samples")
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(n)
        n_val = int(n * cfg.val_fraction) if n >= 20 else 0
        val_idx, train_idx = order[:n_val], order[n_val:]
        tensors = [torch.as_tensor(a) for a in arrays]
        self.model = self.build().to(device)
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        best = math.inf
        best_state: dict[str, Any] | None = None
        bad_epochs = 0
        started = time.monotonic()
        hist = FitHistory(device=device)
        out_of_time = False
        for epoch in range(cfg.epochs):
            self.model.train()
            perm = torch.as_tensor(rng.permutation(train_idx))
            total, count = 0.0, 0
            batches = range(0, len(perm), cfg.batch_size)
            for bi, start in enumerate(batches):
                idx = perm[start : start + cfg.batch_size]
                batch = [t[idx].to(device) for t in tensors]
                opt.zero_grad()
                loss = self.loss(self.model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                if cfg.progress:
                    _progress(self.name, epoch + 1, cfg.epochs, bi + 1, len(batches), total / max(count, 1))
                if cfg.max_seconds is not None and time.monotonic() - started > cfg.max_seconds:
                    out_of_time = True  # checked per batch: one epoch on a big input can outlast the budget
                    break
            train_loss = total / max(count, 1)
            val_loss = self._evaluate(tensors, val_idx, device) if n_val else train_loss
            hist.train_loss.append(train_loss)
            hist.val_loss.append(val_loss)
            if val_loss < best - 1e-6:
                best, bad_epochs, hist.best_epoch = val_loss, 0, epoch
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                bad_epochs += 1
            if cfg.progress:
                sys.stderr.write(f"  val {val_loss:.4f}\n")
            if bad_epochs >= cfg.patience:
                break
            if out_of_time:
                log.info("training_time_budget_spent", model=self.name, epochs=epoch + 1)
                if cfg.progress:
                    sys.stderr.write(f"  (time budget of {cfg.max_seconds:.0f}s spent)\n")
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.to("cpu").eval()
        hist.seconds = time.monotonic() - started
        self.history = hist
        return hist

    def _evaluate(self, tensors: list[Any], idx: np.ndarray, device: str) -> float:
        torch = import_torch()
        self.model.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(idx), self.config.batch_size):
                sel = torch.as_tensor(idx[start : start + self.config.batch_size])
                batch = [t[sel].to(device) for t in tensors]
                total += float(self.loss(self.model, batch)) * len(sel)
        return total / max(len(idx), 1)

    def save_curve(self, path: Path) -> None:
        """Training and validation loss per epoch as a PNG (skipped without matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
        epochs = range(1, len(self.history.train_loss) + 1)
        ax.plot(epochs, self.history.train_loss, label="train")
        ax.plot(epochs, self.history.val_loss, label="validation")
        ax.axvline(self.history.best_epoch + 1, color="grey", linestyle=":", label="kept")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(f"{self.name} training curve")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


OptionsT = TypeVar("OptionsT")


class SequenceTrainer(TorchDetector, Generic[OptionsT]):
    """A torch model over the model-token vocabulary, built by `net(vocab_size, options)`."""

    net: Any  # staticmethod(vocab_size, options) -> nn.Module

    def __init__(self, vocab_size: int, options: OptionsT, config: FitConfig | None = None) -> None:
        super().__init__(config)
        self.vocab_size = vocab_size
        self.options = options

    def build(self) -> Any:
        """A fresh network for this vocabulary and these options."""
        return self.net(self.vocab_size, self.options)


# Not on a terminal (logs, CI, a pipe): a progress line at most this often within an epoch.
PROGRESS_EVERY_SECONDS = 10.0
_last_line = [0.0]


def _progress(name: str, epoch: int, epochs: int, batch: int, batches: int, loss: float) -> None:
    if not sys.stderr.isatty() and batch != batches:
        # In logs and CI: no redraw per batch, but a line every few seconds of a long epoch.
        now = time.monotonic()
        if batch == 1:
            _last_line[0] = now
        elif now - _last_line[0] >= PROGRESS_EVERY_SECONDS:
            _last_line[0] = now
            sys.stderr.write(f"{name} epoch {epoch}/{epochs}: batch {batch}/{batches}, loss {loss:.4f}\n")
            sys.stderr.flush()
        return
    width = 24
    done = int(width * batch / max(batches, 1))
    bar = "█" * done + "·" * (width - done)
    sys.stderr.write(f"\r{name} epoch {epoch}/{epochs} [{bar}] loss {loss:.4f}")
    if batch == batches:
        sys.stderr.write("")
    sys.stderr.flush()
