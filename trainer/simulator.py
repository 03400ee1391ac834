"""A simulated multi-service system that writes realistic application logs, with incidents on demand.

The built-in default of the main job (`logdetect demo`) and the source of fast end-to-end tests:
train on simulated normal days, scan a day with injected incidents, and check the findings
against the ground-truth file written beside the logs.

The system: web (web-1, web-2) → auth (auth-1) → db (db-primary, db-replica-2, db-replica-3),
a queue (queue-1) and a worker (worker-1). Request flows produce ordered per-component
sequences (web request → token check → query → response; order → enqueue → worker → ack),
traffic follows a day/night rhythm (peak 09–18 UTC), periodic jobs run on the clock (health
checks and stats every minute, checkpoints every 5 minutes, hourly cron, worker recycling and
incremental backups, a full backup at 02:00), and a few WARN/ERROR templates occur at a steady
share of traffic so that a model learns them as normal. Every normal template appears dozens
of times per simulated day, so two or three days show a model all of normal.

Output, one event per line, in time order:

    2026-11-02T03:42:15.123Z ERROR db-primary: Database connection pool exhausted, 0 available

Randomness: the system itself (users, client IPs) is the same for every seed, so files written
with different seeds describe the same system; the traffic of a day depends only on (seed,
date); each incident has its own random stream. Injecting an incident therefore adds its lines
(and silences the component it takes down) without changing any other line of the day.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import UserError
from agent.types import ExplanationKind

INCIDENT_KINDS: tuple[str, ...] = ("db_failover", "auth_storm", "new_error", "crash_loop")
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")
INSTANCES: tuple[str, ...] = (
    "web-1",
    "web-2",
    "auth-1",
    "db-primary",
    "db-replica-2",
    "db-replica-3",
    "queue-1",
    "worker-1",
)
DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
DEFAULT_LINES_PER_DAY = 50_000
MIN_LINES_PER_DAY = 2_000
TRUTH_SUFFIX = ".truth.json"
TRUTH_FORMAT = "logdetect-simulation-truth"

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
# Incidents keep this far apart so that a time-proximity grouper cannot merge two of them.
MIN_INCIDENT_GAP_MS = 30 * MINUTE_MS
# The system is the same whatever the traffic seed (see the module docstring).
_SYSTEM_SEED = 20261102


# --------------------------------------------------------------------------------------------
# Templates


@dataclass(frozen=True)
class Template:
    """One message shape: a level and a `str.format` text whose fields are the variable parts.

    `incident` names the incident kind that alone emits it; None for normal templates.
    """

    name: str
    level: str
    text: str
    incident: str | None = None

    def render(self, fields: dict[str, object]) -> str:
        return self.text.format(**fields) if fields else self.text

    def regex(self) -> re.Pattern[str]:
        """A regex that matches this template's message body (each field: one or more non-spaces)."""
        parts: list[str] = []
        for literal, field_name, _spec, _conv in string.Formatter().parse(self.text):
            parts.append(re.escape(literal))
            if field_name is not None:
                parts.append(r"\S+?")
        return re.compile("".join(parts) + r"\Z")


