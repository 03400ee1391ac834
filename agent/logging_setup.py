"""Logging for the agent: structlog, JSON lines on stderr, console rendering on a terminal.

`configure_logging()` is called once by a command's `run()`; library modules only do
`structlog.get_logger(__name__)`. Output goes to stderr because stdout may carry events.

Per-record problems (a bad frame, an undecodable line) must never produce one log line per
record at full rate. Such calls pass `throttle=True` (or `throttle="<sub-key>"`):

    log.warning("frame_dropped", throttle=True, reason="bad_msgpack", component="fwd")

and the `Throttle` processor lets the first one through, then at most one per interval per
(event, sub-key), adding `suppressed=<n>` — how many were swallowed since the last one shown.
The counts that matter live in Prometheus counters; the log line only points at them.
Standard-library loggers (drain3 uses them) are routed through the same renderer.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from agent.errors import ConfigError

FORMATS = ("auto", "json", "console")
LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_THROTTLE_INTERVAL_S = 10.0
_MAX_THROTTLE_KEYS = 1024  # keys are event names from code; the cap is a guard, not a tuning knob


class Throttle:
    """structlog processor: rate-limit events that carry `throttle=...`."""

    def __init__(
        self, interval_s: float = DEFAULT_THROTTLE_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        # key -> (time last shown, suppressed since)
        self._seen: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """Drop a `throttle=`-tagged event repeated within the interval; pass everything else."""
        throttle = event_dict.pop("throttle", None)
        if not throttle:
            return event_dict
        key = (str(event_dict.get("event")), "" if throttle is True else str(throttle))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._seen[key] = (last[0], last[1] + 1)
            raise structlog.DropEvent
        if last is not None and last[1]:
            event_dict["suppressed"] = last[1]
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > _MAX_THROTTLE_KEYS:
            self._seen.popitem(last=False)
        return event_dict


def _renderer(fmt: str, stream: TextIO) -> Processor:
    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    return structlog.processors.JSONRenderer()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of the write, not when logging was set up:
    code that swaps stderr (test runners, daemons redirecting it) must not leave loggers writing
    to a closed stream, which would raise inside the very code path that reports a problem."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return _isatty(sys.stderr)


def configure_logging(
    fmt: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    throttle_interval_s: float = DEFAULT_THROTTLE_INTERVAL_S,
) -> None:
    """Set up structlog (and the stdlib root logger) once per process.

    `fmt`: `json` (one object per line), `console` (human), or `auto` (console on a TTY).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if level.lower() not in LEVELS:
        raise ConfigError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    out: Any = stream if stream is not None else _CurrentStderr()
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = _renderer(fmt, out)
    structlog.configure(
        processors=[
            *shared,
            Throttle(throttle_interval_s),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Third-party libraries are chatty at INFO (drain3 logs every snapshot); warnings and up only.
    root.setLevel(max(numeric_level, logging.WARNING))

