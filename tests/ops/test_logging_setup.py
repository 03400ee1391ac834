"""structlog set-up: JSON lines by default, console on a TTY, per-record warnings throttled."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pty
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog

from agent.errors import ConfigError
from agent.logging_setup import Throttle, configure_logging


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _restore_structlog() -> object:
    yield None
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


def test_json_lines_on_a_non_tty_stream() -> None:
    """Each log call is one JSON object with level, ISO UTC timestamp and the bound fields."""
    out = io.StringIO()
    configure_logging("auto", level="info", stream=out)
    log = structlog.get_logger("t")
    log.info("bundle_loaded", models=3)
    log.debug("hidden")
    logging.getLogger("drain3.template_miner").warning("stdlib %s", "line")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["bundle_loaded", "stdlib line"]
    assert lines[0]["level"] == "info" and lines[0]["models"] == 3
    assert lines[0]["timestamp"].endswith("Z")
    assert lines[1]["logger"] == "drain3.template_miner"


def test_console_rendering_on_a_terminal() -> None:
    """`auto` on a real pseudo-terminal renders for humans, not JSON."""
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            configure_logging("auto", stream=tty)
            structlog.get_logger("t").warning("queue_full", depth=5)
            tty.flush()
        text = os.read(master, 4096).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "queue_full" in text and "depth" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.strip())


def test_per_record_warnings_are_rate_limited() -> None:
    """10 000 bad records in a burst produce one line, then one per interval with a suppressed count."""
    clock = FakeClock()
    throttle = Throttle(interval_s=10.0, clock=clock)
    shown: list[MutableMapping[str, Any]] = []
    for i in range(10_000):
        clock.now = i * 0.001  # 10 s of records at 1 kHz
        with contextlib.suppress(structlog.DropEvent):
            shown.append(throttle(None, "warning", {"event": "frame_dropped", "throttle": True, "i": i}))
    clock.now = 10.5
    shown.append(throttle(None, "warning", {"event": "frame_dropped", "throttle": True, "i": -1}))
    assert len(shown) == 2
    assert "suppressed" not in shown[0] and "throttle" not in shown[0]
    assert shown[1]["suppressed"] == 9_999
    # A different sub-key is its own budget; un-throttled events always pass.
    other_key = throttle(None, "warning", {"event": "frame_dropped", "throttle": "zmq"})
    assert other_key["event"] == "frame_dropped"
    assert throttle(None, "warning", {"event": "other"}) == {"event": "other"}


def test_throttle_in_the_configured_chain() -> None:
    """A throttled warning repeated 500 times is logged once within the interval."""
    out = io.StringIO()
    configure_logging("json", stream=out, throttle_interval_s=3600)
    log = structlog.get_logger("t")
    for _ in range(500):
        log.warning("line_undecodable", throttle=True, component="stdin")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["component"] == "stdin"


def test_bad_format_or_level_is_a_config_error() -> None:
    """An unknown log format or level is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="log format"):
        configure_logging("xml")
    with pytest.raises(ConfigError, match="log level"):
        configure_logging("json", level="loud")