_TEMPLATE_LIST: tuple[Template, ...] = (
    # web-1, web-2: one line per request, then the response. Rejections and failures are worded
    # differently from successes (as many frameworks do), so Drain keeps them apart from "200 OK".
    Template("web_get_order", "INFO", "GET /api/orders/{order} from {ip}"),
    Template("web_get_product", "INFO", "GET /api/products/{product} from {ip}"),
    Template("web_post_order", "INFO", "POST /api/orders from {ip}"),
    Template("web_post_login", "INFO", "POST /api/login from {ip}"),
    Template("web_200", "INFO", "200 OK in {ms} ms"),
    Template("web_201", "INFO", "201 Created in {ms} ms"),
    Template("web_401", "WARN", "Request rejected: 401 Unauthorized for {ip} in {ms} ms"),
    Template("web_404", "INFO", "Request rejected: 404 Not Found (no such resource) in {ms} ms"),
    Template("web_504", "ERROR", "Request failed: 504 Gateway Timeout after {ms} ms"),
    Template("web_upstream_timeout", "ERROR", "Upstream {upstream} timed out after 5000 ms"),
    Template("web_retry_ok", "WARN", "Retry {attempt}/3 succeeded for upstream {upstream} after {ms} ms"),
    Template("web_cache_hit", "DEBUG", "Cache hit for product {product}"),
    Template("web_cache_miss", "DEBUG", "Cache miss for product {product}"),
    Template("web_cache_storm", "WARN", "Cache miss storm: {count} misses in last 10 s"),
    # auth-1
    Template("auth_token_ok", "DEBUG", "Token validated for user {user}"),
    Template("auth_login_ok", "INFO", "Login succeeded for user {user} from {ip}"),
    Template("auth_issue_token", "INFO", "Issued token for user {user}, expires in 3600 s"),
    Template("auth_login_failed", "WARN", "Authentication failed for user {user} from {ip}"),
    Template("auth_key_check", "INFO", "Signing key check: 2 active keys, next rotation in {hours} h"),
    # db-primary, db-replica-2, db-replica-3
    Template("db_query", "DEBUG", "Query {table} took {ms} ms"),
    Template("db_insert", "DEBUG", "Insert into orders took {ms} ms"),
    Template("db_update", "DEBUG", "Update orders set status={status} took {ms} ms"),
    Template("db_slow_query", "WARN", "Slow query on {table} took {ms} ms"),
    Template("db_pool_stats", "INFO", "Connection pool stats: {active} active, {idle} idle, 50 max"),
    Template("db_replication_lag", "INFO", "Replication lag {ms} ms behind primary"),
    Template("db_checkpoint", "INFO", "Checkpoint complete: wrote {buffers} buffers in {secs} s"),
    Template("db_backup_start", "INFO", "Backup started: type={kind} target=s3://backups/{date}/{kind}"),
    Template("db_backup_progress", "INFO", "Backup progress: table {table} dumped, {mb} MB"),
    Template("db_backup_done", "INFO", "Backup completed: type={kind} size={mb} MB in {secs} s"),
    # queue-1
    Template("queue_enqueue", "DEBUG", "Enqueued message order-{order} on topic orders (depth {depth})"),
    Template("queue_ack", "DEBUG", "Acked message order-{order} on topic orders"),
    Template("queue_redeliver", "WARN", "Redelivering message order-{order} (attempt 2)"),
    Template(
        "queue_stats", "INFO", "Queue stats: topic orders depth {depth}, consumers 1, rate {rate} msg/s"
    ),
    # worker-1
    Template("worker_processing", "INFO", "Processing order {order} for user {user}"),
    Template("worker_processed", "INFO", "Order {order} processed in {ms} ms"),
    Template("worker_cron_start", "INFO", "Cron job {job} started"),
    Template("worker_cron_done", "INFO", "Cron job {job} finished in {ms} ms, {rows} rows affected"),
    Template("worker_recycle", "INFO", "Worker recycling after {jobs} jobs (max lifetime 3600 s)"),
    Template("worker_exit", "INFO", "worker exited with code {code}"),
    Template("worker_start", "INFO", "Starting worker pid {pid}"),
    Template("worker_ready", "INFO", "Worker ready, consuming topic orders"),
    # every service
    Template("health_ok", "INFO", "Health check passed in {ms} ms"),
    # Incident-only templates: never emitted on a normal day.
    Template("db_replica_timeout", "ERROR", "Connection timeout to {replica}", "db_failover"),
    Template("db_failover_start", "WARN", "Failover initiated to {replica}", "db_failover"),
    Template("db_replica_down", "ERROR", "Replica-3 not responding", "db_failover"),
    Template("db_pool_exhausted", "ERROR", "Database connection pool exhausted, 0 available", "db_failover"),
    Template(
        "worker_payment_exception",
        "ERROR",
        "Unhandled exception in payment handler: NullPointerException at PaymentService.charge"
        "(PaymentService.java:{lineno})",
        "new_error",
    ),
    Template(
        "worker_dead_letter",
        "ERROR",
        "Order {order} moved to dead-letter queue after payment failure",
        "new_error",
    ),
    Template(
        "worker_panic",
        "FATAL",
        "panic: runtime error: index out of range [{index}] with length {index}",
        "crash_loop",
    ),
    Template("worker_exit_error", "ERROR", "worker exited with code {code}", "crash_loop"),
    Template("worker_backoff", "WARN", "Restarting worker in {secs} s (backoff)", "crash_loop"),
)
TEMPLATES: dict[str, Template] = {t.name: t for t in _TEMPLATE_LIST}
NORMAL_TEMPLATES: tuple[str, ...] = tuple(t.name for t in _TEMPLATE_LIST if t.incident is None)


# --------------------------------------------------------------------------------------------
# Public results


