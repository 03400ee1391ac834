"""Sessions and windows for the sequence models (DeepLog, LSTM autoencoder).

Readers for the DeepLog-format HDFS files, the template-id → model-token vocabulary
(token 0 = UNK), deterministic splits, and the training windows. Windows are cut with the
serving code's own helpers (`agent.detectors.deeplog.window_before`,
`agent.detectors.lstm_ae.window_ending`), so training and serving cannot disagree.
Identical training rows are merged and counted: HDFS's 4,855 sessions hold few distinct
windows, and a weighted loss over distinct rows trains many times faster than over all rows.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from agent.detectors.deeplog import window_before
from agent.detectors.lstm_ae import window_ending
from agent.errors import InputError


def read_sessions(path: str | Path) -> list[list[int]]:
    """DeepLog format: one session per line, space-separated template numbers (may be empty)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read sessions file {p}: {exc.strerror or exc}") from None
    sessions: list[list[int]] = []
    for no, line in enumerate(text.splitlines(), 1):
        try:
            sessions.append([int(t) for t in line.split()])
        except ValueError:
            raise InputError(f"{p}:{no}: not a session of integer template ids: {line[:60]!r}") from None
    if not sessions:
        raise InputError(f"{p} holds no sessions")
    return sessions


def read_labelled(path: str | Path) -> tuple[list[list[int]], np.ndarray]:
    """The labelled `Sequence,label` CSV (label 0 = normal, 1 = anomaly)."""
    p = Path(path)
    seqs: list[list[int]] = []
    labels: list[int] = []
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"Sequence", "label"} <= set(reader.fieldnames):
                raise InputError(f"{p}: expected a CSV with columns Sequence,label")
            for no, rec in enumerate(reader, 2):
                try:
                    seqs.append([int(t) for t in (rec["Sequence"] or "").split()])
                    labels.append(int(rec["label"]))
                except (TypeError, ValueError):
                    raise InputError(f"{p}:{no}: bad row {rec!r}") from None
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
    if not seqs:
        raise InputError(f"{p} holds no sessions")
    return seqs, np.asarray(labels, dtype=np.int64)


def build_vocab(sessions: Iterable[Sequence[int]]) -> dict[int, int]:
    """Template id -> model token 1..N, in order of first appearance sorted by id (stable)."""
    ids = sorted({int(t) for s in sessions for t in s})
    return {tid: k + 1 for k, tid in enumerate(ids)}


def encode(sessions: Iterable[Sequence[int]], vocab: dict[int, int]) -> list[list[int]]:
    """Template ids -> model tokens; ids not in the vocabulary become 0 (UNK)."""
    return [[vocab.get(int(t), 0) for t in s] for s in sessions]


def stable_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic index split (first part gets `fraction`), the same on every machine."""
    digest = hashlib.sha256(f"logdetect-split-{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    order = rng.permutation(n)
    cut = round(n * fraction)
    return np.sort(order[:cut]), np.sort(order[cut:])


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`stable_split` within each label, so both parts keep the label mix."""
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        a, b = stable_split(len(idx), fraction, seed + int(value))
        first.append(idx[a])
        second.append(idx[b])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def token_counts(sessions: Iterable[Sequence[int]]) -> Counter[int]:
    """How often each token occurs over all sessions."""
    return Counter(int(t) for s in sessions for t in s)


def next_token_rows(
    sessions: Iterable[Sequence[int]], window: int, vocab_size: int, predict_end: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeepLog training rows: (window, next token, count) over every position of every session,
    left-padded with PAD = vocab_size + 1, plus END = vocab_size after the last token."""
    end, pad = vocab_size, vocab_size + 1
    counts: Counter[tuple[tuple[int, ...], int]] = Counter()
    for s in sessions:
        seq = [int(t) for t in s] + ([end] if predict_end else [])
        for i in range(len(seq)):
            counts[(window_before(seq, i, window, pad), seq[i])] += 1
    if not counts:
        raise InputError("no training windows: every session is empty")
    items = sorted(counts.items())
    x = np.asarray([w for (w, _), _ in items], dtype=np.int64).reshape(len(items), window)
    y = np.asarray([t for (_, t), _ in items], dtype=np.int64)
    c = np.asarray([n for _, n in items], dtype=np.float32)
    return x, y, c


def rare_bigrams(
    sessions: Iterable[Sequence[int]], vocab_size: int, rare: set[int], predict_end: bool = True
) -> list[list[int]]:
    """Every pair of consecutive tokens (PAD before a session's first, END after its last) in
    which either token is rare: the lookup of DeepLog's rare path."""
    end, pad = vocab_size, vocab_size + 1
    pairs: set[tuple[int, int]] = set()
    for s in sessions:
        seq = [pad, *(int(t) for t in s), *([end] if predict_end else [])]
        for a, b in itertools.pairwise(seq):
            if a in rare or b in rare:
                pairs.add((a, b))
    return [list(p) for p in sorted(pairs)]


def reconstruction_rows(
    sessions: Sequence[Sequence[int]],
    levels: Sequence[Sequence[int]] | None,
    window: int,
    vocab_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSTM-AE training rows: (tokens, levels, count) for every window ending at each position
    (left-padded with PAD = vocab_size + 1 and level 0), merged when identical."""
    pad = vocab_size + 1
    counts: Counter[tuple[tuple[int, ...], tuple[int, ...]]] = Counter()
    for k, s in enumerate(sessions):
        lv = list(levels[k]) if levels is not None else [0] * len(s)
        for i in range(len(s)):
            counts[window_ending(s, lv, i + 1, window, pad)] += 1
    if not counts:
        raise InputError("no training windows: every session is empty")
    items = sorted(counts.items())
    toks = np.asarray([w for (w, _), _ in items], dtype=np.int64).reshape(len(items), window)
    lvls = np.asarray([lv for (_, lv), _ in items], dtype=np.int64).reshape(len(items), window)
    c = np.asarray([n for _, n in items], dtype=np.float32)
    return toks, lvls, c


def spread_rows(counts: np.ndarray, min_copies: int = 2, max_copies: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and weights that repeat each merged row a few times (weight count/copies).

    `TorchDetector.fit` holds out a random share of rows for early stopping; over merged rows
    that would hold out whole window types (a common normal window never trained on). With
    2-8 copies per window, every window is almost surely trained on and the validation rows
    still follow the training distribution.
    """
    copies = np.clip(np.asarray(counts, dtype=np.int64), min_copies, max_copies)
    index = np.repeat(np.arange(len(counts)), copies)
    weight = (np.asarray(counts, dtype=np.float32) / copies.astype(np.float32))[index]
    return index, weight
