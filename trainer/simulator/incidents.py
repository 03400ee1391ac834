"""The injectable incidents: what each one emits, when it happens, and what a detector should say.

Each incident draws from its own random stream, so injecting one adds its lines (and silences
the instances it takes down) without changing any other line of the day.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from agent.errors import UserError
from agent.types import ExplanationKind
from trainer.simulator.timeline import Sink
from trainer.simulator.traffic import LINES_PER_REQUEST, MEAN_TRAFFIC, traffic_at
from trainer.simulator.world import DAY_MS, HOUR_MS, MINUTE_MS, WORLD

INCIDENT_KINDS: tuple[str, ...] = ("db_failover", "auth_storm", "new_error", "crash_loop")
# Incidents keep this far apart so that a time-proximity grouper cannot merge two of them.
MIN_INCIDENT_GAP_MS = 30 * MINUTE_MS


def parse_incidents(spec: str | Sequence[str]) -> tuple[str, ...]:
    """`"all"`, `"none"`, `""` or a comma list → incident kinds (order kept, duplicates dropped)."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [s.strip() for s in spec]
    items = [s for s in items if s]
    if items == ["all"]:
        return INCIDENT_KINDS
    if items in ([], ["none"]):
        return ()
    unknown = [s for s in items if s not in INCIDENT_KINDS]
    if unknown:
        raise UserError(
            f"unknown incident kind(s) {', '.join(unknown)}; valid: {', '.join(INCIDENT_KINDS)}, all, none"
        )
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class IncidentSpec:
    """When one incident kind happens, how long it may last and which instances it takes down."""

    kind: str
    slot_ms: int  # preferred time of day (ms after midnight UTC)
    jitter_ms: int  # a seed-chosen delay after the slot, up to this
    duration_ms: int  # upper bound of the incident's length (for scheduling)
    silences: tuple[str, ...]  # instances taken down while it lasts (their normal lines vanish)
    description: str


SPECS: dict[str, IncidentSpec] = {
    s.kind: s
    for s in (
        IncidentSpec(
            "db_failover",
            (3 * 60 + 42) * MINUTE_MS,
            40_000,
            6 * MINUTE_MS,
            ("db-replica-2", "db-replica-3"),
            "database failover: replica-2 timed out, failover to replica-3 failed, connection pool exhausted",
        ),
        IncidentSpec(
            "new_error",
            (10 * 60 + 20) * MINUTE_MS,
            20 * MINUTE_MS,
            3 * MINUTE_MS,
            (),
            "a never-seen ERROR: unhandled NullPointerException in the worker's payment handler",
        ),
        IncidentSpec(
            "auth_storm",
            (14 * 60 + 5) * MINUTE_MS,
            30 * MINUTE_MS,
            6 * MINUTE_MS,
            (),
            "authentication failure storm from one new client IP (credential stuffing)",
        ),
        IncidentSpec(
            "crash_loop",
            (20 * 60 + 32) * MINUTE_MS,
            8 * MINUTE_MS,
            6 * MINUTE_MS,
            ("worker-1",),
            "worker-1 crash loop: start, panic, exit code 2, restart with backoff",
        ),
    )
}

_NIGHT_HOURS = frozenset((0, 1, 2, 3, 4, 5, 22, 23))


def expected_explanations(kind: str, start_ms: int) -> tuple[str, ...]:
    """The explanation kinds a good detector gives this incident (unusual time only at night)."""
    e = ExplanationKind
    if kind == "db_failover":
        kinds = [e.NEW_TEMPLATE, e.BURST]
        # ERROR lines at night are rare only when the incident really is at night.
        if (start_ms % DAY_MS) // HOUR_MS in _NIGHT_HOURS:
            kinds.append(e.UNUSUAL_TIME)
    elif kind == "auth_storm":
        kinds = [e.BURST, e.UNUSUAL_PARAMETER]
    elif kind == "new_error":
        kinds = [e.NEW_TEMPLATE, e.SEVERITY]
    else:
        kinds = [e.NEW_TEMPLATE, e.SEQUENCE]
    return tuple(k.value for k in kinds)


def _inject_db_failover(sink: Sink, rng: random.Random, t0: int) -> None:
    """Seed 002's story: replica-2 times out, failover to replica-3 fails, the pool runs dry."""
    kind = "db_failover"
    t = t0
    for _ in range(3):
        sink.emit(t, "db-primary", "db_replica_timeout", kind, replica="replica-2")
        t += 5000 + rng.randint(0, 40)
    t += rng.randint(200, 900)
    sink.emit(t, "db-primary", "db_failover_start", kind, replica="replica-3")
    for _ in range(4):
        t += rng.randint(4000, 9000)
        sink.emit(t, "db-primary", "db_replica_down", kind)
    # Requests keep arriving and find no connection: dense at first, thinning as clients back off.
    t = t0 + 30_000
    end = t0 + 4 * MINUTE_MS + rng.randint(0, 40_000)
    while t < end:
        sink.emit(t, "db-primary", "db_pool_exhausted", kind)
        t += int(rng.expovariate(1 / 2500) * (1 + 2 * (t - t0) / (end - t0))) + 50


