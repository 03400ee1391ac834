"""Time order and time stamps: a heap that releases generated lines in time order, and the clock
that writes epoch milliseconds as ISO-8601 UTC."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime

from trainer.simulator.world import DAY_MS


class Sink:
    """Collects generated lines and releases them in time order (ties: generation order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str, str, dict[str, object], str | None]] = []
        self._seq = 0

    def emit(
        self, t_ms: int, instance: str, template: str, incident: str | None = None, **fields: object
    ) -> None:
        """Queue one line of `template` at `t_ms` on `instance`, with its field values."""
        self._seq += 1
        heapq.heappush(self._heap, (t_ms, self._seq, instance, template, fields, incident))

    def release(self, before_ms: int) -> Iterator[tuple[int, str, str, dict[str, object], str | None]]:
        """Pop, in time order, every queued line before `before_ms`."""
        heap = self._heap
        while heap and heap[0][0] < before_ms:
            t_ms, _seq, instance, template, fields, incident = heapq.heappop(heap)
            yield t_ms, instance, template, fields, incident


class Clock:
    """Formats epoch milliseconds as ISO-8601 UTC with milliseconds, caching the date part."""

    def __init__(self) -> None:
        self._day = -1
        self._prefix = ""

    def format(self, t_ms: int) -> str:
        """`t_ms` as ISO-8601 UTC with milliseconds and a Z."""
        day, ms = divmod(t_ms, DAY_MS)
        if day != self._day:
            self._day = day
            self._prefix = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%dT")
        secs, milli = divmod(ms, 1000)
        h, rem = divmod(secs, 3600)
        m, s = divmod(rem, 60)
        return f"{self._prefix}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


def iso(t_ms: int) -> str:
    """`t_ms` as ISO-8601 UTC with milliseconds (no cached clock needed)."""
    return Clock().format(t_ms)
