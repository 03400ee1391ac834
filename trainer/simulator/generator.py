"""The generator: normal traffic hour by hour, merged with the scheduled incidents, as lines."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.errors import UserError
from trainer.simulator.incidents import SPECS, inject, parse_incidents, schedule
from trainer.simulator.timeline import Clock, Sink
from trainer.simulator.traffic import DayTraffic
from trainer.simulator.world import DAY_MS, HOUR_MS, TEMPLATES

DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
DEFAULT_LINES_PER_DAY = 50_000
MIN_LINES_PER_DAY = 2_000


@dataclass(frozen=True)
class SimEvent:
    """One generated line with what the simulator knows about it."""

    time_ms: int
    instance: str
    template: str
    line: str
    incident: str | None


def start_ms(start: datetime | None) -> int:
    """Epoch milliseconds of the first simulated instant (default 2026-11-02; naive times are UTC)."""
    if start is None:
        start = DEFAULT_START
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return round(start.timestamp() * 1000)


def check_args(days: float, lines_per_day: int, incidents: Sequence[str]) -> tuple[str, ...]:
    """The incident kinds asked for, after refusing a span or a volume the simulator cannot honour."""
    if not (days > 0 and math.isfinite(days)) or days > 366:
        raise UserError(f"--days must be more than 0 and at most 366, not {days}")
    if lines_per_day < MIN_LINES_PER_DAY:
        raise UserError(f"--lines-per-day must be at least {MIN_LINES_PER_DAY}, not {lines_per_day}")
    return parse_incidents(incidents)


def events(
    days: float,
    seed: int,
    incidents: Sequence[str] = (),
    start: datetime | None = None,
    lines_per_day: int = DEFAULT_LINES_PER_DAY,
) -> Iterator[SimEvent]:
    """Every simulated line in time order, with its instance, template name and incident kind."""
    kinds = check_args(days, lines_per_day, incidents)
    span_start = start_ms(start)
    span_end = span_start + round(days * DAY_MS)
    starts = schedule(kinds, span_start, span_end, seed)
    sink = Sink()
    silenced: list[tuple[str, int, int]] = []
    for kind, t0 in starts.items():
        sub = Sink()
        inject(kind, sub, random.Random(f"{seed}:{t0}:{kind}"), t0, lines_per_day)
        times = []
        for item in sub.release(span_end):
            t_ms, instance, template, fields, incident = item
            sink.emit(t_ms, instance, template, incident, **fields)
            times.append(t_ms)
        for inst in SPECS[kind].silences:
            silenced.append((inst, t0, max(times) + 1))

    clock = Clock()
    day_index = -1
    traffic: DayTraffic | None = None
    for hour_start in range(span_start, span_end, HOUR_MS):
        k = (hour_start - span_start) // DAY_MS
        if k != day_index:
            day_index = k
            day_start = span_start + k * DAY_MS
            rng = random.Random(f"{seed}:{day_start}")
            traffic = DayTraffic(sink, rng, day_index, lines_per_day)
        if traffic is None:  # pragma: no cover - set on the first iteration
            raise RuntimeError("no traffic generator")
        hour_end = min(hour_start + HOUR_MS, span_end)
        traffic.hour(hour_start, hour_end)
        # Everything generated before hour_end is final: later flows start at hour_end or after.
        for t_ms, instance, template, fields, incident in sink.release(hour_end):
            if incident is None and any(i == instance and a <= t_ms < b for i, a, b in silenced):
                continue
            tpl = TEMPLATES[template]
            line = f"{clock.format(t_ms)} {tpl.level} {instance}: {tpl.render(fields)}"
            yield SimEvent(t_ms, instance, template, line, incident)


def generate(
    days: float,
    seed: int,
    incidents: Sequence[str] = (),
    start: datetime | None = None,
    lines_per_day: int = DEFAULT_LINES_PER_DAY,
) -> Iterator[tuple[str, str | None]]:
    """(line, incident kind or None) for every simulated line, in time order."""
    for ev in events(days, seed, incidents, start, lines_per_day):
        yield ev.line, ev.incident
