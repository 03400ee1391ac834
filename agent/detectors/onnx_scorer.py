"""The one base of every ONNX-served model: run, timing, metrics, memo and stats.

A scorer maps hashable keys (a feature row's bytes, a window of tokens) to values (a score,
a probability vector) through one ONNX model. Subclasses say how one call is built and read
(`compute`); the base times every call, feeds the Prometheus histograms, counts calls and
rows, splits work into calls of at most `max_batch` keys, and memoises: `score` runs the model
once per distinct key not in its bounded LRU cache. The trainer calibrates through the same
scorers, so calibration and serving cannot disagree.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from agent import metrics
from agent.detectors.memo import BoundedCache, score_unique
from agent.errors import ModelError
from agent.onnx_session import OnnxModel
from agent.types import DetectorScore, LineContext

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_BATCH = 1024


class OnnxScorer(ABC, Generic[K, V]):
    """One ONNX model behind a memo (see the module docstring)."""

    # Rows per ONNX Runtime call unless the caller says otherwise: a subclass sets the cap its
    # model is measured fastest at (`bench/batch_shapes.py`; every cap gives the same values).
    ROWS_PER_CALL = MAX_BATCH

    def __init__(self, model: OnnxModel, name: str, cache_size: int = 65536, max_batch: int | None = None) -> None:
        self.model = model
        self.name = name
        self.max_batch = max(1, self.ROWS_PER_CALL if max_batch is None else max_batch)
        self.cache: BoundedCache[K, V] = BoundedCache(cache_size)
        self.calls = 0
        self.rows = 0
        self.seconds = 0.0
        # the model's labelled histograms, looked up once (`labels` costs a lock and a lookup)
        self._seconds_metric = metrics.inference_seconds.labels(model=name)
        self._batch_metric = metrics.inference_batch.labels(model=name)

    @abstractmethod
    def compute(self, keys: list[K]) -> list[V]:
        """Values of `keys` (at most `max_batch`, distinct): build the feeds, `run`, read the outputs."""

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
        """One timed ONNX Runtime call; its rows are the first input's first axis."""
        rows = len(next(iter(feeds.values())))
        began = time.perf_counter()
        try:
            result = self.model.run(dict(feeds), list(outputs))
        except Exception as exc:  # ORT raises its own types: name the model and the batch
            raise ModelError(f"{self.name}: ONNX run failed on a batch of {rows} rows: {exc}") from None
        self.record(rows, time.perf_counter() - began)
        return result

    def record(self, rows: int, elapsed: float) -> None:
        """Count one model call of `rows` rows that took `elapsed` seconds (stats and histograms)."""
        self.calls += 1
        self.rows += rows
        self.seconds += elapsed
        self._seconds_metric.observe(elapsed)
        self._batch_metric.observe(rows)

    def score_uncached(self, keys: Sequence[K]) -> list[V]:
        """Values of `keys` without the memo, in calls of at most `max_batch` keys."""
        out: list[V] = []
        for start in range(0, len(keys), self.max_batch):
            out.extend(self.compute(list(keys[start : start + self.max_batch])))
        return out

    def score(self, keys: Sequence[K]) -> list[V]:
        """Values of `keys`, the model run once per distinct key not in the memo."""
        return score_unique(keys, self.cache, self.score_uncached)

    def fill(self, keys: Sequence[K]) -> None:
        """Score the distinct keys not in the memo, in as few calls as `max_batch` allows, into the
        memo (uncounted: the lookups that follow count as they would have)."""
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        for key, value in zip(missing, self.score_uncached(missing), strict=True):
            self.cache.put(key, value)

    def stats(self) -> dict[str, float]:
        """Model calls, rows run and seconds spent in ONNX Runtime."""
        return {"calls": float(self.calls), "rows": float(self.rows), "inference_seconds": self.seconds}


def memo_stats(cache: BoundedCache[K, V]) -> dict[str, float]:
    """Hits, misses and hit ratio of the memo a detector answers lines from."""
    return {"cache_hits": float(cache.hits), "cache_misses": float(cache.misses), "hit_ratio": cache.hit_ratio}


def publish_hit_ratio(name: str, cache: BoundedCache[K, V]) -> None:
    """Set the memo hit-ratio gauge of model `name` (after every micro-batch)."""
    metrics.memo_hit_ratio.labels(model=name).set(cache.hit_ratio)


class MemoisedLines(ABC, Generic[K]):
    """A detector that answers lines from a memo of finished `DetectorScore`s, keyed by what the
    model reads of a line (its window): a repeated line costs one dict lookup, and the model runs
    once per micro-batch on the distinct keys not in the memo. Subclasses say which lines they
    score and their keys (`line_keys`), and how a batch of keys is scored (`score_keys`)."""

    def __init__(self, name: str, scorer: OnnxScorer[Any, Any], line_cache_size: int = 16384) -> None:
        self.name = name
        self.scorer = scorer
        self.lines = 0
        self.memo: BoundedCache[K, DetectorScore] = BoundedCache(line_cache_size)

    @abstractmethod
    def line_keys(self, contexts: Sequence[LineContext]) -> tuple[list[int], list[K]]:
        """The positions of the lines this model scores, and their keys."""

    @abstractmethod
    def score_keys(self, keys: list[K]) -> list[DetectorScore]:
        """Scores of distinct keys not in the memo."""

    def score_lines(self, contexts: Sequence[LineContext]) -> list[DetectorScore | None]:
        """Score the lines that have a key, once per distinct key (the memo answers repeats)."""
        todo, keys = self.line_keys(contexts)
        out: list[DetectorScore | None] = [None] * len(contexts)
        for i, score in zip(todo, score_unique(keys, self.memo, self.score_keys), strict=True):
            out[i] = score
        self.lines += len(contexts)
        publish_hit_ratio(self.name, self.memo)
        return out

    def stats(self) -> dict[str, float]:
        """`cache_*`/`hit_ratio`: lines answered from the line memo; `rows`: windows the model ran."""
        return {**self.scorer.stats(), **memo_stats(self.memo), "lines": float(self.lines)}
