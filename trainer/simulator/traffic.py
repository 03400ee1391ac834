"""Normal traffic: the day/night rhythm, request flows through the services, and periodic jobs."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

from trainer.simulator.timeline import Sink
from trainer.simulator.world import DAY_MS, HOUR_MS, INSTANCES, MINUTE_MS, WORLD

# Relative request rate per UTC hour: quiet nights, a ramp in the morning, a plateau 09–18.
# 02–05 carry well under 0.5% of a day's traffic each, so the ERROR lines that follow traffic
# (upstream timeouts) are rare there and an ERROR at 03:42 is an unusual time (seed 002).
_TRAFFIC_BY_HOUR: tuple[float, ...] = (
    0.10, 0.06, 0.04, 0.03, 0.03, 0.05, 0.12, 0.35, 0.65, 0.95, 1.0, 1.0,
    1.0, 1.0, 1.0, 1.0, 1.0, 0.95, 0.8, 0.6, 0.45, 0.32, 0.22, 0.14,
)  # fmt: skip
MEAN_TRAFFIC = sum(_TRAFFIC_BY_HOUR) / 24
# Measured mean lines per request flow (see DayTraffic._request); used to size the request rate.
LINES_PER_REQUEST = 4.7
# Lines per day of the periodic jobs at their natural intervals (checked by a test).
_PERIODIC_LINES_PER_DAY = 13_700


def traffic_at(t_ms: int) -> float:
    """Relative traffic at a time: the hourly table, linearly interpolated between hour midpoints."""
    h = (t_ms % DAY_MS) / HOUR_MS - 0.5
    i = math.floor(h)
    frac = h - i
    return _TRAFFIC_BY_HOUR[i % 24] * (1 - frac) + _TRAFFIC_BY_HOUR[(i + 1) % 24] * frac


class DayTraffic:
    """Generates the normal lines of one simulated day, hour by hour, into a sink."""

    def __init__(self, sink: Sink, rng: random.Random, day_index: int, lines_per_day: int) -> None:
        self.sink = sink
        self.rng = rng
        self.order_seq = 100_000 + day_index * 20_000
        # Scale the per-minute jobs down when a small volume is asked for, so they stay a minority.
        self.periodic_every = max(1, math.ceil(_PERIODIC_LINES_PER_DAY / (0.35 * lines_per_day)))
        periodic = _PERIODIC_LINES_PER_DAY / self.periodic_every
        requests_per_day = max(lines_per_day - periodic, 0.5 * lines_per_day) / LINES_PER_REQUEST
        # Peak request rate (per ms) such that the day's mean matches the wanted volume.
        self.peak_rate = requests_per_day / (DAY_MS * MEAN_TRAFFIC)
        self.offsets = {inst: rng.randrange(0, 59_000) for inst in INSTANCES}
        self.jobs_since_recycle = 0
        self.queue_depth = 0

    # -- request flows ---------------------------------------------------------------------

    def hour(self, start_ms: int, end_ms: int) -> None:
        """Generate the periodic jobs, the requests and the cache-miss storms of one hour."""
        rng = self.rng
        self._periodic(start_ms, end_ms)
        # Non-homogeneous Poisson arrivals by thinning: candidates at the peak rate, each kept
        # with probability traffic(t) / peak.
        t = float(start_ms)
        while True:
            t += rng.expovariate(self.peak_rate)
            if t >= end_ms:
                break
            if rng.random() <= traffic_at(int(t)):
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
        user = rng.choice(WORLD.users)
        ip = WORLD.home_ip[user] if rng.random() < 0.9 else rng.choice(list(WORLD.home_ip.values()))
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
        product = rng.randint(1, WORLD.products)
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
            load = traffic_at(minute)
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
