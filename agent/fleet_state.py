"""The fleet view's open incidents on disk, so `logdetect fleet` keeps them across a restart.

One JSON file in the config's `state_dir` (`fleet_incidents.json`), replaced atomically
(`agent.atomic.write_atomic`: temp file, fsync, rename) as the agent writes its template
snapshot; never pickle. `FleetPipeline.checkpoint` saves it after every batch whose events were
written and before the batch is acked, so an acked anomaly event is in the saved state. A crash
between the write and the save restarts from the state before that batch: the redelivered batch
is counted once, and its incident events are written again. A crash between the save and the
acks redelivers events the saved state holds: those with an `event.id` are skipped (the recent
ids are saved too), those without one count again (counts too high; hosts are a set).

A file that cannot be read (another version, cut short by hand) is logged and ignored: the fleet
view starts with no open incident rather than not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import structlog

from agent.atomic import write_atomic
from agent.types import ExplanationKind

log = structlog.get_logger(__name__)

FLEET_STATE = "fleet_incidents.json"
STATE_VERSION = 1


def save_state(path: Path, state: dict[str, Any]) -> int:
    """Write `state` (a grouper's `to_state()`) atomically; the bytes written."""
    data = orjson.dumps({"version": STATE_VERSION, **state})
    write_atomic(path, data)
    return len(data)


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none or it cannot be used (logged)."""
    if not path.is_file():
        return None
    try:
        state = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("fleet state unreadable; starting with no open incident", path=str(path), error=str(exc))
        return None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        log.warning("fleet state of another version; starting with no open incident", path=str(path))
        return None
    return state


def kinds_of(values: Any) -> tuple[ExplanationKind, ...]:
    """Explanation kinds from their saved names (unknown names are skipped)."""
    out: list[ExplanationKind] = []
    for value in values if isinstance(values, list) else []:
        try:
            out.append(ExplanationKind(value))
        except ValueError:
            continue
    return tuple(out)
