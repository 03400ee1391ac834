"""Write simulated logs of a small multi-service system (web, auth, db, queue, worker), with
incidents injected on demand, and a ground-truth file of those incidents beside the logs.

The lines look like ISO-8601 application logs:

  2026-11-02T03:42:15.123Z ERROR db-primary: Database connection pool exhausted, 0 available

Traffic follows a day/night rhythm (peak 09-18 UTC) with periodic jobs (health checks, stats,
hourly cron and backups, a full backup at 02:00). Incidents go on the LAST simulated day at
their usual times, at least 30 minutes apart:

  db_failover  03:42  replica-2 times out, failover to replica-3 fails, connection pool exhausted
  new_error    ~10:30 a never-seen ERROR (NullPointerException in the payment handler)
  auth_storm   ~14:20 failed logins from one new IP at 20-50x the normal rate
  crash_loop   ~20:35 worker-1 starts, panics, exits with code 2, restarts, again and again

The truth file (FILE.truth.json) lists each incident's kind, time span, 1-based line numbers,
components and the explanation kinds a good detector should give. The same --seed always
writes the same file.

examples:
  # three normal days to train on, then a day with every incident to scan; each
  # component (web-1, db-primary, ...) is its own entity for windows and sequences
  logdetect simulate --days 3 --seed 1 --output train.log
  logdetect simulate --days 1 --seed 2 --start 2026-11-05 --incidents all --output day.log
  logdetect train --input train.log --entity component --output model/
  logdetect scan --model model/ --input day.log
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import UserError
from agent.wording import plural


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `logdetect simulate`: span, incidents, seed, output file, start and volume."""
    parser.add_argument(
        "--days", type=float, default=1.0, help="simulated days to write (default 1; may be fractional)"
    )
    parser.add_argument(
        "--incidents",
        default="none",
        metavar="LIST",
        help="comma list of db_failover, auth_storm, new_error, crash_loop; or all; or none (default none)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="random seed; the same seed writes the same file (default 42)"
    )
    parser.add_argument("--output", type=Path, required=True, metavar="FILE", help="log file to write")
    parser.add_argument(
        "--start",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="first simulated day, midnight UTC (default 2026-11-02)",
    )
    parser.add_argument(
        "--lines-per-day",
        type=int,
        default=None,
        metavar="N",
        help="approximate lines per simulated day (default 50000)",
    )


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-11-02, not {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    """Write the simulated log and its ground truth, then say what was injected where."""
    from trainer.simulator import DEFAULT_LINES_PER_DAY, parse_incidents, simulate

    kinds = parse_incidents(args.incidents)
    if args.days <= 0:
        raise UserError(f"--days must be more than 0, not {args.days}")
    result = simulate(
        args.output,
        days=args.days,
        seed=args.seed,
        incidents=kinds,
        start=args.start,
        lines_per_day=args.lines_per_day or DEFAULT_LINES_PER_DAY,
    )
    spans = "; ".join(
        f"{i.kind} {_hms(i.start)}-{_hms(i.end)} ({plural(len(i.line_numbers), 'line')})" for i in result.incidents
    )
    days = f"{args.days:g} day{'s' if args.days != 1 else ''}"
    sys.stdout.write(
        f"wrote {result.lines:,} lines ({days}) to {args.output}; "
        f"incidents: {spans or 'none'}; truth: {result.truth}\n"
    )
    return 0


def _hms(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
