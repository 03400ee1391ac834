"""LogBERT with a severity embedding (LogBERT, arXiv 2103.04475; seed 000's extension).

Architecture (seed 000): each position's template embedding is concatenated with the embedding
of its severity (`agent.types.Level`; the neutral `Level.UNKNOWN` for formats without a level),
a feed-forward layer fuses the two, then a small pre-norm transformer encoder reads the window
with a DIST token in front. Two objectives:

* masked log-key prediction (MLKP): a random `train_mask_ratio` of positions is replaced by MASK
  and the head predicts their templates. A masked position keeps its severity visible: the model
  learns which template fits a place *given* its severity, which is the seed's whole point.
* volume of hypersphere (VHM): the DIST output is pulled towards a centre (a running mean during
  training; recomputed exactly over the training windows at the end and shipped in the manifest).

`use_severity=False` builds the same network without the severity input (the ablation).

Token layout: 0 = UNK, 1..vocab_size-1 = training templates, then PAD, MASK, DIST. The encoder is
written out (not `nn.TransformerEncoder`) because that module's attention bakes the traced batch
and sequence sizes into the legacy ONNX export, which breaks dynamic axes.

torch is imported inside functions only: importing this module never needs torch.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agent.bundle import BundleWriter
from agent.detectors.logbert import (
    N_SEVERITY,
    NEUTRAL_SEVERITY,
    OUTPUTS,
    LogBertLayout,
    LogBertScorer,
    Window,
    WindowScore,
    build_batch,
    sanitise,
    split_window,
)
from agent.errors import InputError, ModelError
from agent.onnx_session import OnnxModel, RuntimeOptions
from trainer.calibrate import calibrate
from trainer.export import export_torch, max_abs_diff, onnx_outputs, require_parity
from trainer.torch_base import FitConfig, TorchDetector, import_torch
from trainer.training_data import TrainingData

log = structlog.get_logger(__name__)


@dataclass
class LogBertOptions:
    """LogBERT's architecture, masking and training settings."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    ff: int = 128
    severity_dim: int = 16
    dropout: float = 0.1
    max_len: int = 64  # positions per window, the DIST token not counted
    train_mask_ratio: float = 0.3
    mask_variants: int = 4  # serving: each variant masks 1/mask_variants of the positions
    top_k: int = 6  # LogBERT's "num candidates" on HDFS
    use_severity: bool = True
    vhm_weight: float = 0.1
    centre_momentum: float = 0.99
    rare_min_count: int = 10  # templates seen fewer times in training are "rare" (seed 000)
    rare_fraction: float = 0.5  # windows with at least this share of rare templates take the rare path
    score_every_lines: int = 16
    unknown_fires: bool = True  # a window with a template never seen in training fires
    parity_windows: int = 64


