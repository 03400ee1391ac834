"""AutoLog-style dense autoencoder (seed 001) served from ONNX: how badly does it rebuild a window's
vector of template counts and of the other detectors' scores?

A window's vector (`window_vector`) is
- log(1 + count) of every model token in it (UNK token 0 included; padding is never counted),
- log(1 + count) of every `Level` in it,
- for each input model named in the section (`inputs`, e.g. DeepLog, the LSTM autoencoder), its
  score for the same line (or session), centred and scaled by what it scores on held-back normal
  data: z = (score − median) / (p99 − median), clipped to [−1, 10]; a line the input does not
  judge counts as 0 (normal).
The autoencoder (trainer/autolog.py: dense layers, ReLU) rebuilds the vector; its ONNX graph
outputs the mean squared reconstruction error per row directly, so serving is one call (and the
entry rebuilt worst, asked only for the rows that fire: what the explanation names).

A line's score is the error of the window of the last `window` lines of its entity (history
includes the line itself), with the inputs' line scores; a session's score is the error of the
whole session's vector, with the inputs' session scores. Keys are the window's tokens and levels
plus the rounded input values (the counts are taken only for the keys the memo misses).

Inputs are the served instances of the other models when the loader shares them
(`bind_inputs`, called by `load_detectors`): their memos answer for the lines the pipeline has
just scored, so AutoLog adds only its own dense pass. Served alone it loads its inputs from the
bundle itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from agent.bundle import Bundle
from agent.detectors.onnx_scorer import MemoisedLines, OnnxScorer
from agent.detectors.section import ModelLoad, ModelSection
from agent.errors import BundleError, ModelError
from agent.onnx_session import OnnxModel, RuntimeOptions
from agent.types import DetectorKind, DetectorScore, LineContext, Sensitivity

INPUT = "x"
OUTPUT = "error"
WORST = "worst_entry"  # second output: the vector entry rebuilt worst (explanations)
LEVEL_COUNT = 8  # agent.types.Level values 0..7
Z_MIN, Z_MAX = -1.0, 10.0
Z_DECIMALS = 3  # input values are rounded into the memo key (and the vector)

Key = tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]  # tokens, levels, input values


@dataclass(frozen=True, slots=True)
class InputNorm:
    """How one input model's raw score becomes a vector entry, per scope (line, session)."""

    name: str
    line: tuple[float, float]  # median, p99 − median on held-back normal line scores
    session: tuple[float, float]

    def z(self, scores: Sequence[float | None], session: bool) -> list[float]:
        """The input's entries for raw scores: 0 where it did not judge (None), else the score
        centred, scaled, clipped to [Z_MIN, Z_MAX] and rounded (one numpy pass per batch)."""
        centre, scale = self.session if session else self.line
        raw = np.fromiter((np.nan if s is None else s for s in scores), dtype=np.float64, count=len(scores))
        value = (raw - centre) / scale if scale > 0 else np.zeros_like(raw)
        out: list[float] = np.round(np.clip(np.nan_to_num(value, nan=0.0), Z_MIN, Z_MAX), Z_DECIMALS).tolist()
        return out

    def to_json(self) -> dict[str, Any]:
        """The section's record of this input."""
        return {"name": self.name, "line": list(self.line), "session": list(self.session)}

    @staticmethod
    def parse(raw: Mapping[str, Any]) -> InputNorm:
        """From the section's `inputs` entry."""
        line, session = raw["line"], raw["session"]
        return InputNorm(str(raw["name"]), (float(line[0]), float(line[1])), (float(session[0]), float(session[1])))


def key_of(tokens: Sequence[int], levels: Sequence[int], values: Sequence[float]) -> Key:
    """The memo key of a window or session: its tokens and levels (as tuples: cheap on the hot
    path; the counts are taken only for keys the memo misses) and the input values."""
    return tuple(tokens), tuple(levels), tuple(values)


def width(vocab_size: int, inputs: int) -> int:
    """The vector's length: one entry per token (UNK included), per level and per input."""
    return vocab_size + 1 + LEVEL_COUNT + inputs


