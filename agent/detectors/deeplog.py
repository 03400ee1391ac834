"""DeepLog served from ONNX: is each template among the top-g the model expected next?

Vocabulary (shared with `trainer.deeplog`): model tokens 0..V-1 (0 = UNK, a template born
after training; 1..V-1 the training templates), END = V (the session closes here: predicted
only by `score_session`), PAD = V+1 (left padding of windows that start before the session).

A line is a *miss* when
- its token is UNK (DeepLog's rule: never seen means unexpected), or
- it, or the line before it (or, with `rare.context = "window"`, any line of its window), is
  *rare* (seed 000's frequent/rare split: a template below a frequency cut in training) and
  the pair (previous token, its token) never occurred in training
  (the rare path: a bigram table shipped in the manifest, since a softmax fitted on a handful
  of examples ranks rare templates, and what follows them, badly), or
- otherwise, it is not among the model's top-g predictions from the previous `window` tokens
  (END, judged by `score_session` only, against its own `end_top_g`).

Short histories are left-padded with PAD rather than skipped: the model was trained on padded
prefixes, so the first lines of a session are scored too (the pipeline must therefore keep at
least `window + 1` tokens of history per entity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.detectors.onnx_scorer import MemoisedLines, OnnxScorer
from agent.detectors.section import ModelLoad
from agent.errors import BundleError, ModelError
from agent.onnx_session import OnnxModel
from agent.types import DetectorKind, DetectorScore, LineContext

INPUT = "window"
OUTPUT = "probs"
TOP_EXPLAINED = 5  # expected next tokens quoted in a DetectorScore's details
RARE_CONTEXTS = ("none", "previous", "window")


def window_before(tokens: Sequence[int], end: int, size: int, pad: int) -> tuple[int, ...]:
    """The `size` tokens before position `end`, left-padded with `pad` (one implementation for
    training and serving, so windows cannot drift apart)."""
    start = max(0, end - size)
    window = tuple(tokens[start:end])
    return (pad,) * (size - len(window)) + window


@dataclass(frozen=True)
class Judgement:
    """DeepLog's verdict on one position: the actual token, its rank, and whether it missed."""

    actual: int
    rank: int  # 0 = the most expected; vocab_size + 1 for UNK or a rare template out of place
    prob: float
    miss: bool
    path: str  # "frequent" | "rare" | "unknown" | "end"