def _build_module(opts: LogBertOptions, vocab_size: int) -> Any:
    torch = import_torch()
    nn = torch.nn
    layout = layout_of(opts, vocab_size)

    class EncoderLayer(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.heads = opts.heads
            self.head_dim = opts.hidden // opts.heads
            self.qkv = nn.Linear(opts.hidden, 3 * opts.hidden)
            self.out = nn.Linear(opts.hidden, opts.hidden)
            self.norm1 = nn.LayerNorm(opts.hidden)
            self.norm2 = nn.LayerNorm(opts.hidden)
            self.ff = nn.Sequential(
                nn.Linear(opts.hidden, opts.ff),
                nn.GELU(),
                nn.Dropout(opts.dropout),
                nn.Linear(opts.ff, opts.hidden),
            )
            self.drop = nn.Dropout(opts.dropout)

        def forward(self, x: Any, bias: Any) -> Any:
            b, n, h = x.shape[0], x.shape[1], x.shape[2]
            q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
            q = q.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
            k = k.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
            v = v.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
            logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            att = torch.softmax(logits + bias, dim=-1)
            y = torch.matmul(self.drop(att), v).transpose(1, 2).reshape(b, n, h)
            x = x + self.drop(self.out(y))
            return x + self.drop(self.ff(self.norm2(x)))

    class LogBertModule(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.use_severity = opts.use_severity
            self.token_emb = nn.Embedding(layout.n_tokens, opts.hidden)
            width = opts.hidden
            if opts.use_severity:
                self.severity_emb = nn.Embedding(N_SEVERITY, opts.severity_dim)
                width += opts.severity_dim
            self.fuse = nn.Sequential(nn.Linear(width, opts.hidden), nn.GELU())
            self.pos_emb = nn.Embedding(opts.max_len + 1, opts.hidden)
            self.layers = nn.ModuleList([EncoderLayer() for _ in range(opts.layers)])
            self.norm = nn.LayerNorm(opts.hidden)
            self.head = nn.Linear(opts.hidden, vocab_size)
            self.register_buffer("centre", torch.zeros(opts.hidden))
            self.register_buffer("centre_ready", torch.zeros((), dtype=torch.bool))

        def encode(self, tokens: Any, levels: Any) -> Any:
            x = self.token_emb(tokens)
            if self.use_severity:
                x = torch.cat([x, self.severity_emb(levels)], dim=-1)
            positions = torch.arange(tokens.shape[1], device=tokens.device)
            x = self.fuse(x) + self.pos_emb(positions)[None]
            bias = (tokens == layout.pad).to(x.dtype)[:, None, None, :] * -1e9
            for layer in self.layers:
                x = layer(x, bias)
            return self.norm(x)

        def score(self, tokens: Any, levels: Any, targets: Any) -> tuple[Any, Any, Any, Any]:
            hidden = self.encode(tokens, levels)
            logp = torch.log_softmax(self.head(hidden), dim=-1)
            true = torch.gather(logp, 2, targets.clamp(0, vocab_size - 1).unsqueeze(-1))
            rank = (logp > true).sum(dim=-1)
            real = ((tokens != layout.pad) & (tokens != layout.dist)).to(hidden.dtype).unsqueeze(-1)
            mean = (hidden * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)
            return rank, true.squeeze(-1), hidden[:, 0], mean

    class WithSeverity(nn.Module):  # type: ignore[name-defined,misc]
        """The exported graph: (tokens, levels, targets) -> rank, logprob, dist_emb, mean_emb."""

        def __init__(self, core: Any) -> None:
            super().__init__()
            self.core = core

        def forward(self, tokens: Any, levels: Any, targets: Any) -> tuple[Any, Any, Any, Any]:
            scores: tuple[Any, Any, Any, Any] = self.core.score(tokens, levels, targets)
            return scores

    class WithoutSeverity(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self, core: Any) -> None:
            super().__init__()
            self.core = core

        def forward(self, tokens: Any, targets: Any) -> tuple[Any, Any, Any, Any]:
            scores: tuple[Any, Any, Any, Any] = self.core.score(tokens, tokens, targets)
            return scores

    module = LogBertModule()
    module.export_wrapper = WithSeverity if opts.use_severity else WithoutSeverity
    return module


def layout_of(opts: LogBertOptions, vocab_size: int) -> LogBertLayout:
    """The serving layout (token ids, lengths, variants) these options produce."""
    return LogBertLayout(
        vocab_size=vocab_size,
        max_len=opts.max_len,
        mask_variants=opts.mask_variants,
        top_k=opts.top_k,
        use_severity=opts.use_severity,
        hidden=opts.hidden,
    )


def to_windows(
    seqs: Sequence[Sequence[int]], levels: Sequence[Sequence[int]] | None, layout: LogBertLayout
) -> list[Window]:
    """Sanitised windows of at most max_len positions (longer sequences are split into chunks)."""
    windows: list[Window] = []
    for i, seq in enumerate(seqs):
        toks, levs = sanitise(seq, levels[i] if levels is not None else None, layout)
        windows.extend(split_window(toks, levs, layout.max_len))
    return windows


class LogBert(TorchDetector):
    """LogBERT(-severity) trainer: `fit(tokens, levels)` on padded (N, 1 + max_len) arrays."""

    name = "logbert"

    def __init__(self, options: LogBertOptions, vocab_size: int, config: FitConfig | None = None) -> None:
        super().__init__(config)
        self.options = options
        self.layout = layout_of(options, vocab_size)

    def build(self) -> Any:
        """A fresh LogBERT module for this layout."""
        return _build_module(self.options, self.layout.vocab_size)

    def arrays(self, windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray]:
        """Windows as (tokens, levels) arrays: DIST first, then the window, padded."""
        n, length = len(windows), 1 + self.layout.max_len
        tokens = np.full((n, length), self.layout.pad, dtype=np.int64)
        levels = np.full((n, length), NEUTRAL_SEVERITY, dtype=np.int64)
        tokens[:, 0] = self.layout.dist
        for i, (t, lv) in enumerate(windows):
            tokens[i, 1 : len(t) + 1] = t
            levels[i, 1 : len(lv) + 1] = lv
        return tokens, levels

    def loss(self, model: Any, batch: Sequence[Any]) -> Any:
        """Masked-key prediction loss plus the hypersphere loss on a randomly masked batch."""
        torch = import_torch()
        tokens, levels = batch
        real = (tokens != self.layout.pad) & (tokens != self.layout.dist)
        width = int(real.sum(dim=1).max()) + 1  # trim the padding no row of this batch needs
        tokens, levels, real = tokens[:, :width], levels[:, :width], real[:, :width]
        masked = (torch.rand(tokens.shape, device=tokens.device) < self.options.train_mask_ratio) & real
        hidden = model.encode(tokens.masked_fill(masked, self.layout.mask), levels)
        if bool(masked.any()):
            mlkp = torch.nn.functional.cross_entropy(model.head(hidden[masked]), tokens[masked])
        else:
            mlkp = hidden.sum() * 0.0
        dist = hidden[:, 0]
        if model.training:
            with torch.no_grad():  # running centre of the hypersphere (LogBERT's VHM)
                mean = dist.mean(dim=0)
                if not bool(model.centre_ready):
                    model.centre.copy_(mean)
                    model.centre_ready.fill_(True)
                else:
                    mom = self.options.centre_momentum
                    model.centre.mul_(mom).add_(mean, alpha=1 - mom)
        vhm = ((dist - model.centre) ** 2).sum(dim=-1).mean()
        return mlkp + self.options.vhm_weight * vhm

    def embeddings(self, windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray]:
        """DIST outputs and mean position outputs of unmasked windows (eval mode)."""
        torch = import_torch()
        dists, means = [], []
        with torch.no_grad():
            for start in range(0, len(windows), 512):
                b = build_batch(windows[start : start + 512], self.layout)
                plain = np.arange(self.layout.mask_variants, len(b.tokens), self.layout.mask_variants + 1)
                t = torch.as_tensor
                _, _, d, m = self.model.score(t(b.tokens[plain]), t(b.levels[plain]), t(b.targets[plain]))
                dists.append(d.numpy())
                means.append(m.numpy())
        return np.concatenate(dists), np.concatenate(means)

    def export(self, path: Path) -> None:
        """Export the scoring graph to ONNX with dynamic batch and length axes."""
        torch = import_torch()
        sample = build_batch([((1, 2, 3), (3, 3, 3)), ((1,), (3,))], self.layout)
        wrapper = self.model.export_wrapper(self.model).eval()
        names = list(self.layout.input_names)
        args = tuple(torch.as_tensor(sample.feeds(self.layout)[n]) for n in names)
        axes = {n: {0: "rows", 1: "length"} for n in [*names, "rank", "logprob"]}
        axes.update({"dist_emb": {0: "rows"}, "mean_emb": {0: "rows"}})
        meta = {
            "logdetect.vocab_size": str(self.layout.vocab_size),
            "logdetect.max_len": str(self.layout.max_len),
            "logdetect.use_severity": str(int(self.layout.use_severity)),
            "logdetect.hidden": str(self.layout.hidden),
        }
        export_torch(wrapper, args, path, names, OUTPUTS, axes, meta)

    def check_parity(self, model: OnnxModel, windows: Sequence[Window]) -> dict[str, float]:
        """Torch vs ONNX Runtime on real windows: floats within 1e-4, ranks equal but for ties."""
        torch = import_torch()
        batch = build_batch(windows, self.layout)
        with torch.no_grad():
            t = torch.as_tensor
            ref = [x.numpy() for x in self.model.score(t(batch.tokens), t(batch.levels), t(batch.targets))]
        got = onnx_outputs(model, batch.feeds(self.layout), OUTPUTS)
        real = batch.tokens != self.layout.pad
        diff = max_abs_diff(ref[1:], got[1:], [real, None, None])
        rank_mismatch = float((ref[0] != got[0])[real].mean())
        if rank_mismatch > 0.005:
            raise ModelError(f"{self.name}: torch and ONNX Runtime ranks disagree on {rank_mismatch:.4f} of the "
                             "positions: the export is broken")
        require_parity(diff, self.name)
        return {"max_abs_diff": diff, "rank_mismatch": rank_mismatch, "windows": float(len(windows))}


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: LogBertOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """Train LogBERT(-severity), export `<name>.onnx`, calibrate on held-back normal sequences,
    and return the manifest section. Without `val_seqs`, 10 % of the training sequences are
    held back for calibration."""
    train_seqs, train_levels, vocab_size = data.train_seqs, data.train_levels, data.vocab_size
    val_seqs, val_levels = data.val_seqs, data.val_levels
    if vocab_size < 2:
        raise InputError(f"{name}: vocabulary of {vocab_size} tokens: need training templates")
    trainer = LogBert(options, vocab_size, fit)
    trainer.name = name
    layout = trainer.layout
    if not val_seqs:
        rng = np.random.default_rng(fit.seed)
        hold = set(rng.permutation(len(train_seqs))[: max(1, len(train_seqs) // 10)].tolist())
        val_seqs = [s for i, s in enumerate(train_seqs) if i in hold]
        val_levels = [lv for i, lv in enumerate(train_levels) if i in hold] if train_levels else None
        train_levels = [lv for i, lv in enumerate(train_levels) if i not in hold] if train_levels else None
        train_seqs = [s for i, s in enumerate(train_seqs) if i not in hold]
    train_windows = to_windows(train_seqs, train_levels, layout)
    val_windows = to_windows(val_seqs, val_levels, layout)
    if not train_windows or not val_windows:
        raise InputError(f"{name}: no non-empty training or held-back sequences")
    started = time.monotonic()
    history = trainer.fit(*trainer.arrays(train_windows))
    fit_seconds = time.monotonic() - started

    # centres from the final weights over the (distinct) training windows
    distinct = sorted(set(train_windows))
    dists, means = trainer.embeddings(distinct)
    weights = np.asarray(list(Counter(train_windows)[w] for w in distinct), dtype=np.float64)
    centre = (dists * weights[:, None]).sum(0) / weights.sum()
    window_centre = (means * weights[:, None]).sum(0) / weights.sum()

    counts = Counter(t for toks, _ in train_windows for t in toks)
    rare_tokens = sorted(t for t in range(1, vocab_size) if counts.get(t, 0) < options.rare_min_count)

    path = writer.path_for(f"{name}.onnx")
    trainer.export(path)
    ort_model = OnnxModel(path, RuntimeOptions(intra_op_threads=1, device="cpu"))
    rng = np.random.default_rng(fit.seed)
    pool = sorted(set(val_windows)) + distinct
    pick = rng.choice(len(pool), size=min(options.parity_windows, len(pool)), replace=False)
    parity = trainer.check_parity(ort_model, [pool[int(i)] for i in pick])
    curve = f"{name}_curve.png"
    trainer.save_curve(writer.path_for(curve))

    scorer = LogBertScorer(ort_model, layout, centre, window_centre, rare_tokens, name=name)
    val_scores = scorer.score_uncached(val_windows)
    section = _calibrated_section(val_scores, options, target_fpr)
    section.update(
        {
            "type": "logbert",
            "file": f"{name}.onnx",
            "kind": "semantic",
            "inputs": list(layout.input_names),
            "outputs": list(OUTPUTS),
            "vocab_size": vocab_size,
            "severity_vocab_size": N_SEVERITY if options.use_severity else 0,
            "neutral_severity": NEUTRAL_SEVERITY,
            "pad_token": layout.pad,
            "mask_token": layout.mask,
            "dist_token": layout.dist,
            "max_len": options.max_len,
            "hidden": options.hidden,
            "mask_variants": options.mask_variants,
            "mask_ratio": 1.0 / options.mask_variants,
            "mask_positions": "variant v masks positions i (0-based) with i % mask_variants == v",
            "long_windows": "split into consecutive chunks of max_len; a session scores as its worst chunk",
            "top_k": options.top_k,
            "use_severity": options.use_severity,
            "centre": [float(x) for x in centre],
            "window_centre": [float(x) for x in window_centre],
            "rare_tokens": rare_tokens,
            "rare_fraction": options.rare_fraction,
            "unknown_fires": options.unknown_fires,
            "score_every_lines": options.score_every_lines,
            "curve": curve,
            "parity": parity,
            "options": asdict(options),
            "training": {
                "windows": len(train_windows),
                "distinct_windows": len(distinct),
                "calibration_windows": len(val_windows),
                "epochs": len(history.train_loss),
                "best_epoch": history.best_epoch,
                "seconds": round(fit_seconds, 2),
                "device": history.device,
                "final_train_loss": history.train_loss[-1] if history.train_loss else None,
                "final_val_loss": history.val_loss[-1] if history.val_loss else None,
            },
        }
    )
    log.info("logbert_trained", model=name, seconds=round(fit_seconds, 1), windows=len(train_windows))
    return section


def _calibrated_section(
    scores: Sequence[WindowScore], options: LogBertOptions, target_fpr: float | None
) -> dict[str, Any]:
    """Thresholds per component on held-back normal windows.

    Miss ratio and distance share the frequent path, so each gets half the target false-positive
    rate; the rare path's cosine threshold is set on the rare-dominated windows when there are
    enough of them (≥ 50), else on all windows.
    """
    medium = target_fpr if target_fpr is not None else 0.01
    miss = np.asarray([s.miss_ratio for s in scores])
    dist = np.asarray([s.distance for s in scores])
    rare = [s.cosine for s in scores if s.rare_fraction >= options.rare_fraction]
    cos = np.asarray(rare if len(rare) >= 50 else [s.cosine for s in scores])
    cal_miss = calibrate(miss, medium / 2)
    cal_dist = calibrate(dist, medium / 2)
    cal_cos = calibrate(cos, medium)
    return {
        # scores are normalised per sensitivity (component / its threshold): fire above 1.0
        "thresholds": {"low": 1.0, "medium": 1.0, "high": 1.0},
        "miss_thresholds": cal_miss["thresholds"],
        "distance_thresholds": cal_dist["thresholds"],
        "cosine_thresholds": cal_cos["thresholds"],
        "calibration": {
            "miss": cal_miss,
            "distance": cal_dist,
            "cosine": cal_cos,
            "rare_windows": len(rare),
            "n_windows": len(scores),
        },
    }