def vectors(keys: Sequence[Key], vocab_size: int, inputs: int) -> np.ndarray:
    """The float32 rows of the keys (shared by training and serving). Tokens outside the
    vocabulary (padding, negative) are not counted; levels are clipped to 0..7."""
    n, w = len(keys), width(vocab_size, inputs)
    level_at = vocab_size + 1
    input_at = level_at + LEVEL_COUNT
    toks = np.fromiter(chain.from_iterable(k[0] for k in keys), dtype=np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.fromiter((len(k[0]) for k in keys), np.int64, n))
    keep = (toks >= 0) & (toks <= vocab_size)
    flat = [rows[keep] * w + toks[keep]]
    lv = np.fromiter(chain.from_iterable(k[1] for k in keys), dtype=np.int64)
    if len(lv):
        lrows = np.repeat(np.arange(n, dtype=np.int64), np.fromiter((len(k[1]) for k in keys), np.int64, n))
        flat.append(lrows * w + level_at + np.clip(lv, 0, LEVEL_COUNT - 1))
    x = np.bincount(np.concatenate(flat), minlength=n * w).astype(np.float32).reshape(n, w)
    np.log1p(x[:, :input_at], out=x[:, :input_at])
    if inputs:
        x[:, input_at:] = np.asarray([k[2] for k in keys], dtype=np.float32).reshape(len(keys), inputs)
    return x


class AutoLogScorer(OnnxScorer[Key, float]):
    """The ONNX autoencoder and its memo (the trainer calibrates through this same class)."""

    def __init__(self, model: OnnxModel, section: Mapping[str, Any], name: str = "autolog",
                 cache_size: int = 65536) -> None:
        super().__init__(model, name, cache_size)
        try:
            self.window = int(section["window"])
            self.vocab_size = int(section["vocab_size"])
            self.inputs = [InputNorm.parse(x) for x in section.get("inputs", [])]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"model {name!r}: malformed autolog section ({exc!r}): retrain") from None
        self.input_name = str(section.get("input", INPUT))
        self.output_name = str(section.get("output", OUTPUT))
        worst = section.get("worst_output")
        self.worst_name = str(worst) if worst and worst in model.output_names else None
        model.check_inputs({self.input_name: 2})
        shape = model.input_shape(self.input_name)
        expected = width(self.vocab_size, len(self.inputs))
        if isinstance(shape[1], int) and shape[1] != expected:
            raise ModelError(f"{model.path}: input {self.input_name!r} takes {shape[1]} values, the manifest "
                             f"says {expected}: the bundle is inconsistent, retrain it")

    def compute(self, keys: list[Key]) -> list[float]:
        """Reconstruction errors of distinct vectors, one ONNX call."""
        (err,) = self.run({self.input_name: vectors(keys, self.vocab_size, len(self.inputs))}, [self.output_name])
        if err.shape != (len(keys),):
            raise ModelError(f"{self.model.path}: output shape {err.shape}, expected ({len(keys)},)")
        return [float(e) for e in err]

    def worst_entries(self, keys: Sequence[Key]) -> list[int | None]:
        """The vector entry rebuilt worst, for the few keys an alert explains (one call; None for
        a bundle whose graph does not output it)."""
        if self.worst_name is None or not keys:
            return [None] * len(keys)
        x = vectors(keys, self.vocab_size, len(self.inputs))
        (worst,) = self.model.run({self.input_name: x}, [self.worst_name])
        return [int(w) for w in np.asarray(worst).reshape(-1)]

    def entry(self, index: int) -> tuple[str, object]:
        """What vector entry `index` counts: ("template_token", token), ("level", level) or
        ("input", model name)."""
        if index <= self.vocab_size:
            return "template_token", index
        if index < self.vocab_size + 1 + LEVEL_COUNT:
            return "level", index - self.vocab_size - 1
        return "input", self.inputs[index - self.vocab_size - 1 - LEVEL_COUNT].name

    def line_key(self, history: Sequence[int], levels: Sequence[int], values: Sequence[float]) -> Key:
        """The key of the window of the last `window` lines of a history."""
        lv = levels[-self.window :] if len(levels) == len(history) else ()
        return key_of(history[-self.window :], lv, values)

    def session_key(self, tokens: Sequence[int], levels: Sequence[int], values: Sequence[float]) -> Key:
        """The key of a whole session."""
        return key_of(tokens, levels if len(levels) == len(tokens) else (), values)


