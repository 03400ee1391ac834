"""Calendar arithmetic for header timestamps: fields → float seconds since the epoch, UTC.

`datetime` is avoided on the hot path: a civil-date → day-number formula plus a small cache of
day numbers is several times faster, and every invalid field gives None instead of raising.
Naive times (no offset in the line) are taken as UTC.
"""

from __future__ import annotations

import math
import re
import time

MONTHS: dict[str, int] = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}

_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DAY_CACHE: dict[tuple[int, int, int], int] = {}
_DAY_CACHE_MAX = 8192


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def epoch(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    """Epoch seconds of a UTC wall-clock time; None when a field is out of range."""
    if not (1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month]):
        return None
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second, as syslog may write it
        return None
    key = (year, month, day)
    days = _DAY_CACHE.get(key)
    if days is None:
        if not 1 <= year <= 9999:
            return None
        days = days_from_civil(year, month, day)
        if len(_DAY_CACHE) >= _DAY_CACHE_MAX:
            _DAY_CACHE.clear()
        _DAY_CACHE[key] = days
    return float(days * 86400 + hour * 3600 + minute * 60 + second)


def fraction(digits: str | None) -> float:
    """'123' → 0.123, '675872' → 0.675872; '' or None → 0."""
    if not digits:
        return 0.0
    return int(digits) / float(10 ** len(digits))  # int ** int is typed Any (negative powers)


def offset_seconds(tz: str | None) -> int:
    """Seconds EAST of UTC for 'Z', '+05:30', '-0700', '+02'; 0 for None/'Z'."""
    if not tz or tz in ("Z", "z"):
        return 0
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    return sign * (hours * 3600 + minutes * 60)


_ISO = re.compile(
    r"\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$"
)


def parse_iso8601(text: str) -> float | None:
    """An ISO-8601 / RFC 3339 date-time string → epoch seconds; None when it is not one."""
    m = _ISO.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, tz = m.groups()
    base = epoch(
        int(year),
        int(month),
        int(day),
        int(hour) if hour else 0,
        int(minute) if minute else 0,
        int(second) if second else 0,
    )
    if base is None:
        return None
    return base + fraction(frac) - offset_seconds(tz)


def epoch_from_number(value: float) -> float | None:
    """A numeric timestamp in s, ms, µs or ns (guessed by magnitude) → epoch seconds."""
    if value != value or value < 0:  # NaN or negative
        return None
    if value < 1e11:  # seconds until the year 5138
        return float(value)
    if value < 1e14:
        return value / 1e3
    if value < 1e17:
        return value / 1e6
    if value < 1e20:
        return value / 1e9
    return None


FUTURE_SLACK_SECS = 86400.0
"""How far past its arrival a record's time may lie (clock skew, a zone read as UTC)."""


def sane_time(t: float | None, arrival: float) -> float | None:
    """`t` when it is a plausible time for a record that arrived at `arrival`; else None.

    Plausible: finite, after 1970-01-01, and at most `FUTURE_SLACK_SECS` past the arrival.
    Anything else (2**62, year 10000, inf, a JSON `"1e300"`) would break calendar code
    downstream (`datetime.fromtimestamp`, `math.floor`), so the caller uses the arrival time.
    """
    if t is None:
        return None
    if not math.isfinite(t) or t <= 0.0 or t > arrival + FUTURE_SLACK_SECS:
        return None
    return t


# The formats whose header carries no year (RFC 3164 syslog, Android logcat, Proxifier): their
# parsers take the year from YearGuess, so it is a guess unless `assume_year` was configured.
# tests/unit/test_parsing_year.py checks this set against the parsers themselves.
YEARLESS_FORMATS = frozenset({"syslog", "android", "proxifier"})


def year_is_known(log_format: str, assume_year: int | None = None) -> bool:
    """Whether the times of lines in this format carry a real year (not the current year guessed)."""
    return assume_year is not None or log_format not in YEARLESS_FORMATS


class YearGuess:
    """The year of a timestamp whose format omits it (RFC 3164 syslog, logcat, Proxifier).

    With `assume_year` that year is used as is. Otherwise the current year, unless that puts
    the time more than a day into the future (December lines read in January): then the
    previous year.
    """

    __slots__ = ("_assume", "_future_limit", "_year")

    def __init__(self, assume_year: int | None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._assume = assume_year
        self._year = assume_year if assume_year is not None else time.gmtime(now).tm_year
        self._future_limit = now + 86400.0

    def epoch(self, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
        """Epoch seconds of a year-less timestamp, taken in the previous year if it lands in the future."""
        ts = epoch(self._year, month, day, hour, minute, second)
        if self._assume is None and ts is not None and ts > self._future_limit:
            ts = epoch(self._year - 1, month, day, hour, minute, second)
        return ts
