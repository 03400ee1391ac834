"""Durations as people write them on a command line: `90s`, `45m`, `1h`, `30d`, `2w`, or seconds."""

from __future__ import annotations

import argparse
import math
import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in `text` (a number, optionally followed by s, m, h, d or w); ValueError otherwise."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration: write a number with s, m, h, d or w (e.g. 1h, 30d)")
    seconds = float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be more than 0")
    return seconds


def duration_arg(text: str) -> float:
    """`parse_duration` for argparse (`type=duration_arg`): a bad value is a usage error."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def say_duration(seconds: float) -> str:
    """The shortest exact way to write `seconds` back: `1h`, `30d`, `90s`."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
