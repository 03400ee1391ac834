"""Memos of pure functions of a text (template words, token types, titles): a plain dict that
is emptied when full. Cheaper than an LRU on the hit, which is the hot path; the callers keep
only short texts, so a stream of long hostile lines cannot fill memory with them."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def remember(memo: dict[K, V], key: K, value: V, max_entries: int) -> None:
    """Keep `value` under `key`, emptying `memo` first when it holds `max_entries` already."""
    if len(memo) >= max_entries:
        memo.clear()
    memo[key] = value
