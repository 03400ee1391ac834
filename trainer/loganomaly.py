"""LogAnomaly (Meng et al., IJCAI'19): template semantics and template counts, next-template prediction.

Each template is a vector built from its words (`trainer.template_vectors`, fitted here on the
user's own templates: no downloaded embeddings). Two LSTMs read the same window of the previous
h templates: one over the sequence of template vectors (sequential pattern), one over the
per-position count vectors of the templates seen so far in the window (quantitative pattern).
Their last states, concatenated, predict the next template (or END). The template vectors and
the count encoding are fixed parts of the ONNX graph, so it takes a window of model tokens and
answers next-token probabilities exactly as DeepLog's does: it is served, calibrated and judged
by the same rules (top-g, the rare path, misses per session; `agent.detectors.loganomaly`).

A template born after training is judged as its nearest training template by the words they
share (the paper's template approximation), when their cosine similarity reaches
`min_similarity` and its line's level is not above the highest level that template had in
training; otherwise it is unknown, as in DeepLog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.bundle import BundleWriter
from trainer.deeplog import NextTokenOptions, fit_next_token, next_token_loss
from trainer.sequences import token_counts
from trainer.template_vectors import fit_template_vectors
from trainer.torch_base import FitConfig, SequenceTrainer, import_torch
from trainer.training_data import TrainingData


@dataclass
class LogAnomalyOptions(NextTokenOptions):
    """LogAnomaly's template vectors and its two LSTMs, on top of the next-template rules."""

    semantic_dim: int = 32  # length of word and template vectors
    co_window: int = 5  # words either side that count as a word's context
    hidden: int = 64
    layers: int = 2
    # a never-seen template is judged as its nearest training template at or above this cosine
    min_similarity: float = 0.85


def build_net(vocab_size: int, opts: LogAnomalyOptions, semantic: np.ndarray) -> Any:
    """The two-LSTM network over a window of tokens; `semantic` (tokens + END + PAD rows) is fixed."""
    torch = import_torch()
    nn = torch.nn

    class LogAnomalyNet(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("semantic", torch.as_tensor(semantic, dtype=torch.float32))
            self.sequential = nn.LSTM(semantic.shape[1], opts.hidden, num_layers=opts.layers, batch_first=True)
            self.quantitative = nn.LSTM(vocab_size, opts.hidden, num_layers=opts.layers, batch_first=True)
            self.head = nn.Linear(2 * opts.hidden, vocab_size + 1)  # tokens + END

        def logits(self, window: Any) -> Any:
            vectors = self.semantic[window]
            # counts of each token (0..V-1; END and PAD are not templates) seen up to each position
            onehot = torch.nn.functional.one_hot(window, vocab_size + 2)[:, :, :vocab_size].float()
            counts = torch.cumsum(onehot, dim=1)
            seq, _ = self.sequential(vectors)
            qua, _ = self.quantitative(counts)
            return self.head(torch.cat([seq[:, -1, :], qua[:, -1, :]], dim=-1))

        def forward(self, window: Any) -> Any:
            return torch.softmax(self.logits(window), dim=-1)

    return LogAnomalyNet()


class LogAnomalyTrainer(SequenceTrainer[LogAnomalyOptions]):
    """Fits LogAnomaly on next-token rows with the shared torch training loop."""

    name = "loganomaly"

    def __init__(self, vocab_size: int, options: LogAnomalyOptions, semantic: np.ndarray,
                 config: FitConfig | None = None) -> None:
        super().__init__(vocab_size, options, config)
        self.semantic = semantic

    def build(self) -> Any:
        """A fresh network with the fitted template vectors."""
        return build_net(self.vocab_size, self.options, self.semantic)

    def loss(self, model: Any, batch: Sequence[Any]) -> Any:
        """Weighted cross-entropy of the next token."""
        return next_token_loss(model, batch)


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: LogAnomalyOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """Fit the template vectors, then the two LSTMs; return the manifest section."""
    vocab_size = data.vocab_size
    vectors = fit_template_vectors(data.templates, token_counts(data.train_seqs), vocab_size,
                                   options.semantic_dim, options.co_window)
    words_file = f"{name}_words.npz"
    vectors.save(writer.path_for(words_file))
    # rows: the templates (UNK = zeros), END and PAD (zeros: the count LSTM tells them apart)
    semantic = np.vstack([vectors.templates, np.zeros((2, vectors.dim), dtype=np.float32)])
    trainer = LogAnomalyTrainer(vocab_size, options, semantic, fit)
    trainer.name = name
    section = fit_next_token(data, writer, name, options, trainer, "loganomaly", target_fpr)
    section["semantic"] = {"file": words_file, "dim": vectors.dim, "words": len(vectors.words),
                           "min_similarity": options.min_similarity,
                           "templates_with_text": sum(1 for t in range(1, vocab_size) if data.templates.get(t)),
                           "max_level": max_levels(data, vocab_size)}
    return section


def max_levels(data: TrainingData, vocab_size: int) -> list[int]:
    """The highest level each token was seen at in training (empty: the data has no levels). A
    never-seen template logged above its neighbour's highest level is not judged as that neighbour."""
    if data.train_levels is None:
        return []
    top = [0] * vocab_size
    for seq, levels in zip(data.train_seqs, data.train_levels, strict=True):
        for t, level in zip(seq, levels, strict=True):
            if 0 <= t < vocab_size and level > top[t]:
                top[t] = int(level)
    return top