@dataclass(frozen=True)
class InjectedIncident:
    """One injected incident as the ground truth records it (times are epoch seconds UTC)."""

    kind: str
    start: float
    end: float
    line_numbers: tuple[int, ...]  # 1-based line numbers in the written file
    components: tuple[str, ...]
    description: str
    expected_explanations: tuple[str, ...]  # ExplanationKind values a good detector should give

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "start_iso": _iso(round(self.start * 1000)),
            "end_iso": _iso(round(self.end * 1000)),
            "line_count": len(self.line_numbers),
            "line_numbers": list(self.line_numbers),
            "components": list(self.components),
            "description": self.description,
            "expected_explanations": list(self.expected_explanations),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> InjectedIncident:
        return cls(
            kind=str(obj["kind"]),
            start=float(obj["start"]),
            end=float(obj["end"]),
            line_numbers=tuple(int(n) for n in obj["line_numbers"]),
            components=tuple(str(c) for c in obj["components"]),
            description=str(obj["description"]),
            expected_explanations=tuple(str(e) for e in obj["expected_explanations"]),
        )


@dataclass(frozen=True)
class SimulationResult:
    lines: int
    incidents: tuple[InjectedIncident, ...]
    output: Path | None = None
    truth: Path | None = None


@dataclass(frozen=True)
class SimEvent:
    """One generated line with what the simulator knows about it."""

    time_ms: int
    instance: str
    template: str
    line: str
    incident: str | None


def truth_path(output: Path) -> Path:
    """Where `simulate` writes the ground truth for `output` (`day.log` → `day.log.truth.json`)."""
    return output.with_suffix(output.suffix + TRUTH_SUFFIX)


def load_truth(path: Path) -> tuple[InjectedIncident, ...]:
    """Read the incidents of a ground-truth file written by `simulate`."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read simulation truth file {path}: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != TRUTH_FORMAT:
        raise UserError(f"{path} is not a logdetect simulation truth file")
    return tuple(InjectedIncident.from_json(i) for i in obj["incidents"])


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


# --------------------------------------------------------------------------------------------
# The world: who uses the system


@dataclass(frozen=True)
class _World:
    users: tuple[str, ...]
    home_ip: dict[str, str]
    products: int = 500


def _build_world() -> _World:
    rng = random.Random(_SYSTEM_SEED)
    ips = sorted({f"10.0.{rng.randrange(0, 8)}.{rng.randrange(2, 255)}" for _ in range(260)})
    users = tuple(f"u{n}" for n in sorted(rng.sample(range(1000, 9999), 500)))
    # Users log in from a home address; several share one (offices, NAT).
    home = {u: rng.choice(ips) for u in users}
    return _World(users=users, home_ip=home)


_WORLD = _build_world()

# Relative request rate per UTC hour: quiet nights, a ramp in the morning, a plateau 09–18.
# 02–05 carry well under 0.5% of a day's traffic each, so the ERROR lines that follow traffic
# (upstream timeouts) are rare there and an ERROR at 03:42 is an unusual time (seed 002).
_TRAFFIC_BY_HOUR: tuple[float, ...] = (
    0.10, 0.06, 0.04, 0.03, 0.03, 0.05, 0.12, 0.35, 0.65, 0.95, 1.0, 1.0,
    1.0, 1.0, 1.0, 1.0, 1.0, 0.95, 0.8, 0.6, 0.45, 0.32, 0.22, 0.14,
)  # fmt: skip
_MEAN_TRAFFIC = sum(_TRAFFIC_BY_HOUR) / 24
# Measured mean lines per request flow (see _request); used to size the request rate.
_LINES_PER_REQUEST = 4.7
# Lines per day of the periodic jobs at their natural intervals (checked by a test).
_PERIODIC_LINES_PER_DAY = 13_700


def _traffic(t_ms: int) -> float:
    """Relative traffic at a time: the hourly table, linearly interpolated between hour midpoints."""
    h = (t_ms % DAY_MS) / HOUR_MS - 0.5
    i = math.floor(h)
    frac = h - i
    return _TRAFFIC_BY_HOUR[i % 24] * (1 - frac) + _TRAFFIC_BY_HOUR[(i + 1) % 24] * frac


# --------------------------------------------------------------------------------------------
# Emission: a time-ordered heap of generated lines


class _Sink:
    """Collects generated lines and releases them in time order (ties: generation order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str, str, dict[str, object], str | None]] = []
        self._seq = 0

    def emit(
        self, t_ms: int, instance: str, template: str, incident: str | None = None, **fields: object
    ) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t_ms, self._seq, instance, template, fields, incident))

    def release(self, before_ms: int) -> Iterator[tuple[int, str, str, dict[str, object], str | None]]:
        heap = self._heap
        while heap and heap[0][0] < before_ms:
            t_ms, _seq, instance, template, fields, incident = heapq.heappop(heap)
            yield t_ms, instance, template, fields, incident


