"""Live replay: feed lines to a pipeline the way the daemon does, on an injected clock.

The daemon (`agent/daemon.py`) calls the pipeline in one pattern: `process(records, now)` for
each batch that arrived, `flush_pending(now)` once input has been idle `multiline_flush_secs`,
`tick(now)` every `tick_interval_secs`, and `close(now)` at the end. `LiveReplay` makes exactly
those calls with `now` taken from a simulated clock, so a day of arrivals replays in seconds and
`eval normal-logs` and the tests can compare the live path with `scan` at any arrival rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from agent.types import Record

if TYPE_CHECKING:
    from agent.pipeline import Pipeline
    from agent.types import Output


@dataclass(frozen=True)
class ArrivalRate:
    """`burst` lines arrive together every `every_secs` seconds."""

    burst: int
    every_secs: float

    @property
    def label(self) -> str:
        """The rate as the report shows it: `N line(s) every Ss`."""
        return f"{self.burst} line(s) every {self.every_secs:g}s"


# Arrival patterns `eval normal-logs` and the tests replay: `cat file | watch`, `tail -F` on a
# busy log (~15 lines/s), a log written in bursts, and a quiet one.
DEFAULT_RATES: tuple[ArrivalRate, ...] = (
    ArrivalRate(4096, 1.0),
    ArrivalRate(1, 1 / 15),
    ArrivalRate(15, 0.5),
    ArrivalRate(1, 5.0),
)


@dataclass(frozen=True)
class LiveTiming:
    """The daemon's scheduling settings (`[agent]` in the config; the same defaults)."""

    tick_interval_secs: float = 1.0
    multiline_flush_secs: float = 0.2


def replay(pipeline: Pipeline, records: Sequence[Record], rate: ArrivalRate, start: float,
           timing: LiveTiming = LiveTiming()) -> list[Output]:
    """Every output the pipeline gives when `records` arrive at `rate` from time `start`."""
    out: list[Output] = []
    now = start
    next_tick = start + timing.tick_interval_secs
    held = False
    i = 0
    while i < len(records):
        batch = [replace(r, received_at=now) for r in records[i : i + rate.burst]]
        i += rate.burst
        out.extend(pipeline.process(batch, now))
        held = pipeline.pending_records() > 0
        gap_end = now + rate.every_secs
        # Between arrivals the daemon releases held records once input is idle and ticks on time.
        if held and now + timing.multiline_flush_secs < gap_end:
            out.extend(pipeline.flush_pending(now + timing.multiline_flush_secs))
            held = False
        while next_tick < gap_end and i < len(records):
            out.extend(pipeline.tick(next_tick))
            next_tick += timing.tick_interval_secs
        now = gap_end if i < len(records) else now
        if not math.isfinite(now):
            break
    out.extend(pipeline.close(now + timing.tick_interval_secs))
    return out
