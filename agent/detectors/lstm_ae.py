"""The LSTM autoencoder (seed 002) served from ONNX: how badly does it rebuild the last window?

The model reads a window of `window` model tokens with their `Level`s (left-padded with
PAD = vocab_size + 1 and level 0), squeezes it through LSTM(64) → LSTM(32) → latent →
LSTM(32) → LSTM(64), and rebuilds every position's token and level. Its ONNX graph outputs
the reconstruction error per window directly (the negative log-likelihood of the actual
token and level at the worst-rebuilt non-pad position, or their mean: the trainer's `score`
option), so serving is one call and no post-processing.

A line's score is the error of the window ending at that line; a session's score is the
largest error over its windows. Short histories are padded (the model was trained on padded
prefixes), so every line with any history is scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from agent.detectors.onnx_scorer import MemoisedLines, OnnxScorer
from agent.detectors.section import ModelLoad
from agent.errors import BundleError, ModelError
from agent.onnx_session import OnnxModel
from agent.types import DetectorKind, DetectorScore, LineContext

TOKENS = "tokens"
LEVELS = "levels"
OUTPUT = "error"
WORST = "worst_position"  # second output: the window position rebuilt worst (explanations)
LEVEL_COUNT = 8  # agent.types.Level values 0..7

Window = tuple[tuple[int, ...], tuple[int, ...]]


def window_ending(
    tokens: Sequence[int], levels: Sequence[int], end: int, size: int, pad: int
) -> Window:
    """Tokens and levels of the `size` positions before `end`, left-padded (PAD, level 0).
    Shared by training and serving. Levels outside 0..7 are clipped."""
    start = max(0, end - size)
    toks = tuple(tokens[start:end])
    lv = tuple(levels[start:end])
    if len(lv) != len(toks):  # levels missing or short: unknown level
        lv = (0,) * len(toks)
    elif lv and (min(lv) < 0 or max(lv) >= LEVEL_COUNT):
        lv = tuple(min(max(int(v), 0), LEVEL_COUNT - 1) for v in lv)
    n = size - len(toks)
    if n <= 0:  # the hot path of a long-lived entity: no padding to add
        return toks, lv
    return (pad,) * n + toks, (0,) * n + lv


class LstmAeScorer(OnnxScorer[Window, float]):
    """The ONNX model and its memo (the trainer calibrates through this same class)."""

    # Four LSTM layers over 20 positions: per row 10-20 % cheaper in calls of ≤ 64 rows than of
    # 1,024 (a smaller batch's gates stay in cache; BENCHMARKS.md, "Session verdicts").
    ROWS_PER_CALL = 64

    def __init__(self, model: OnnxModel, section: Mapping[str, Any], name: str = "lstm_ae",
                 cache_size: int = 65536) -> None:
        super().__init__(model, name, cache_size)
        try:
            self.window = int(section["window"])
            self.vocab_size = int(section["vocab_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model {name!r}: malformed lstm_ae section ({exc!r}): retrain") from None
        self.pad = self.vocab_size + 1
        inputs = section.get("inputs", [TOKENS, LEVELS])
        self.tokens_name, self.levels_name = str(inputs[0]), str(inputs[1])
        for input_name in (self.tokens_name, self.levels_name):
            if input_name not in model.input_names:
                raise ModelError(f"{model.path}: no input {input_name!r} (has {model.input_names}): retrain")
        model.check_inputs({self.tokens_name: 2, self.levels_name: 2})
        for input_name in (self.tokens_name, self.levels_name):
            shape = model.input_shape(input_name)
            if isinstance(shape[1], int) and shape[1] != self.window:
                raise ModelError(
                    f"{model.path}: input {input_name!r} takes windows of {shape[1]} positions, "
                    f"the manifest says {self.window}: the bundle is inconsistent, retrain it"
                )
        self.output_name = str(section.get("output", OUTPUT))
        worst = section.get("worst_output")
        self.worst_name = str(worst) if worst and worst in model.output_names else None

    def compute(self, keys: list[Window]) -> list[float]:
        """Reconstruction errors of distinct windows, one ONNX call."""
        toks = np.asarray([w[0] for w in keys], dtype=np.int64).reshape(len(keys), self.window)
        lv = np.asarray([w[1] for w in keys], dtype=np.int64).reshape(len(keys), self.window)
        (err,) = self.run({self.tokens_name: toks, self.levels_name: lv}, [self.output_name])
        if err.shape != (len(keys),):
            raise ModelError(f"{self.model.path}: output shape {err.shape}, expected ({len(keys)},)")
        return [float(e) for e in err]

    def worst_positions(self, windows: Sequence[Window]) -> list[int | None]:
        """The window position rebuilt worst, for the few windows an alert explains (one call;
        None for a bundle whose graph does not output it)."""
        if self.worst_name is None or not windows:
            return [None] * len(windows)
        toks = np.asarray([w[0] for w in windows], dtype=np.int64).reshape(len(windows), self.window)
        lv = np.asarray([w[1] for w in windows], dtype=np.int64).reshape(len(windows), self.window)
        (worst,) = self.model.run({self.tokens_name: toks, self.levels_name: lv}, [self.worst_name])
        return [int(w) for w in np.asarray(worst).reshape(-1)]

    def errors(self, windows: Sequence[Window]) -> list[float]:
        """Reconstruction error of each window (memoised; one ONNX call for the misses)."""
        return self.score(windows)

    def session_windows(self, tokens: Sequence[int], levels: Sequence[int] | None) -> list[Window]:
        """One window ending at each position of a session (an empty session: one padding window)."""
        lv = list(levels) if levels is not None else []
        if not tokens:  # an empty session: judge the all-padding window (nothing happened)
            return [window_ending([], [], 0, self.window, self.pad)]
        return [window_ending(tokens, lv, i + 1, self.window, self.pad) for i in range(len(tokens))]

    def session_score(self, tokens: Sequence[int], levels: Sequence[int] | None = None) -> float:
        """A session's worst window error."""
        return max(self.errors(self.session_windows(tokens, levels)))


