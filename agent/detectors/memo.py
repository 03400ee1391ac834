"""Memoisation for the hot path: most windows repeat, so a model runs once per distinct window.

`BoundedCache` is an LRU map with hit/miss counters (its size is a configured cap, so memory
stays bounded under unbounded input). `score_unique` runs a batch scorer once on the distinct,
not-yet-cached keys of a micro-batch and answers every key from the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """An LRU map of at most `capacity` entries that counts its hits and misses."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = max(0, capacity)
        self._data: OrderedDict[K, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        """Whether `key` is cached (not counted as a hit or a miss, not moved)."""
        return key in self._data

    def get(self, key: K) -> V | None:
        """The cached value (now most recently used), or None."""
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store a value, evicting the least recently used entry beyond capacity."""
        if self.capacity == 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)

    @property
    def hit_ratio(self) -> float:
        """Share of lookups answered from the cache (0 before any lookup)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def score_unique(
    keys: Sequence[K], cache: BoundedCache[K, V], score_batch: Callable[[list[K]], list[V]]
) -> list[V]:
    """Answer every key, calling `score_batch` once with the distinct keys not in the cache."""
    found: dict[K, V] = {}
    missing: list[K] = []
    pending: set[K] = set()
    for key in keys:
        if key in found:
            cache.hits += 1
            continue
        value = cache.get(key)
        if value is None:
            if key not in pending:
                pending.add(key)
                missing.append(key)
        else:
            found[key] = value
    if missing:
        for key, value in zip(missing, score_batch(missing), strict=True):
            cache.put(key, value)
            found[key] = value
    return [found[key] for key in keys]
