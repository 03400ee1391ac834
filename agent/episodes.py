"""Episodes: runs of lines with no quiet gap longer than a set time between them.

One definition for the whole product. The trainer's history check (`trainer/history.py`) calls
the suspect lines of its history one incident per episode. The agent's incident grouper
(`agent/incidents.py`) opens one incident per episode of never-seen lines on a stream or of
trouble on one actor. Both use `EPISODE_GAP_SECS` by default, and both split where
`starts_new_episode` says.

An hour is the default: that is how long an operator's "it went quiet" lasts. A restart, a
failover or a crash loop logs well within an hour of its last line; two failures an hour and
more apart with nothing in between are two stories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

EPISODE_GAP_SECS = 3600.0

T = TypeVar("T")


def starts_new_episode(previous: float, t: float, gap: float) -> bool:
    """True when a line at `t` follows the previous line (at `previous`) by more than `gap`."""
    return t - previous > gap


def split_episodes(items: Sequence[T], time_of: Callable[[T], float], gap: float = EPISODE_GAP_SECS) -> list[list[T]]:
    """`items` (in time order) cut into episodes wherever a quiet gap longer than `gap` falls."""
    out: list[list[T]] = []
    previous = 0.0
    for item in items:
        t = time_of(item)
        if not out or starts_new_episode(previous, t, gap):
            out.append([])
        out[-1].append(item)
        previous = t
    return out