class WindowDetector(MemoisedLines[Window]):
    """A window model served through `LstmAeScorer`: lines keyed by the window ending at them
    (the LSTM-AE here, the supervised classifier in `agent.detectors.supervised_lstm`)."""

    kind = DetectorKind.SEQUENCE
    scorer: LstmAeScorer

    def __init__(self, name: str, scorer: LstmAeScorer, threshold: float, session_threshold: float,
                 line_cache_size: int = 16384) -> None:
        super().__init__(name, scorer, line_cache_size)
        self.threshold = threshold
        self.session_threshold = session_threshold

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> Self:
        """The detector for a model's section, with the line and session thresholds of the load's sensitivity."""
        cache_size = load.section.integer("cache_size", 65536)
        return cls(load.name, LstmAeScorer(load.onnx(), load.section.raw, load.name, cache_size), load.threshold,
                   load.session_threshold, load.section.integer("line_cache_size", 16384))

    def prefetch_sessions(self, sessions: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        """The windows of these sessions, into the memo in one batch of calls."""
        self.scorer.fill([w for tokens, levels in sessions for w in self.scorer.session_windows(tokens, levels)])

    def line_keys(self, contexts: Sequence[LineContext]) -> tuple[list[int], list[Window]]:
        """Lines with history, and the window ending at each of them."""
        s = self.scorer
        todo = [i for i, c in enumerate(contexts) if c.history]
        return todo, [window_ending(contexts[i].history, contexts[i].levels, len(contexts[i].history), s.window,
                                    s.pad) for i in todo]


class LstmAutoencoderDetector(WindowDetector):
    """Lines keyed by the window ending at them; sessions by their worst window."""

    def score_keys(self, keys: list[Window]) -> list[DetectorScore]:
        """Each window's reconstruction error against the line threshold; an alert also names the
        position rebuilt worst."""
        errors = self.scorer.errors(keys)
        fired = [i for i, err in enumerate(errors) if err > self.threshold]
        worst: dict[int, int | None] = dict(zip(fired, self.scorer.worst_positions([keys[i] for i in fired]),
                                                strict=True))
        out = []
        for i, err in enumerate(errors):
            details: tuple[tuple[str, object], ...] = (("reconstruction_error", round(err, 4)),
                                                       ("window", self.scorer.window))
            if worst.get(i) is not None:
                details += (("worst_position", worst[i]),)
            out.append(DetectorScore(self.name, err, self.threshold, err > self.threshold, details))
        return out

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """The session's worst window error, naming the position it came from."""
        windows = self.scorer.session_windows(tokens, levels)
        errors = self.scorer.errors(windows)
        worst = int(np.argmax(errors))
        score = errors[worst]
        return DetectorScore(
            detector=self.name,
            score=score,
            threshold=self.session_threshold,
            fired=score > self.session_threshold,
            details=(("reconstruction_error", round(score, 4)), ("worst_position", worst),
                     ("windows", len(windows))),
        )