def _inject_new_error(sink: Sink, rng: random.Random, t0: int) -> None:
    """A few payment failures with an exception nobody has seen before."""
    kind = "new_error"
    t = t0
    for _ in range(rng.randint(3, 5)):
        sink.emit(t, "worker-1", "worker_payment_exception", kind, lineno=142)
        t += rng.randint(2, 20)
        sink.emit(t, "worker-1", "worker_dead_letter", kind, order=rng.randint(100_000, 200_000))
        t += rng.randint(15_000, 40_000)


def _inject_auth_storm(sink: Sink, rng: random.Random, t0: int, lines_per_day: int) -> None:
    """Credential stuffing from one new IP against web-1 at 20-50x the normal failure rate."""
    kind = "auth_storm"
    attacker = f"203.0.113.{rng.randint(2, 254)}"
    # Normal failed logins per minute at this hour (login share x failure share of requests).
    requests_per_min = lines_per_day / LINES_PER_REQUEST / 1440 * traffic_at(t0) / MEAN_TRAFFIC
    normal_per_min = requests_per_min * 0.22 * 0.08
    per_min = max(6.0, rng.uniform(20, 50) * normal_per_min)
    end = t0 + rng.randint(3 * MINUTE_MS, 5 * MINUTE_MS)
    t = t0
    while t < end:
        user = rng.choice(WORLD.users)
        sink.emit(t, "web-1", "web_post_login", kind, ip=attacker)
        took = rng.randint(25, 95)
        sink.emit(t + took, "auth-1", "auth_login_failed", kind, user=user, ip=attacker)
        sink.emit(
            t + took + rng.randint(2, 9), "web-1", "web_401", kind, ip=attacker, ms=took + rng.randint(4, 12)
        )
        t += int(rng.expovariate(per_min / MINUTE_MS)) + 100


def _inject_crash_loop(sink: Sink, rng: random.Random, t0: int) -> None:
    """worker-1 starts, panics, exits with code 2 and is restarted with a growing backoff."""
    kind = "crash_loop"
    t = t0
    backoff = 1
    index = rng.randint(3, 9)
    end = t0 + rng.randint(3 * MINUTE_MS, 4 * MINUTE_MS)
    while t < end:
        sink.emit(t, "worker-1", "worker_start", kind, pid=rng.randint(2000, 60000))
        t += rng.randint(300, 2500)
        sink.emit(t, "worker-1", "worker_panic", kind, index=index)
        t += rng.randint(5, 40)
        sink.emit(t, "worker-1", "worker_exit_error", kind, code=2)
        t += rng.randint(5, 30)
        sink.emit(t, "worker-1", "worker_backoff", kind, secs=backoff)
        t += backoff * 1000
        backoff = min(backoff * 2, 30)


def inject(kind: str, sink: Sink, rng: random.Random, t0: int, lines_per_day: int) -> None:
    """Emit the lines of one incident of `kind` starting at `t0` (the storm scales with traffic)."""
    match kind:
        case "db_failover":
            _inject_db_failover(sink, rng, t0)
        case "new_error":
            _inject_new_error(sink, rng, t0)
        case "crash_loop":
            _inject_crash_loop(sink, rng, t0)
        case "auth_storm":
            _inject_auth_storm(sink, rng, t0, lines_per_day)
        case _:
            raise ValueError(f"unknown incident kind {kind!r}")


def schedule(kinds: Sequence[str], span_start: int, span_end: int, seed: int) -> dict[str, int]:
    """Start time of each incident: its preferred time of day on the last day that fits them all,
    else spread evenly over the span. Incidents never overlap and keep MIN_INCIDENT_GAP_MS apart."""
    if not kinds:
        return {}
    ndays = math.ceil((span_end - span_start) / DAY_MS)
    for k in range(ndays - 1, -1, -1):
        day = span_start + k * DAY_MS
        midnight = day - day % DAY_MS
        starts: dict[str, int] = {}
        for kind in kinds:
            spec = SPECS[kind]
            jitter = random.Random(f"{seed}:{midnight}:{kind}:when").randint(0, spec.jitter_ms)
            starts[kind] = midnight + spec.slot_ms + jitter
        if all(span_start <= s and s + SPECS[kn].duration_ms <= span_end for kn, s in starts.items()):
            return starts
    # Too short for the preferred slots: even spacing, each incident in its own slice.
    need = sum(SPECS[k].duration_ms for k in kinds) + (len(kinds) + 1) * MIN_INCIDENT_GAP_MS
    if span_end - span_start < need:
        raise UserError(
            f"{len(kinds)} incident(s) need at least {need / HOUR_MS:.1f} h of simulated time; "
            f"ask for more --days or fewer incidents"
        )
    slice_ms = (span_end - span_start) // len(kinds)
    return {
        kind: span_start + i * slice_ms + (slice_ms - SPECS[kind].duration_ms) // 2
        for i, kind in enumerate(kinds)
    }
