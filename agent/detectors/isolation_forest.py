"""Isolation Forest: one evaluation per micro-batch, identical rows answered once.

The bundle's model is ONNX. When the trainer also stored the trees as arrays beside it
(`agent/detectors/forest.py`), the trees are walked by numpy and only the graph's five-node
tail runs in ONNX Runtime: the same float32 scores (checked on the stored probe rows at load;
on any difference the whole graph is served, as for bundles without the arrays) at a fraction
of the per-call cost of the ~2,000-node graph (`bench/forest_scoring.py`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import structlog

from agent.detectors.forest import ForestArrays, load_forest
from agent.detectors.onnx_scorer import OnnxScorer, memo_stats, publish_hit_ratio
from agent.detectors.section import ModelLoad
from agent.errors import BundleError
from agent.features import FEATURE_NAMES
from agent.onnx_session import OnnxModel
from agent.text_memo import remember
from agent.types import DetectorKind, DetectorScore, LineContext

log = structlog.get_logger(__name__)


class TreeTail:
    """The trees as numpy arrays and the graph's tail after their Sum, as one ONNX model."""

    def __init__(self, arrays: ForestArrays, tail: OnnxModel, tail_input: str, output_name: str) -> None:
        self.arrays = arrays
        self.tail = tail
        self.tail_input = tail_input
        self.output_name = output_name

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The graph's `scores` output of rows `x`, flat float32."""
        sums = self.arrays.sums(x)
        return np.asarray(self.tail.run({self.tail_input: sums}, [self.output_name])[0]).reshape(-1)


class IsolationForestScorer(OnnxScorer[bytes, float]):
    """Feature rows (as float32 bytes) -> −decision_function: higher = more anomalous."""

    def __init__(self, model: OnnxModel, name: str, input_name: str = "X", output_name: str = "scores",
                 cache_size: int = 65536, trees: TreeTail | None = None) -> None:
        super().__init__(model, name, cache_size)
        self.input_name = input_name
        self.output_name = output_name
        self.trees = trees

    def compute(self, keys: list[bytes]) -> list[float]:
        """−decision_function of distinct feature rows: the trees in numpy when stored, else one ONNX call."""
        x = np.frombuffer(b"".join(keys), dtype=np.float32).reshape(len(keys), -1)
        if self.trees is None:
            out = self.run({self.input_name: x}, [self.output_name])[0].reshape(-1)
        else:
            began = time.perf_counter()
            out = self.trees.scores(x)
            self.record(len(keys), time.perf_counter() - began)
        return [float(-s) for s in out]

    def stats(self) -> dict[str, float]:
        """Calls, rows and seconds; `numpy_trees` 1.0 when the trees are walked by numpy."""
        return {**super().stats(), "numpy_trees": float(self.trees is not None)}


def stored_trees(load: ModelLoad, model: OnnxModel, input_name: str, output_name: str) -> TreeTail | None:
    """The trees stored beside the ONNX file, when present and bit-identical to the whole graph
    on the stored probe rows (else None: the whole graph is served, with a log line)."""
    section = load.section
    if "trees" not in section.raw or "tail" not in section.raw:
        return None
    try:
        stored = load_forest(load.bundle.file(str(section.raw["trees"])))
        tail = OnnxModel(load.bundle.file(str(section.raw["tail"])), load.options)
        trees = TreeTail(stored.arrays, tail, str(section.raw.get("tail_input", tail.input_names[0])), output_name)
        got = trees.scores(stored.probe)
        tail.warm_up()  # (the probe rows are one batch shape; the lines come a few at a time)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("forest_arrays_unusable", model=load.name, error=str(exc))
        return None
    reference = model.run({input_name: stored.probe}, [output_name])[0]
    if not stored.matches(got, reference):
        log.warning("forest_arrays_differ", model=load.name, fallback="onnx graph")
        return None
    return trees


SCORE_OBJECTS = 2048  # distinct scores whose DetectorScore is kept (emptied when full)


class IsolationForestDetector:
    """Isolation Forest on the per-line feature vector (numpy trees or the ONNX graph)."""

    kind = DetectorKind.FEATURE

    def __init__(self, name: str, scorer: IsolationForestScorer, threshold: float) -> None:
        self.name = name
        self.scorer = scorer
        self.model = scorer.model
        self.threshold = threshold
        self._scores: dict[float, DetectorScore] = {}  # score -> its one object at `threshold`
        self._threshold_of_scores = threshold

    @classmethod
    def from_bundle(cls, load: ModelLoad) -> IsolationForestDetector:
        """The detector for a bundle section; refuses a bundle trained on other features."""
        name, section = load.name, load.section
        if list(section.get("features", [])) != list(FEATURE_NAMES):
            raise BundleError(
                f"model {name!r} was trained on features {section.get('features')}, this agent computes "
                f"{list(FEATURE_NAMES)}: retrain the bundle with this version"
            )
        model = load.onnx(warm_up=False)  # run on the probe rows instead when the trees are stored
        input_name = str(section.get("input", "X"))
        output_name = str(section.get("output", "scores"))
        model.check_inputs({input_name: 2})
        trees = stored_trees(load, model, input_name, output_name) if load.options.numpy_trees else None
        if trees is None:
            model.warm_up()
        return cls(name, IsolationForestScorer(model, name, input_name, output_name, trees=trees), load.threshold)

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        """−decision_function of each line's features (memoised: feature rows repeat)."""
        if not contexts:
            return []
        keys = [np.asarray(c.features, dtype=np.float32).tobytes() for c in contexts]
        scores = self.scorer.score(keys)
        publish_hit_ratio(self.name, self.scorer.cache)
        th = self.threshold
        if th != self._threshold_of_scores:
            self._scores.clear()
            self._threshold_of_scores = th
        known = self._scores
        out: list[DetectorScore | None] = []
        for s in scores:
            # one object per score value (rows repeat their scores: an emitted anomaly keeps
            # fewer objects alive); a float's value is its key (the scorer gives Python floats)
            found = known.get(s)
            if found is None:
                found = DetectorScore(self.name, s, th, s > th)
                if type(s) is float and s == s and s:  # (not NaN; not 0.0, which equals -0.0)
                    remember(known, s, found, SCORE_OBJECTS)
            out.append(found)
        return out

    def score_rows(self, rows: Sequence[Sequence[float]]) -> list[DetectorScore]:
        """`score_lines` of lines with these feature rows (the pipeline's short road scores a
        batch's unknown rows before it builds any line object): the same float32 keys, memo and
        scores."""
        if not rows:
            return []
        x = np.asarray(rows, dtype=np.float32)
        scores = self.scorer.score([r.tobytes() for r in x])
        publish_hit_ratio(self.name, self.scorer.cache)
        th = self.threshold
        return [DetectorScore(self.name, s, th, s > th) for s in scores]

    def score_session(self, tokens: Sequence[int], levels: Sequence[int]) -> DetectorScore | None:
        """None: a per-line model; sessions are judged by the sequence models."""
        return None  # a per-line model: sessions are judged by the sequence models

    def stats(self) -> dict[str, float]:
        """Calls, rows and memo hits/misses, for benchmarks and metrics."""
        return {**self.scorer.stats(), **memo_stats(self.scorer.cache)}
