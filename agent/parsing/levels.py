"""Severity words of every format we read, mapped onto `agent.types.Level`.

One table serves all formats so that "WARNING" from BGL, "W" from Android logcat, "Warning"
from Windows CBS and PRI severity 4 from syslog all become the same `Level.WARN`.
"""

from __future__ import annotations

from agent.types import Level

# Full words, upper case. Java util.logging (SEVERE, FINE...), BGL (FAILURE, SEVERE), syslog
# (EMERG..DEBUG), Windows (Information, Verbose, Critical), log4j/logback/Spark/Hadoop.
LEVEL_WORDS: dict[str, Level] = {
    "TRACE": Level.TRACE,
    "TRC": Level.TRACE,
    "FINEST": Level.TRACE,
    "FINER": Level.TRACE,
    "VERBOSE": Level.TRACE,
    "DEBUG": Level.DEBUG,
    "DBG": Level.DEBUG,
    "FINE": Level.DEBUG,
    "CONFIG": Level.DEBUG,
    "INFO": Level.INFO,
    "INF": Level.INFO,
    "INFORMATION": Level.INFO,
    "INFORMATIONAL": Level.INFO,
    "NOTICE": Level.NOTICE,
    "WARN": Level.WARN,
    "WARNING": Level.WARN,
    "WRN": Level.WARN,
    "ERROR": Level.ERROR,
    "ERR": Level.ERROR,
    "SEVERE": Level.ERROR,
    "FATAL": Level.FATAL,
    "FTL": Level.FATAL,
    "FAILURE": Level.FATAL,
    "CRIT": Level.FATAL,
    "CRITICAL": Level.FATAL,
    "ALERT": Level.FATAL,
    "EMERG": Level.FATAL,
    "EMERGENCY": Level.FATAL,
    "PANIC": Level.FATAL,
}

# One-letter levels: Android logcat (V D I W E F A), glog (I W E F). Kept apart from the words
# because in free text "A" or "I" is far more often an English word than a level.
LEVEL_LETTERS: dict[str, Level] = {
    "V": Level.TRACE,
    "T": Level.TRACE,
    "D": Level.DEBUG,
    "I": Level.INFO,
    "N": Level.NOTICE,
    "W": Level.WARN,
    "E": Level.ERROR,
    "F": Level.FATAL,
    "A": Level.FATAL,
    "S": Level.UNKNOWN,  # logcat "silent": never printed on a line, listed so it is not guessed
}

# RFC 5424 §6.2.1 severity (PRI % 8): 0 emerg, 1 alert, 2 crit, 3 err, 4 warning, 5 notice,
# 6 informational, 7 debug.
SYSLOG_SEVERITY: tuple[Level, ...] = (
    Level.FATAL,
    Level.FATAL,
    Level.FATAL,
    Level.ERROR,
    Level.WARN,
    Level.NOTICE,
    Level.INFO,
    Level.DEBUG,
)

# pino / bunyan numeric levels (JSON loggers of the Node.js world).
_PINO_LEVELS: dict[int, Level] = {
    10: Level.TRACE,
    20: Level.DEBUG,
    30: Level.INFO,
    40: Level.WARN,
    50: Level.ERROR,
    60: Level.FATAL,
}

# Exact spellings seen on real lines, filled lazily so the hot path is one dict lookup.
_CACHE: dict[str, Level] = {}
_CACHE_MAX = 4096


def parse_level(word: str) -> Level:
    """Map a level word, letter or number to a Level; UNKNOWN when it is not one.

    Case-insensitive; surrounding brackets, angle brackets and a trailing colon are ignored
    ("[notice]", "<ERROR>", "WARN:"). Digits are read as syslog severity (0-7) or pino/bunyan
    levels (10-60), as journald's PRIORITY and JSON loggers write them.
    """
    level = _CACHE.get(word)
    if level is not None:
        return level
    level = _lookup(word)
    if len(word) <= 32:  # only real level spellings are worth remembering
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[word] = level
    return level


def _lookup(word: str) -> Level:
    key = word.strip().strip("[]<>():").strip().upper()
    if not key:
        return Level.UNKNOWN
    if key.isdigit():
        return level_from_number(int(key))
    if len(key) == 1:
        return LEVEL_LETTERS.get(key, Level.UNKNOWN)
    return LEVEL_WORDS.get(key, Level.UNKNOWN)


def level_from_number(value: int) -> Level:
    """Syslog severity 0-7, or a pino/bunyan level 10-60; UNKNOWN otherwise."""
    if 0 <= value <= 7:
        return SYSLOG_SEVERITY[value]
    return _PINO_LEVELS.get(value, Level.UNKNOWN)


def level_words_pattern() -> str:
    """A regex alternation of every level word, longest spelling first (WARNING before WARN)."""
    return "|".join(sorted(LEVEL_WORDS, key=lambda w: (-len(w), w)))
