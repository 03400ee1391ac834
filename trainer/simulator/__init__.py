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

Modules: `world` (instances, templates, users), `timeline` (time order, time stamps), `traffic`
(the daily rhythm, request flows, periodic jobs), `incidents` (what each incident emits and
when), `generator` (both merged into lines) and `writer` (the log file and its ground truth).
"""

from __future__ import annotations

from trainer.simulator.generator import (
    DEFAULT_LINES_PER_DAY,
    DEFAULT_START,
    MIN_LINES_PER_DAY,
    SimEvent,
    events,
    generate,
)
from trainer.simulator.incidents import INCIDENT_KINDS, MIN_INCIDENT_GAP_MS, parse_incidents
from trainer.simulator.world import INSTANCES, LEVELS, NORMAL_TEMPLATES, TEMPLATES, Template
from trainer.simulator.writer import (
    TRUTH_FORMAT,
    TRUTH_SUFFIX,
    InjectedIncident,
    SimulationResult,
    load_truth,
    simulate,
    truth_path,
)

__all__ = [
    "DEFAULT_LINES_PER_DAY",
    "DEFAULT_START",
    "INCIDENT_KINDS",
    "INSTANCES",
    "LEVELS",
    "MIN_INCIDENT_GAP_MS",
    "MIN_LINES_PER_DAY",
    "NORMAL_TEMPLATES",
    "TEMPLATES",
    "TRUTH_FORMAT",
    "TRUTH_SUFFIX",
    "InjectedIncident",
    "SimEvent",
    "SimulationResult",
    "Template",
    "events",
    "generate",
    "load_truth",
    "parse_incidents",
    "simulate",
    "truth_path",
]