class DeepLogScorer(OnnxScorer[tuple[int, ...], np.ndarray]):
    """The model and the rules, without the Detector plumbing (the trainer calibrates with it)."""

    ROWS_PER_CALL = 128  # measured fastest per row (BENCHMARKS.md, "Session verdicts")

    def __init__(
        self,
        model: OnnxModel,
        section: Mapping[str, Any],
        name: str = "deeplog",
        cache_size: int = 65536,
    ) -> None:
        super().__init__(model, name, cache_size)
        try:
            self.window = int(section["window"])
            self.top_g = int(section["top_g"])
            self.vocab_size = int(section["vocab_size"])
            self.predict_end = bool(section.get("predict_end", True))
            # the end of a session is one decision among few plausible ones: it may be judged
            # more strictly than the next template (None: the same top_g)
            end_top_g = section.get("end_top_g")
            self.end_top_g = int(end_top_g) if end_top_g is not None else self.top_g
            rare = section.get("rare", {})
            self.rare: frozenset[int] = frozenset(int(t) for t in rare.get("tokens", []))
            # which lines besides rare ones take the rare path: "previous" (the line before is
            # rare), "window" (a rare line anywhere in the window) or "none"
            self.rare_context = str(rare.get("context", "previous"))
            if self.rare_context not in RARE_CONTEXTS:
                raise ValueError(f"rare context {self.rare_context!r}")
            self.rare_bigrams: frozenset[tuple[int, int]] = frozenset(
                (int(a), int(b)) for a, b in rare.get("bigrams", [])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model {name!r}: malformed deeplog section ({exc!r}): retrain") from None
        self.end = self.vocab_size
        self.pad = self.vocab_size + 1
        self.classes = self.vocab_size + 1
        input_name = str(section.get("input", INPUT))
        if input_name not in model.input_names:
            raise ModelError(f"{model.path}: no input {input_name!r} (has {model.input_names}): retrain")
        model.check_inputs({input_name: 2})
        shape = model.input_shape(input_name)
        if isinstance(shape[1], int) and shape[1] != self.window:
            raise ModelError(
                f"{model.path}: input {input_name!r} takes windows of {shape[1]} tokens, "
                f"the manifest says {self.window}: the bundle is inconsistent, retrain it"
            )
        self.input_name = input_name
        self.output_name = str(section.get("output", OUTPUT))

    # -- model calls -------------------------------------------------------------------------
    def compute(self, keys: list[tuple[int, ...]]) -> list[np.ndarray]:
        """Next-token distributions of distinct windows, one ONNX call."""
        chunk = np.asarray(keys, dtype=np.int64)
        (probs,) = self.run({self.input_name: chunk}, [self.output_name])
        if probs.shape != (len(chunk), self.classes):
            raise ModelError(
                f"{self.model.path}: output shape {probs.shape}, expected ({len(chunk)}, {self.classes})"
            )
        return list(probs)

    def probabilities(self, windows: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        """Next-token distributions, one ONNX call per chunk of distinct uncached windows."""
        return self.score(windows)

    # -- rules -------------------------------------------------------------------------------
    def judge(self, window: tuple[int, ...], actual: int, probs: np.ndarray) -> Judgement:
        """Whether `actual` was expected after `window`: its rank, probability and which rule judged it."""
        if actual <= 0 or actual > self.end:  # UNK (or garbage) is always unexpected
            return Judgement(actual, self.classes, 0.0, True, "unknown")
        prob = float(probs[actual])
        if actual in self.rare or self._rare_context(window):
            seen = (window[-1], actual) in self.rare_bigrams
            return Judgement(actual, 0 if seen else self.classes, prob, not seen, "rare")
        rank = int((probs > prob).sum())
        if actual == self.end:
            return Judgement(actual, rank, prob, rank >= self.end_top_g, "end")
        return Judgement(actual, rank, prob, rank >= self.top_g, "frequent")

    def _rare_context(self, window: tuple[int, ...]) -> bool:
        if self.rare_context == "previous":
            return window[-1] in self.rare
        if self.rare_context == "window":
            return not self.rare.isdisjoint(window)
        return False

    def expected(self, probs: np.ndarray, k: int = TOP_EXPLAINED) -> tuple[tuple[int, float], ...]:
        """The k most expected next tokens with their probabilities (immutable: scores are memoised)."""
        top = np.argsort(-probs, kind="stable")[:k]
        return tuple((t, round(p, 4)) for t, p in zip(top.tolist(), probs[top].tolist(), strict=True))

    def session_positions(self, tokens: Sequence[int]) -> tuple[list[int], list[tuple[int, ...]]]:
        """A session's judged tokens (END appended when the model predicts it) and the window before each."""
        seq = [int(t) for t in tokens]
        if self.predict_end:
            seq.append(self.end)
        return seq, [window_before(seq, i, self.window, self.pad) for i in range(len(seq))]

    def judge_session(self, tokens: Sequence[int]) -> list[Judgement]:
        """Every position of a session (and END after the last, when the model predicts it)."""
        seq, windows = self.session_positions(tokens)
        probs = self.probabilities(windows)
        return [self.judge(w, a, p) for w, a, p in zip(windows, seq, probs, strict=True)]

    def session_score(self, tokens: Sequence[int], mode: str = "misses") -> float:
        """A session's number of misses, or their share of its lines with mode='fraction'."""
        judged = self.judge_session(tokens)
        misses = sum(j.miss for j in judged)
        if mode == "fraction":
            return misses / max(len(judged), 1)
        return float(misses)


class DeepLogDetector(MemoisedLines[tuple[int, ...]]):
    """Lines keyed by their window followed by the actual token; sessions by their misses."""

    kind = DetectorKind.SEQUENCE
    scorer: DeepLogScorer

    def __init__(self, name: str, scorer: DeepLogScorer, session_threshold: float, session_mode: str,
                 line_cache_size: int = 16384, line_threshold: float | None = None) -> None:
        super().__init__(name, scorer, line_cache_size)
        self.session_threshold = session_threshold
        self.session_mode = session_mode
        # A line fires when its rank is above the line threshold: top_g - 0.5 (DeepLog's rule) or,
        # in a stream whose entities interleave unrelated work, the rank calibrated on held-back
        # normal lines to the sensitivity's false-positive rate (never stricter than top_g).
        self.line_threshold = scorer.top_g - 0.5 if line_threshold is None else line_threshold

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> DeepLogDetector:
        """The detector for a model's section, with the line and session thresholds of the load's sensitivity."""
        section = load.section
        scorer = DeepLogScorer(load.onnx(), section.raw, load.name, section.integer("cache_size", 65536))
        # `thresholds` (per line) are ranks calibrated per sensitivity, never below top_g - 0.5;
        # `session_thresholds` bound the number of misses per session, calibrated on normal data.
        mode = str(section.get("session_score", "misses"))
        return cls(load.name, scorer, load.session_threshold, mode, section.integer("line_cache_size", 16384),
                   load.threshold)

    def line_keys(self, contexts: Sequence[LineContext]) -> tuple[list[int], list[tuple[int, ...]]]:
        """Lines with enough history, and each one's key: its window followed by its own token."""
        s = self.scorer
        window, pad = s.window, s.pad
        todo: list[int] = []
        # key = the window followed by the actual token: one tuple slice on the hot path
        keys: list[tuple[int, ...]] = []
        for i, c in enumerate(contexts):
            h = c.history
            if len(h) > window:
                todo.append(i)
                keys.append(tuple(h[-window - 1 :]))
            elif h:
                todo.append(i)
                keys.append((*window_before(h, len(h) - 1, window, pad), h[-1]))
        return todo, keys

    def score_keys(self, keys: list[tuple[int, ...]]) -> list[DetectorScore]:
        """The lines not in the memo: one model call for their distinct windows."""
        s = self.scorer
        windows = [k[:-1] for k in keys]
        return [self.line_score(s.judge(window, key[-1], p), p)
                for window, key, p in zip(windows, keys, s.probabilities(windows), strict=True)]

    def line_score(self, j: Judgement, probs: np.ndarray, extra: tuple[tuple[str, object], ...] = ()) -> DetectorScore:
        """A line's score: its rank against the line threshold, with what the model expected."""
        return DetectorScore(
            detector=self.name,
            score=float(j.rank),
            threshold=self.line_threshold,
            fired=j.rank > self.line_threshold,
            details=(
                ("actual", j.actual),
                ("actual_prob", round(j.prob, 4)),
                ("rank", j.rank),
                ("top_g", self.scorer.top_g),
                ("path", j.path),
                ("expected", self.scorer.expected(probs)),
                ("end", self.scorer.end),  # the token of "the session ends here" among the expected
                *extra,
            ),
        )

    def prefetch_sessions(self, sessions: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        """The windows of every position of these sessions, into the memo in one batch of calls."""
        self.scorer.fill([w for tokens, _ in sessions for w in self.scorer.session_positions(tokens)[1]])

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """The session's misses against its calibrated session threshold."""
        s = self.scorer
        judged = s.judge_session(tokens)
        misses = [k for k, j in enumerate(judged) if j.miss]
        score = len(misses) / max(len(judged), 1) if self.session_mode == "fraction" else float(len(misses))
        fired = score > self.session_threshold
        details: tuple[tuple[str, object], ...] = (
            ("misses", len(misses)),
            ("positions", len(judged)),
            ("first_miss", misses[0] if misses else None),
            ("unknown", sum(j.path == "unknown" for j in judged)),
        )
        if fired and misses:
            # What it expected where it first went wrong, and what came (the END token: the session stopped).
            k = misses[0]
            seq = [int(t) for t in tokens] + ([s.end] if s.predict_end else [])
            (probs,) = s.probabilities([window_before(seq, k, s.window, s.pad)])
            details += (("actual", judged[k].actual), ("end", s.end), ("path", judged[k].path),
                        ("expected", s.expected(probs)))
        return DetectorScore(detector=self.name, score=score, threshold=self.session_threshold, fired=fired,
                             details=details)

    def stats(self) -> dict[str, float]:
        """The shared counters plus the hit ratio of the window cache."""
        return {**super().stats(), "window_cache_hit_ratio": self.scorer.cache.hit_ratio}