class _Clock:
    """Formats epoch milliseconds as ISO-8601 UTC with milliseconds, caching the date part."""

    def __init__(self) -> None:
        self._day = -1
        self._prefix = ""

    def format(self, t_ms: int) -> str:
        day, ms = divmod(t_ms, DAY_MS)
        if day != self._day:
            self._day = day
            self._prefix = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%dT")
        secs, milli = divmod(ms, 1000)
        h, rem = divmod(secs, 3600)
        m, s = divmod(rem, 60)
        return f"{self._prefix}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


def _iso(t_ms: int) -> str:
    return _Clock().format(t_ms)


# --------------------------------------------------------------------------------------------
# Normal traffic


class _DayTraffic:
    """Generates the normal lines of one simulated day, hour by hour, into a sink."""

    def __init__(self, sink: _Sink, rng: random.Random, day_index: int, lines_per_day: int) -> None:
        self.sink = sink
        self.rng = rng
        self.order_seq = 100_000 + day_index * 20_000
        # Scale the per-minute jobs down when a small volume is asked for, so they stay a minority.
        self.periodic_every = max(1, math.ceil(_PERIODIC_LINES_PER_DAY / (0.35 * lines_per_day)))
        periodic = _PERIODIC_LINES_PER_DAY / self.periodic_every
        requests_per_day = max(lines_per_day - periodic, 0.5 * lines_per_day) / _LINES_PER_REQUEST
        # Peak request rate (per ms) such that the day's mean matches the wanted volume.
        self.peak_rate = requests_per_day / (DAY_MS * _MEAN_TRAFFIC)
        self.offsets = {inst: rng.randrange(0, 59_000) for inst in INSTANCES}
        self.jobs_since_recycle = 0
        self.queue_depth = 0

    # -- request flows ---------------------------------------------------------------------

    def hour(self, start_ms: int, end_ms: int) -> None:
        rng = self.rng
        self._periodic(start_ms, end_ms)
        # Non-homogeneous Poisson arrivals by thinning: candidates at the peak rate, each kept
        # with probability traffic(t) / peak.
        t = float(start_ms)
        while True:
            t += rng.expovariate(self.peak_rate)
            if t >= end_ms:
                break
            if rng.random() <= _traffic(int(t)):
                self._request(int(t))
        # Steady, traffic-independent WARN: small cache-miss storms, about one an hour per web node.
        for web in ("web-1", "web-2"):
            t = float(start_ms)
            while True:
                t += rng.expovariate(1 / HOUR_MS)
                if t >= end_ms:
                    break
                self.sink.emit(int(t), web, "web_cache_storm", count=rng.randint(12, 40))

    def _request(self, t: int) -> None:
        rng = self.rng
        user = rng.choice(_WORLD.users)
        ip = _WORLD.home_ip[user] if rng.random() < 0.9 else rng.choice(list(_WORLD.home_ip.values()))
        web = "web-1" if rng.random() < 0.5 else "web-2"
        r = rng.random()
        if r < 0.33:
            self._get_order(t, web, user, ip)
        elif r < 0.63:
            self._get_product(t, web, ip)
        elif r < 0.78:
            self._post_order(t, web, user, ip)
        else:
            self._login(t, web, user, ip)

    def _auth_check(self, t: int, web: str, user: str) -> int | None:
        """Token validation through auth-1; returns the time after it, None on an upstream timeout."""
        rng, emit = self.rng, self.sink.emit
        if rng.random() < 0.01:
            emit(t + 5000 + rng.randint(0, 9), web, "web_upstream_timeout", upstream="auth-1")
            emit(t + 5010 + rng.randint(0, 20), web, "web_504", ms=5010 + rng.randint(0, 25))
            return None
        if rng.random() < 0.012:
            wait = rng.randint(80, 400)
            t += wait
            emit(t, web, "web_retry_ok", attempt=rng.choice((1, 1, 1, 2)), upstream="auth-1", ms=wait)
        t += rng.randint(1, 6)
        emit(t, "auth-1", "auth_token_ok", user=user)
        return t

    def _query(self, t: int, instance: str, table: str) -> int:
        rng = self.rng
        if rng.random() < 0.01:
            took = rng.randint(1200, 4800)
            self.sink.emit(t + took, instance, "db_slow_query", table=table, ms=took)
        else:
            took = max(1, int(rng.lognormvariate(2.3, 0.5)))
            self.sink.emit(t + took, instance, "db_query", table=table, ms=took)
        return t + took

    def _replica(self) -> str:
        return "db-replica-2" if self.rng.random() < 0.5 else "db-replica-3"

    def _respond(self, t0: int, t: int, web: str, template: str) -> None:
        t += self.rng.randint(2, 15)
        self.sink.emit(t, web, template, ms=t - t0)

    def _get_order(self, t0: int, web: str, user: str, ip: str) -> None:
        order = self.rng.randint(self.order_seq - 5000, self.order_seq)
        self.sink.emit(t0, web, "web_get_order", order=order, ip=ip)
        t = self._auth_check(t0, web, user)
        if t is None:
            return
        t = self._query(t, self._replica(), "orders")
        self._respond(t0, t, web, "web_404" if self.rng.random() < 0.03 else "web_200")

    def _get_product(self, t0: int, web: str, ip: str) -> None:
        rng, emit = self.rng, self.sink.emit
        product = rng.randint(1, _WORLD.products)
        emit(t0, web, "web_get_product", product=product, ip=ip)
        t = t0 + rng.randint(0, 2)
        if rng.random() < 0.8:
            emit(t, web, "web_cache_hit", product=product)
            self._respond(t0, t, web, "web_200")
            return
        emit(t, web, "web_cache_miss", product=product)
        t = self._query(t, self._replica(), "products")
        self._respond(t0, t, web, "web_404" if rng.random() < 0.05 else "web_200")

    def _post_order(self, t0: int, web: str, user: str, ip: str) -> None:
        rng, emit = self.rng, self.sink.emit
        emit(t0, web, "web_post_order", ip=ip)
        t = self._auth_check(t0, web, user)
        if t is None:
            return
        self.order_seq += 1
        order = self.order_seq
        took = max(1, int(rng.lognormvariate(2.0, 0.4)))
        t += took
        emit(t, "db-primary", "db_insert", ms=took)
        t += rng.randint(1, 4)
        self.queue_depth = max(0, min(12, self.queue_depth + rng.choice((-1, 0, 1))))
        emit(t, "queue-1", "queue_enqueue", order=order, depth=self.queue_depth + 1)
        self._respond(t0, t, web, "web_201")
        # The worker picks the order up a little later.
        t += rng.randint(40, 1500)
        if rng.random() < 0.025:
            emit(t, "queue-1", "queue_redeliver", order=order)
            t += rng.randint(1000, 5000)
        emit(t, "worker-1", "worker_processing", order=order, user=user)
        started = t
        t += max(1, int(rng.lognormvariate(2.0, 0.4)))
        emit(
            t,
            "db-primary",
            "db_update",
            status=rng.choice(("paid", "paid", "paid", "shipped")),
            ms=max(1, int(rng.lognormvariate(1.8, 0.4))),
        )
        t += rng.randint(10, 400)
        emit(t, "worker-1", "worker_processed", order=order, ms=t - started)
        t += rng.randint(1, 5)
        emit(t, "queue-1", "queue_ack", order=order)
        self.jobs_since_recycle += 1

    def _login(self, t0: int, web: str, user: str, ip: str) -> None:
        rng, emit = self.rng, self.sink.emit
        emit(t0, web, "web_post_login", ip=ip)
        t = self._query(t0 + rng.randint(1, 4), "db-primary", "users")
        t += rng.randint(20, 90)  # password hashing
        if rng.random() < 0.08:
            emit(t, "auth-1", "auth_login_failed", user=user, ip=ip)
            t += self.rng.randint(2, 15)
            emit(t, web, "web_401", ip=ip, ms=t - t0)
            return
        emit(t, "auth-1", "auth_login_ok", user=user, ip=ip)
        t += rng.randint(1, 3)
        emit(t, "auth-1", "auth_issue_token", user=user)
        self._respond(t0, t, web, "web_200")

    # -- periodic jobs ---------------------------------------------------------------------

    def _periodic(self, start_ms: int, end_ms: int) -> None:
        rng, emit = self.rng, self.sink.emit
        every = self.periodic_every * MINUTE_MS
        first = start_ms - start_ms % every
        for minute in range(first, end_ms, every):
            load = _traffic(minute)
            for inst in ("web-1", "web-2", "auth-1", "queue-1", "worker-1"):
                t = minute + self.offsets[inst] + rng.randint(0, 400)
                emit(t, inst, "health_ok", ms=rng.randint(1, 6))
            t = minute + self.offsets["db-primary"] + rng.randint(0, 400)
            active = max(1, int(load * 30 + rng.randint(-2, 4)))
            emit(t, "db-primary", "db_pool_stats", active=active, idle=50 - active)
            for inst in ("db-replica-2", "db-replica-3"):
                t = minute + self.offsets[inst] + rng.randint(0, 400)
                emit(t, inst, "db_replication_lag", ms=max(1, int(rng.gauss(8 + 20 * load, 4))))
            t = minute + self.offsets["queue-1"] + 30_000 + rng.randint(0, 400)
            emit(
                t,
                "queue-1",
                "queue_stats",
                depth=self.queue_depth,
                rate=f"{load * 0.9 + rng.random() * 0.1:.2f}",
            )
        for five in range(start_ms - start_ms % (5 * MINUTE_MS), end_ms, 5 * MINUTE_MS):
            t = five + 150_000 + rng.randint(0, 5000)
            emit(
                t,
                "db-primary",
                "db_checkpoint",
                buffers=rng.randint(200, 4000),
                secs=f"{rng.uniform(0.2, 3.5):.1f}",
            )
        for hour in range(start_ms - start_ms % HOUR_MS, end_ms, HOUR_MS):
            self._cron(hour + 2000 + rng.randint(0, 500))
            self._recycle(hour + 15 * MINUTE_MS + rng.randint(0, 3000))
            self._backup(hour, "incremental")
            if (hour % DAY_MS) // HOUR_MS == 2:
                self._backup(hour - 30 * MINUTE_MS, "full")
            emit(
                hour + 45 * MINUTE_MS + rng.randint(0, 2000),
                "auth-1",
                "auth_key_check",
                hours=rng.randint(1, 167),
            )

    def _cron(self, t: int) -> None:
        rng, emit = self.rng, self.sink.emit
        for job in ("cleanup_sessions", "rotate_logs", "refresh_stats"):
            emit(t, "worker-1", "worker_cron_start", job=job)
            took = rng.randint(80, 2500)
            t += took
            emit(t, "worker-1", "worker_cron_done", job=job, ms=took, rows=rng.randint(0, 900))
            t += rng.randint(5, 50)

    def _recycle(self, t: int) -> None:
        rng, emit = self.rng, self.sink.emit
        emit(t, "worker-1", "worker_recycle", jobs=self.jobs_since_recycle)
        t += rng.randint(50, 300)
        emit(t, "worker-1", "worker_exit", code=0)
        t += rng.randint(200, 800)
        emit(t, "worker-1", "worker_start", pid=rng.randint(2000, 60000))
        t += rng.randint(300, 1500)
        emit(t, "worker-1", "worker_ready")
        self.jobs_since_recycle = 0

    def _backup(self, hour: int, kind: str) -> None:
        """Incremental backups at hh:30; the full one at 02:00 (`hour` is then 01:30)."""
        rng, emit = self.rng, self.sink.emit
        t = hour + 30 * MINUTE_MS + rng.randint(0, 3000)
        date = datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%d")
        emit(t, "db-primary", "db_backup_start", kind=kind, date=date)
        tables = ("orders", "users", "products", "sessions", "payments", "audit_log")
        total = 0
        for table in tables if kind == "full" else tables[:2]:
            mb = rng.randint(40, 900) if kind == "full" else rng.randint(1, 30)
            total += mb
            t += mb * rng.randint(80, 160)
            emit(t, "db-primary", "db_backup_progress", table=table, mb=mb)
        t += rng.randint(500, 3000)
        emit(t, "db-primary", "db_backup_done", kind=kind, mb=total, secs=max(1, (t - hour) // 1000 - 1800))


# --------------------------------------------------------------------------------------------
# Incidents


@dataclass(frozen=True)
class _IncidentSpec:
    kind: str
    slot_ms: int  # preferred time of day (ms after midnight UTC)
    jitter_ms: int  # a seed-chosen delay after the slot, up to this
    duration_ms: int  # upper bound of the incident's length (for scheduling)
    silences: tuple[str, ...]  # instances taken down while it lasts (their normal lines vanish)
    description: str


_SPECS: dict[str, _IncidentSpec] = {
    s.kind: s
    for s in (
        _IncidentSpec(
            "db_failover",
            (3 * 60 + 42) * MINUTE_MS,
            40_000,
            6 * MINUTE_MS,
            ("db-replica-2", "db-replica-3"),
            "database failover: replica-2 timed out, failover to replica-3 failed, connection pool exhausted",
        ),
        _IncidentSpec(
            "new_error",
            (10 * 60 + 20) * MINUTE_MS,
            20 * MINUTE_MS,
            3 * MINUTE_MS,
            (),
            "a never-seen ERROR: unhandled NullPointerException in the worker's payment handler",
        ),
        _IncidentSpec(
            "auth_storm",
            (14 * 60 + 5) * MINUTE_MS,
            30 * MINUTE_MS,
            6 * MINUTE_MS,
            (),
            "authentication failure storm from one new client IP (credential stuffing)",
        ),
        _IncidentSpec(
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


def _expected_explanations(kind: str, start_ms: int) -> tuple[str, ...]:
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


def _inject_db_failover(sink: _Sink, rng: random.Random, t0: int) -> None:
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


def _inject_new_error(sink: _Sink, rng: random.Random, t0: int) -> None:
    """A few payment failures with an exception nobody has seen before."""
    kind = "new_error"
    t = t0
    for _ in range(rng.randint(3, 5)):
        sink.emit(t, "worker-1", "worker_payment_exception", kind, lineno=142)
        t += rng.randint(2, 20)
        sink.emit(t, "worker-1", "worker_dead_letter", kind, order=rng.randint(100_000, 200_000))
        t += rng.randint(15_000, 40_000)


def _inject_auth_storm(sink: _Sink, rng: random.Random, t0: int, lines_per_day: int) -> None:
    """Credential stuffing from one new IP against web-1 at 20-50x the normal failure rate."""
    kind = "auth_storm"
    attacker = f"203.0.113.{rng.randint(2, 254)}"
    # Normal failed logins per minute at this hour (login share x failure share of requests).
    requests_per_min = lines_per_day / _LINES_PER_REQUEST / 1440 * _traffic(t0) / _MEAN_TRAFFIC
    normal_per_min = requests_per_min * 0.22 * 0.08
    per_min = max(6.0, rng.uniform(20, 50) * normal_per_min)
    end = t0 + rng.randint(3 * MINUTE_MS, 5 * MINUTE_MS)
    t = t0
    while t < end:
        user = rng.choice(_WORLD.users)
        sink.emit(t, "web-1", "web_post_login", kind, ip=attacker)
        took = rng.randint(25, 95)
        sink.emit(t + took, "auth-1", "auth_login_failed", kind, user=user, ip=attacker)
        sink.emit(
            t + took + rng.randint(2, 9), "web-1", "web_401", kind, ip=attacker, ms=took + rng.randint(4, 12)
        )
        t += int(rng.expovariate(per_min / MINUTE_MS)) + 100


def _inject_crash_loop(sink: _Sink, rng: random.Random, t0: int) -> None:
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


def _schedule(kinds: Sequence[str], span_start: int, span_end: int, seed: int) -> dict[str, int]:
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
            spec = _SPECS[kind]
            jitter = random.Random(f"{seed}:{midnight}:{kind}:when").randint(0, spec.jitter_ms)
            starts[kind] = midnight + spec.slot_ms + jitter
        if all(span_start <= s and s + _SPECS[kn].duration_ms <= span_end for kn, s in starts.items()):
            return starts
    # Too short for the preferred slots: even spacing, each incident in its own slice.
    need = sum(_SPECS[k].duration_ms for k in kinds) + (len(kinds) + 1) * MIN_INCIDENT_GAP_MS
    if span_end - span_start < need:
        raise UserError(
            f"{len(kinds)} incident(s) need at least {need / HOUR_MS:.1f} h of simulated time; "
            f"ask for more --days or fewer incidents"
        )
    slice_ms = (span_end - span_start) // len(kinds)
    return {
        kind: span_start + i * slice_ms + (slice_ms - _SPECS[kind].duration_ms) // 2
        for i, kind in enumerate(kinds)
    }


# --------------------------------------------------------------------------------------------
# The generator


def _start_ms(start: datetime | None) -> int:
    if start is None:
        start = DEFAULT_START
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return round(start.timestamp() * 1000)


def _check_args(days: float, lines_per_day: int, incidents: Sequence[str]) -> tuple[str, ...]:
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
    kinds = _check_args(days, lines_per_day, incidents)
    span_start = _start_ms(start)
    span_end = span_start + round(days * DAY_MS)
    starts = _schedule(kinds, span_start, span_end, seed)
    sink = _Sink()
    silenced: list[tuple[str, int, int]] = []
    injectors: dict[str, Callable[[_Sink, random.Random, int], None]] = {
        "db_failover": _inject_db_failover,
        "new_error": _inject_new_error,
        "crash_loop": _inject_crash_loop,
        "auth_storm": lambda s, r, t: _inject_auth_storm(s, r, t, lines_per_day),
    }
    for kind, t0 in starts.items():
        sub = _Sink()
        injectors[kind](sub, random.Random(f"{seed}:{t0}:{kind}"), t0)
        times = []
        for item in sub.release(span_end):
            t_ms, instance, template, fields, incident = item
            sink.emit(t_ms, instance, template, incident, **fields)
            times.append(t_ms)
        for inst in _SPECS[kind].silences:
            silenced.append((inst, t0, max(times) + 1))

    clock = _Clock()
    day_index = -1
    traffic: _DayTraffic | None = None
    for hour_start in range(span_start, span_end, HOUR_MS):
        k = (hour_start - span_start) // DAY_MS
        if k != day_index:
            day_index = k
            day_start = span_start + k * DAY_MS
            rng = random.Random(f"{seed}:{day_start}")
            traffic = _DayTraffic(sink, rng, day_index, lines_per_day)
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


def simulate(
    output: Path,
    days: float,
    seed: int,
    incidents: Sequence[str] = (),
    start: datetime | None = None,
    lines_per_day: int = DEFAULT_LINES_PER_DAY,
) -> SimulationResult:
    """Write `days` of simulated logs to `output` and the ground truth beside it.

    Incidents go on the last simulated day at their usual times (db_failover 03:42, new_error
    ~10:30, auth_storm ~14:20, crash_loop ~20:35), or are spread over a shorter span.
    Both files are written atomically (temporary file, then rename).
    """
    output = Path(output)
    if output.is_dir():
        raise UserError(f"--output {output} is a directory; give a file name")
    if not output.parent.is_dir():
        raise UserError(f"directory {output.parent} does not exist")
    kinds = _check_args(days, lines_per_day, incidents)
    members: dict[str, list[int]] = {k: [] for k in kinds}
    times: dict[str, list[int]] = {k: [] for k in kinds}
    instances: dict[str, set[str]] = {k: set() for k in kinds}
    count = 0
    with _AtomicWriter(output) as fh:
        for ev in events(days, seed, kinds, start, lines_per_day):
            count += 1
            fh.write(ev.line)
            fh.write("\n")
            if ev.incident is not None:
                members[ev.incident].append(count)
                times[ev.incident].append(ev.time_ms)
                instances[ev.incident].add(ev.instance)
    found = tuple(
        InjectedIncident(
            kind=k,
            start=min(times[k]) / 1000,
            end=max(times[k]) / 1000,
            line_numbers=tuple(members[k]),
            components=tuple(sorted(instances[k])),
            description=_SPECS[k].description,
            expected_explanations=_expected_explanations(k, min(times[k])),
        )
        for k in kinds
        if members[k]
    )
    found = tuple(sorted(found, key=lambda i: i.start))
    truth = truth_path(output)
    doc = {
        "format": TRUTH_FORMAT,
        "version": 1,
        "log_file": output.name,
        "seed": seed,
        "start": _iso(_start_ms(start)),
        "days": days,
        "lines_per_day": lines_per_day,
        "lines": count,
        "incidents": [i.to_json() for i in found],
    }
    with _AtomicWriter(truth) as fh:
        fh.write(_truth_json(doc))
    return SimulationResult(lines=count, incidents=found, output=output, truth=truth)


def _truth_json(doc: dict[str, Any]) -> str:
    """JSON with one key per line and each incident on one line (line-number lists stay compact)."""
    head = {k: v for k, v in doc.items() if k != "incidents"}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    incidents = ",\n".join(f"  {json.dumps(i)}" for i in doc["incidents"])
    body = f' "incidents": [\n{incidents}\n ]' if incidents else ' "incidents": []'
    return "{\n" + "\n".join(lines) + "\n" + body + "\n}\n"


class _AtomicWriter:
    """Write a text file through a temporary file in the same directory, fsync, rename."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # A plain open() (not mkstemp, which makes 0600 files) so the result gets the umask's mode.
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.fh = open(self.tmp, "w", encoding="utf-8", newline="\n", buffering=1 << 20)  # noqa: SIM115
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror}") from exc

    def __enter__(self) -> Any:
        return self.fh

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.fh.flush()
                os.fsync(self.fh.fileno())
            self.fh.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
