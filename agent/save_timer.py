"""The timer that state saved from the processing loop runs on (the online miner's snapshot,
the held-back outage's count): the clock is passed in, the first look starts it, and it is due
once `interval_secs` have passed since it last fired."""

from __future__ import annotations


class SaveTimer:
    """Due every `interval_secs` of the caller's clock, counted from the last time it fired."""

    def __init__(self, interval_secs: float) -> None:
        self.interval_secs = interval_secs
        self._last: float | None = None

    def due(self, now: float) -> bool:
        """Whether a save is due at `now` (the first call starts the timer and is never due)."""
        if self._last is None:
            self._last = now
            return False
        if now - self._last < self.interval_secs:
            return False
        self._last = now
        return True
