"""Durations on the command line (`--episode-gap 1h`, `--new-behaviour 30d`) and episodes."""

from __future__ import annotations

import argparse

import pytest

from agent.durations import duration_arg, parse_duration, say_duration
from agent.episodes import split_episodes


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("45m", 2700.0), ("1h", 3600.0),
                                               ("1.5h", 5400.0), ("30d", 2_592_000.0), ("2w", 1_209_600.0),
                                               (" 2 H ", 7200.0)])
def test_a_duration_is_a_number_with_a_unit(text: str, seconds: float) -> None:
    """Seconds by default; s, m, h, d, w in either case; written back the shortest exact way."""
    assert parse_duration(text) == seconds
    assert parse_duration(say_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "0", "0h", "-1h", "1y", "h", "1h30m", "nan", "inf"])
def test_a_bad_duration_is_a_usage_error(text: str) -> None:
    """Nothing else is a duration, and zero is none."""
    with pytest.raises(ValueError):
        parse_duration(text)
    with pytest.raises(argparse.ArgumentTypeError):
        duration_arg(text)


def test_episodes_split_where_the_quiet_gap_is_longer_than_the_gap() -> None:
    """A gap of exactly the episode gap keeps the episode; a longer one ends it."""
    times = [0.0, 10.0, 3610.0, 7211.0, 7212.0]
    assert split_episodes(times, float, 3600.0) == [[0.0, 10.0, 3610.0], [7211.0, 7212.0]]
    assert split_episodes([], float, 3600.0) == []