class AutoLogDetector(MemoisedLines[Key]):
    """Lines keyed by their window's counts and the inputs' scores; sessions by the whole session's."""

    kind = DetectorKind.FEATURE
    scorer: AutoLogScorer

    def __init__(self, name: str, scorer: AutoLogScorer, threshold: float, session_threshold: float,
                 line_cache_size: int = 16384, source: InputSource | None = None) -> None:
        super().__init__(name, scorer, line_cache_size)
        self.threshold = threshold
        self.session_threshold = session_threshold
        self.source = source
        self.shared: dict[str, Any] = {}

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> AutoLogDetector:
        """The detector for a model's section, with the line and session thresholds of the load's sensitivity."""
        cache_size = load.section.integer("cache_size", 65536)
        scorer = AutoLogScorer(load.onnx(), load.section.raw, load.name, cache_size)
        for x in scorer.inputs:
            if x.name not in load.bundle.models:
                raise BundleError(f"model {load.name!r} reads the scores of {x.name!r}, which the bundle lacks: "
                                  "retrain the bundle")
        return cls(load.name, scorer, load.threshold, load.session_threshold,
                   load.section.integer("line_cache_size", 16384),
                   InputSource(load.bundle, load.options, load.sensitivity))

    def bind_inputs(self, served: Mapping[str, Any]) -> None:
        """Use the served instances of the input models (their memos answer what the pipeline
        has just scored) instead of loading private copies."""
        self.shared = {x.name: served[x.name] for x in self.scorer.inputs if x.name in served}

    def _input(self, name: str) -> Any:
        found = self.shared.get(name)
        if found is None:
            if self.source is None:
                raise BundleError(f"model {self.name!r}: input model {name!r} is not available")
            found = self.shared[name] = self.source.load(name)
        return found

    def line_keys(self, contexts: Sequence[LineContext]) -> tuple[list[int], list[Key]]:
        """Lines with history, and their window's counts with the inputs' line scores."""
        todo = [i for i, c in enumerate(contexts) if c.history]
        picked = [contexts[i] for i in todo]
        columns = [x.z([None if s is None else s.score for s in self._input(x.name).score_lines(picked)],
                       session=False) for x in self.scorer.inputs]
        rows = list(zip(*columns, strict=True)) if columns else [()] * len(picked)
        line_key = self.scorer.line_key
        return todo, [line_key(c.history, c.levels, row) for c, row in zip(picked, rows, strict=True)]

    def score_keys(self, keys: list[Key]) -> list[DetectorScore]:
        """Each window's reconstruction error against the line threshold."""
        errors = self.scorer.score(keys)
        fired = [i for i, err in enumerate(errors) if err > self.threshold]
        worst = dict(zip(fired, self.scorer.worst_entries([keys[i] for i in fired]), strict=True))
        return [DetectorScore(self.name, err, self.threshold, err > self.threshold,
                              self._details(err, key, worst.get(i), ("window", self.scorer.window)))
                for i, (err, key) in enumerate(zip(errors, keys, strict=True))]

    def _details(self, err: float, key: Key, worst: int | None,
                 size: tuple[str, object]) -> tuple[tuple[str, object], ...]:
        inputs = tuple((f"input_{x.name}", v) for x, v in zip(self.scorer.inputs, key[2], strict=True))
        out: tuple[tuple[str, object], ...] = (("reconstruction_error", round(err, 4)), size, *inputs)
        if worst is not None:
            what, value = self.scorer.entry(worst)
            out += (("worst_entry", what), ("worst_value", value))
        return out

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """The whole session's reconstruction error, with the inputs' session scores."""
        return self.score_session_given(tokens, levels, {})

    def score_session_given(self, tokens: Sequence[int], levels: Sequence[int],
                            given: Mapping[str, DetectorScore | None]) -> DetectorScore | None:
        """`score_session`, reading the inputs' session scores from `given` where they are
        there (a caller that has just computed them: `agent.detectors.base.judge_session`)."""
        values = []
        for x in self.scorer.inputs:
            judged = given[x.name] if x.name in given else self._input(x.name).score_session(tokens, levels)
            values += x.z([None if judged is None else judged.score], session=True)
        key = self.scorer.session_key(tokens, levels, values)
        (score,) = self.scorer.score([key])
        fired = score > self.session_threshold
        worst = self.scorer.worst_entries([key])[0] if fired else None
        details = self._details(score, key, worst, ("lines", len(tokens)))
        return DetectorScore(self.name, score, self.session_threshold, fired, details)


@dataclass(frozen=True)
class InputSource:
    """Where an AutoLog served alone loads its input models from: its own bundle."""

    bundle: Bundle
    options: RuntimeOptions
    sensitivity: Sensitivity

    def load(self, name: str) -> Any:
        """The served detector of the bundle's model `name`."""
        from agent.detectors.base import load_detector

        return load_detector(self.bundle, ModelSection.parse(name, self.bundle.models[name]), self.options,
                             self.sensitivity)
