"""The simulated system: its instances, its message templates, its users, and the time units.

The system is the same whatever the traffic seed: files written with different seeds describe
the same machines, users and client addresses.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

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

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
# The system is the same whatever the traffic seed (see the package docstring).
_SYSTEM_SEED = 20261102


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
        """The message with its fields filled in."""
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


@dataclass(frozen=True)
class World:
    """Who uses the system: its users, the client address each logs in from, the catalogue size."""

    users: tuple[str, ...]
    home_ip: dict[str, str]
    products: int = 500


def _build_world() -> World:
    rng = random.Random(_SYSTEM_SEED)
    ips = sorted({f"10.0.{rng.randrange(0, 8)}.{rng.randrange(2, 255)}" for _ in range(260)})
    users = tuple(f"u{n}" for n in sorted(rng.sample(range(1000, 9999), 500)))
    # Users log in from a home address; several share one (offices, NAT).
    home = {u: rng.choice(ips) for u in users}
    return World(users=users, home_ip=home)


WORLD = _build_world()
