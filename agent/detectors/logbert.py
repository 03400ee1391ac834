"""LogBERT-severity served through ONNX Runtime: the SEMANTIC voter of the ensemble.

The model (trained by `trainer/logbert.py`) reads a window of template tokens and their
severities, with a DIST token in front, and answers for every position the rank of the true
template among its predictions (masked log-key prediction, MLKP), plus two window embeddings:
the DIST token's output (LogBERT's hypersphere, VHM) and the mean of the position outputs
(seed 000's rare path).

Scoring rule, per window (never per line):

* Deterministic masking: with `mask_variants = m`, variant v masks the positions i with
  i % m == v, so every position is masked exactly once and each variant hides 1/m of the window.
  All m masked variants plus one unmasked row (for the embeddings) of every window of a call go
  to ONNX Runtime in ONE batch.
* A masked position is a miss when its true template is not among the top-k predictions; a
  template never seen in training (UNK, token 0) is always a miss.
* Frequent path: the window fires when its miss ratio or its squared hypersphere distance to
  the training centre exceeds the calibrated thresholds.
* Rare path (seed 000): when at least `rare_fraction` of the window's templates are rare in
  training, MLKP predictions are unreliable; the window fires when the cosine distance of its
  mean embedding to the training mean exceeds its threshold.
* With `unknown_fires` (manifest, default true) a window holding a template never seen in
  training fires on either path: MLKP cannot predict it by construction, and one such line
  would otherwise be diluted in the miss ratio of a long window.

Scores are normalised per sensitivity: each component is divided by its threshold, so the
reported score is > 1.0 exactly when the window fires (threshold 1.0 in every `DetectorScore`).

Bad input: tokens outside the model's vocabulary become UNK; levels outside `Level` become the
neutral severity (`Level.UNKNOWN`); windows longer than `max_len` are split into consecutive
chunks of at most `max_len` by `score_session` (the session's score is its worst chunk), and
`score_lines` looks at the last `max_len` lines of an entity's history only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.detectors.onnx_scorer import OnnxScorer, memo_stats, publish_hit_ratio
from agent.detectors.section import ModelLoad
from agent.errors import BundleError, ModelError
from agent.onnx_session import OnnxModel
from agent.types import DetectorKind, DetectorScore, Level, LineContext, Sensitivity

Window = tuple[tuple[int, ...], tuple[int, ...]]  # (tokens, levels), already sanitised

N_SEVERITY = len(Level)
NEUTRAL_SEVERITY = int(Level.UNKNOWN)
UNK = 0
OUTPUTS = ("rank", "logprob", "dist_emb", "mean_emb")
# Metadata the trainer writes into the ONNX file; the detector compares it with the manifest.
META_KEYS = ("logdetect.vocab_size", "logdetect.max_len", "logdetect.use_severity", "logdetect.hidden")


@dataclass(frozen=True, slots=True)
class LogBertLayout:
    """Token layout and scoring constants shared by trainer and agent (from the manifest)."""

    vocab_size: int  # model tokens 0..vocab_size-1; 0 = UNK
    max_len: int  # window positions, the DIST token not counted
    mask_variants: int
    top_k: int
    use_severity: bool
    hidden: int

    @property
    def pad(self) -> int:
        """Token id of padding."""
        return self.vocab_size

    @property
    def mask(self) -> int:
        """Token id of a masked position."""
        return self.vocab_size + 1

    @property
    def dist(self) -> int:
        """Token id of the leading DIST position (its embedding is the window's)."""
        return self.vocab_size + 2

    @property
    def n_tokens(self) -> int:
        """Size of the embedding table: the vocabulary plus PAD, MASK and DIST."""
        return self.vocab_size + 3

    @property
    def input_names(self) -> tuple[str, ...]:
        """The ONNX graph's inputs: levels only for the severity variant."""
        return ("tokens", "levels", "targets") if self.use_severity else ("tokens", "targets")

    @staticmethod
    def from_section(section: Mapping[str, Any], where: str = "logbert") -> LogBertLayout:
        """The layout a bundle section declares; a missing or malformed key is a BundleError."""
        try:
            layout = LogBertLayout(
                vocab_size=int(section["vocab_size"]),
                max_len=int(section["max_len"]),
                mask_variants=int(section["mask_variants"]),
                top_k=int(section["top_k"]),
                use_severity=bool(section["use_severity"]),
                hidden=int(section["hidden"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model {where!r}: manifest section lacks or mangles {exc}: retrain") from None
        if layout.vocab_size < 2 or layout.max_len < 1 or layout.mask_variants < 1 or layout.top_k < 1:
            raise BundleError(f"model {where!r}: impossible sizes in the manifest: {layout}")
        return layout


@dataclass(frozen=True, slots=True)
class WindowScore:
    """Raw, threshold-free measurements of one window (what the memo cache stores)."""

    miss_ratio: float
    misses: int
    positions: int
    distance: float  # squared L2 distance of the DIST output to the hypersphere centre
    cosine: float  # cosine distance of the mean embedding to the training mean embedding
    rare_fraction: float
    unknown: int  # positions holding a template never seen in training
    missed: tuple[int, ...] = ()  # the masked positions it failed to predict (0 = the window's first)


@dataclass(frozen=True, slots=True)
class LogBertThresholds:
    """When a window fires: miss ratio, hypersphere distance, rare-path cosine distance."""

    miss: float
    distance: float
    cosine: float
    rare_fraction: float
    unknown_fires: bool = True  # a template never seen in training fires the window by itself

    @staticmethod
    def from_section(section: Mapping[str, Any], sensitivity: Sensitivity) -> LogBertThresholds:
        """The thresholds of one sensitivity from a bundle section."""
        try:
            return LogBertThresholds(
                miss=float(section["miss_thresholds"][sensitivity.value]),
                distance=float(section["distance_thresholds"][sensitivity.value]),
                cosine=float(section["cosine_thresholds"][sensitivity.value]),
                rare_fraction=float(section["rare_fraction"]),
                unknown_fires=bool(section.get("unknown_fires", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"logbert section has no {sensitivity.value!r} threshold ({exc}): retrain"
            ) from None


def _over(value: float, threshold: float) -> float:
    """value / threshold, built so that the result is > 1 exactly when value > threshold."""
    if threshold > 0:
        return value / threshold
    return 1.0 + value if value > 0 else 0.0


def judge(ws: WindowScore, thr: LogBertThresholds) -> tuple[float, bool, str]:
    """(normalised score, fired, path) of one window under one set of thresholds."""
    unknown = _over(ws.unknown / max(ws.positions, 1), 0.0) if thr.unknown_fires else 0.0
    if ws.rare_fraction >= thr.rare_fraction:
        score = max(_over(ws.cosine, thr.cosine), unknown)
        return score, score > 1.0, "rare"
    score = max(_over(ws.miss_ratio, thr.miss), _over(ws.distance, thr.distance), unknown)
    return score, score > 1.0, "frequent"


def sanitise(tokens: Sequence[int], levels: Sequence[int] | None, layout: LogBertLayout) -> Window:
    """Out-of-vocabulary tokens -> UNK; unknown or missing severities -> the neutral severity."""
    toks = tuple(int(t) if 0 <= int(t) < layout.vocab_size else UNK for t in tokens)
    if not layout.use_severity or levels is None:
        return toks, (NEUTRAL_SEVERITY,) * len(toks)
    levs = [int(v) if 0 <= int(v) < N_SEVERITY else NEUTRAL_SEVERITY for v in levels]
    if len(levs) < len(toks):  # a short level list: the missing ones are unknown
        levs += [NEUTRAL_SEVERITY] * (len(toks) - len(levs))
    return toks, tuple(levs[: len(toks)])


def split_window(tokens: Sequence[int], levels: Sequence[int], max_len: int) -> list[Window]:
    """Consecutive chunks of at most `max_len` positions (an empty input gives no chunk)."""
    return [
        (tuple(tokens[i : i + max_len]), tuple(levels[i : i + max_len]))
        for i in range(0, len(tokens), max_len)
    ]


@dataclass(frozen=True)
class Batch:
    """The arrays of one ONNX call: every mask variant of every window, padded to one length."""

    tokens: np.ndarray  # (rows, 1 + length) int64: DIST, then masked tokens, then PAD
    levels: np.ndarray  # (rows, 1 + length) int64
    targets: np.ndarray  # (rows, 1 + length) int64: the true tokens (UNK under DIST/PAD)
    masked: np.ndarray  # (rows, 1 + length) bool: positions whose prediction counts

    def feeds(self, layout: LogBertLayout) -> dict[str, np.ndarray]:
        """The ONNX feeds for this layout (levels only for the severity variant)."""
        feeds = {"tokens": self.tokens, "targets": self.targets}
        if layout.use_severity:
            feeds["levels"] = self.levels
        return feeds


def build_batch(windows: Sequence[Window], layout: LogBertLayout) -> Batch:
    """`mask_variants` masked rows then one unmasked row per window, padded to the longest."""
    m = layout.mask_variants
    per = m + 1
    length = 1 + max((len(t) for t, _ in windows), default=0)
    rows = len(windows) * per
    tokens = np.full((rows, length), layout.pad, dtype=np.int64)
    levels = np.full((rows, length), NEUTRAL_SEVERITY, dtype=np.int64)
    targets = np.zeros((rows, length), dtype=np.int64)
    masked = np.zeros((rows, length), dtype=bool)
    tokens[:, 0] = layout.dist
    for w, (toks, levs) in enumerate(windows):
        n = len(toks)
        base = w * per
        t = np.asarray(toks, dtype=np.int64)
        tokens[base : base + per, 1 : n + 1] = t
        levels[base : base + per, 1 : n + 1] = np.asarray(levs, dtype=np.int64)
        targets[base : base + per, 1 : n + 1] = t
        positions = np.arange(n)
        for v in range(m):
            sel = positions[positions % m == v] + 1
            tokens[base + v, sel] = layout.mask
            masked[base + v, sel] = True
    return Batch(tokens, levels, targets, masked)


def reduce_batch(
    windows: Sequence[Window],
    outputs: Sequence[np.ndarray],
    batch: Batch,
    layout: LogBertLayout,
    centre: np.ndarray,
    window_centre: np.ndarray,
    rare: np.ndarray,
) -> list[WindowScore]:
    """Turn the model's per-row outputs into one `WindowScore` per window."""
    rank, _logprob, dist_emb, mean_emb = outputs
    per = layout.mask_variants + 1
    miss = (rank >= layout.top_k) | (batch.targets == UNK)
    wc_norm = float(np.linalg.norm(window_centre)) or 1.0
    scores: list[WindowScore] = []
    for w, (toks, _levs) in enumerate(windows):
        base = w * per
        sel = batch.masked[base : base + per - 1]
        missed = (miss[base : base + per - 1] & sel).any(axis=0)[1:]  # each position is masked once
        misses = int(missed.sum())
        n = len(toks)
        plain = base + per - 1  # the unmasked row
        d = dist_emb[plain] - centre
        e = mean_emb[plain]
        cos = 1.0 - float(e @ window_centre) / ((float(np.linalg.norm(e)) or 1.0) * wc_norm)
        t = np.asarray(toks, dtype=np.int64)
        scores.append(
            WindowScore(
                miss_ratio=misses / n if n else 0.0,
                misses=misses,
                positions=n,
                distance=float(d @ d),
                cosine=cos,
                rare_fraction=float(rare[t].mean()) if n else 0.0,
                unknown=int((t == UNK).sum()),
                missed=tuple(int(p) for p in np.flatnonzero(missed[:n])),
            )
        )
    return scores


class LogBertScorer(OnnxScorer[Window, WindowScore]):
    """Runs windows through the ONNX model: shared by the detector and the trainer's calibration."""

    def __init__(
        self,
        model: OnnxModel,
        layout: LogBertLayout,
        centre: np.ndarray,
        window_centre: np.ndarray,
        rare_tokens: Sequence[int],
        max_tokens: int = 2048,
        name: str = "logbert",
        cache_size: int = 65536,
    ) -> None:
        super().__init__(model, name, cache_size)
        self.layout = layout
        self.centre = np.asarray(centre, dtype=np.float32)
        self.window_centre = np.asarray(window_centre, dtype=np.float32)
        if self.centre.shape != (layout.hidden,) or self.window_centre.shape != (layout.hidden,):
            raise BundleError(f"model {name!r}: centre sizes disagree with hidden={layout.hidden}: retrain")
        self.rare = np.zeros(layout.vocab_size, dtype=bool)
        for t in rare_tokens:
            if 0 < int(t) < layout.vocab_size:
                self.rare[int(t)] = True
        # Tokens (rows x length) per ONNX call. The model is compute-bound per row and every
        # window already brings mask_variants + 1 rows, so bigger calls buy little and, past a
        # few thousand tokens, lose to cache misses (bench/logbert_latency.py measures it).
        self.max_tokens = max(max_tokens, (layout.mask_variants + 1) * (layout.max_len + 1))

    def score_uncached(self, keys: Sequence[Window]) -> list[WindowScore]:
        """Score sanitised windows (each ≤ max_len): few ONNX calls of at most `max_tokens`
        tokens, windows of similar length together."""
        windows = keys
        out: list[WindowScore | None] = [None] * len(windows)
        nonempty = [i for i, (t, _) in enumerate(windows) if t]
        for i, (t, _) in enumerate(windows):
            if not t:
                out[i] = WindowScore(0.0, 0, 0, 0.0, 0.0, 0.0, 0)
        # sorting by length keeps padding small when a call mixes short and long windows
        nonempty.sort(key=lambda i: len(windows[i][0]))
        per_window = self.layout.mask_variants + 1
        start = 0
        while start < len(nonempty):
            end = start + 1
            while end < len(nonempty) and (end + 1 - start) * per_window * (
                len(windows[nonempty[end]][0]) + 1
            ) <= self.max_tokens:
                end += 1
            idx = nonempty[start:end]
            for i, ws in zip(idx, self.compute([windows[i] for i in idx]), strict=True):
                out[i] = ws
            start = end
        return [ws for ws in out if ws is not None]

    def compute(self, keys: list[Window]) -> list[WindowScore]:
        """Scores of distinct windows: every mask variant in one ONNX call, reduced per window."""
        batch = build_batch(keys, self.layout)
        outputs = self.run(batch.feeds(self.layout), OUTPUTS)
        return reduce_batch(keys, outputs, batch, self.layout, self.centre, self.window_centre, self.rare)


def verify_model(model: OnnxModel, layout: LogBertLayout, name: str) -> None:
    """Refuse an ONNX file whose inputs, outputs or recorded sizes disagree with the manifest."""
    if sorted(model.input_names) != sorted(layout.input_names):
        raise ModelError(
            f"{name}: ONNX inputs {model.input_names} do not match the manifest "
            f"{list(layout.input_names)} (use_severity={layout.use_severity}): retrain the bundle"
        )
    model.check_inputs(dict.fromkeys(layout.input_names, 2))
    missing = [o for o in OUTPUTS if o not in model.output_names]
    if missing:
        raise ModelError(f"{name}: ONNX model lacks outputs {missing}: retrain the bundle")
    meta = model.session.get_modelmeta().custom_metadata_map
    expected = {
        "logdetect.vocab_size": str(layout.vocab_size),
        "logdetect.max_len": str(layout.max_len),
        "logdetect.use_severity": str(int(layout.use_severity)),
        "logdetect.hidden": str(layout.hidden),
    }
    wrong = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: file {a!r} vs manifest {b!r}" for k, (a, b) in wrong.items())
        raise ModelError(f"{name}: ONNX file does not match the manifest ({detail}): retrain the bundle")


class LogBertDetector:
    """The `Detector` for manifest sections of type "logbert"."""

    kind = DetectorKind.SEMANTIC

    def __init__(
        self,
        name: str,
        scorer: LogBertScorer,
        thresholds: LogBertThresholds,
        score_every: int = 16,
        max_entities: int = 65536,
    ) -> None:
        self.name = name
        self.scorer = scorer
        self.layout = scorer.layout
        self.thresholds = thresholds
        self.score_every = max(0, score_every)  # 0: only when asked (`request`) or per session
        self._seen: OrderedDict[str, int] = OrderedDict()  # entity -> lines since its last score
        self._asked: set[str] = set()
        self._max_entities = max_entities
        self.windows = 0

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> LogBertDetector:
        """The detector for a bundle section; the ONNX graph must match the declared layout."""
        name, section = load.name, load.section
        layout = LogBertLayout.from_section(section.raw, name)
        model = load.onnx()
        verify_model(model, layout, name)
        try:
            scorer = LogBertScorer(
                model,
                layout,
                np.asarray(section["centre"], dtype=np.float32),
                np.asarray(section["window_centre"], dtype=np.float32),
                [int(t) for t in section.get("rare_tokens", [])],
                name=name,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model {name!r}: manifest lacks or mangles {exc}: retrain") from None
        return cls(
            name,
            scorer,
            LogBertThresholds.from_section(section.raw, load.sensitivity),
            score_every=section.integer("score_every_lines", 16),
        )

    # -- scoring ---------------------------------------------------------------------------

    def score_windows(self, windows: Sequence[Window]) -> list[WindowScore]:
        """Raw scores of sanitised windows (≤ max_len each), memoised: each distinct window runs once."""
        self.windows += len(windows)
        result = self.scorer.score(windows)
        publish_hit_ratio(self.name, self.scorer.cache)
        return result

    def _score(self, ws: WindowScore, chunks: int = 1, start: int = 0) -> DetectorScore:
        """The score of one window; `start` is its first line's place in the session (a chunk's)."""
        score, fired, path = judge(ws, self.thresholds)
        details: tuple[tuple[str, object], ...] = (
            ("path", path),
            ("miss_ratio", round(ws.miss_ratio, 4)),
            ("misses", ws.misses),
            ("positions", ws.positions),
            ("distance", round(ws.distance, 6)),
            ("cosine", round(ws.cosine, 6)),
            ("unknown_templates", ws.unknown),
            ("top_k", self.layout.top_k),
            # what the explanation names: the positions it could not predict (the window's first = 0)
            ("missed_positions", ws.missed),
        )
        if chunks > 1:
            details += (("chunks", chunks), ("chunk_start", start))
        return DetectorScore(self.name, float(score), 1.0, fired, details)

    def request(self, entity: str) -> None:
        """Ask for a score at this entity's next line, whatever `score_every` says."""
        self._asked.add(entity)

    def schedule(self, entity: str) -> bool:
        """Count one line of `entity`; True when it is due for a score (every `score_every`
        lines of the entity, or when asked). `score_lines` = `schedule` each line, then
        `score_due` the due ones; the pipeline's short road calls the two itself, so that lines
        it judges without a model call are counted in their place."""
        count = self._seen.pop(entity, 0) + 1
        due = entity in self._asked or bool(self.score_every and count >= self.score_every)
        if due:
            self._asked.discard(entity)
            count = 0
        self._seen[entity] = count
        if len(self._seen) > self._max_entities:
            self._seen.popitem(last=False)
        return due

    def score_due(self, contexts: Sequence[LineContext]) -> list[DetectorScore]:
        """Scores of lines `schedule` found due: the window of each one's last `max_len` lines."""
        if not contexts:
            return []
        tail = -self.layout.max_len
        windows = [sanitise(ctx.history[tail:], ctx.levels[tail:], self.layout) for ctx in contexts]
        return [self._score(ws) for ws in self.score_windows(windows)]

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        """A score for a line only every `score_every` lines of its entity (or when asked)."""
        return self.score_lines_where(contexts, range(len(contexts)))

    def score_lines_where(self, contexts: Sequence[LineContext], wanted: Sequence[int]) -> list[DetectorScore | None]:
        """`score_lines` restricted to the lines at `wanted` (the cascade): every line still counts
        towards its entity's schedule, so a line is scored exactly when the full schedule would."""
        wanted_set = wanted if isinstance(wanted, range) and len(wanted) == len(contexts) else set(wanted)
        due = [i for i, ctx in enumerate(contexts) if self.schedule(ctx.line.line.entity) and i in wanted_set]
        result: list[DetectorScore | None] = [None] * len(contexts)
        for i, score in zip(due, self.score_due([contexts[i] for i in due]), strict=True):
            result[i] = score
        return result

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """One verdict for a whole session: its worst chunk of at most `max_len` lines."""
        if not tokens:
            return None
        chunks = self.session_windows(tokens, levels)
        starts = range(0, len(tokens), self.layout.max_len)  # `split_window`'s chunks
        scored = [self._score(ws, len(chunks), start)
                  for ws, start in zip(self.score_windows(chunks), starts, strict=True)]
        return max(scored, key=lambda s: s.score)

    def prefetch_sessions(self, sessions: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        """The chunks of these sessions, into the memo in as few calls as `max_tokens` allows
        (sessions that end together; a window's scores do not depend on the call it is in)."""
        self.scorer.fill([w for tokens, levels in sessions if tokens for w in self.session_windows(tokens, levels)])

    def session_windows(self, tokens: Sequence[int], levels: Sequence[int] | None) -> list[Window]:
        """A session's tokens and levels as windows of at most max_len positions."""
        toks, levs = sanitise(tokens, levels, self.layout)
        return split_window(toks, levs, self.layout.max_len)

    def stats(self) -> dict[str, float]:
        """`cache_*`/`hit_ratio`: windows answered from the memo; `rows`: model rows run."""
        return {**self.scorer.stats(), **memo_stats(self.scorer.cache), "windows": float(self.windows)}
