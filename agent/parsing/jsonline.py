"""JSON lines as shippers write them: Fluent Bit `stdout`/`tcp` `format json_lines`
(`{"date": 1700000000.123, "log": "…"}`, or `json_date_key ts` with iso8601), Vector `console`
JSON (`{"message": "…", "timestamp": "2026-…Z", "host": …}`) and JSON application loggers.

The configured field names are tried first, then the usual fallbacks. Every other key is kept,
flattened to dotted paths (`kubernetes.pod_name`), as header fields. When the record carries no
level, the message itself is read as a text log line (a tailed application log inside `log`),
so level, component and the app's own timestamp are not lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from agent.parsing.clock import epoch_from_number, parse_iso8601
from agent.parsing.levels import level_from_number, parse_level
from agent.parsing.text_formats import Fields, Header
from agent.types import Level

MESSAGE_FALLBACKS = ("log", "message", "msg")
TIME_FALLBACKS = ("time", "timestamp", "ts", "date", "@timestamp")
LEVEL_FALLBACKS = ("level", "severity", "lvl", "log.level")
COMPONENT_KEYS = ("component", "logger", "logger_name", "service", "service.name", "app",
                  "kubernetes.container_name", "host", "hostname")  # fmt: skip

MAX_FIELDS = 64  # a record with more keys keeps the first 64: bounded memory per line
MAX_FIELD_CHARS = 4096
MAX_DEPTH = 4


def _ordered(first: str, fallbacks: tuple[str, ...]) -> tuple[str, ...]:
    return (first, *(name for name in fallbacks if name != first))


def lookup(obj: dict[str, Any], name: str) -> Any:
    """obj[name], or for a dotted name the nested value (`kubernetes.pod_name`); None if absent."""
    value = obj.get(name)
    if value is not None or "." not in name:
        return value
    node: Any = obj
    for part in name.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def as_text(value: Any) -> str:
    """A JSON value as the text a log line would show (true/false, numbers as written)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(value).decode()


def flatten(obj: dict[str, Any], skip: str | None) -> Fields:
    """A JSON object's fields as dotted (key, text) pairs, leaving out the `skip` field."""
    out: list[tuple[str, str]] = []
    _flatten_into(obj, "", skip, out, 0)
    return tuple(out)


def _flatten_into(
    obj: dict[str, Any], prefix: str, skip: str | None, out: list[tuple[str, str]], depth: int
) -> None:
    for key, value in obj.items():
        if len(out) >= MAX_FIELDS:
            return
        path = f"{prefix}{key}"
        if path == skip:
            continue
        if isinstance(value, dict) and depth < MAX_DEPTH:
            _flatten_into(value, path + ".", skip, out, depth + 1)
        else:
            text = as_text(value)
            out.append((path, text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS]))


def time_of(value: Any) -> float | None:
    """Epoch seconds from a JSON time value (number or ISO-8601 text), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return epoch_from_number(float(value))
    if isinstance(value, str):
        ts = parse_iso8601(value)
        if ts is None:
            try:
                return epoch_from_number(float(value))
            except ValueError:
                return None
        return ts
    return None


def level_of(value: Any) -> Level:
    """The Level of a JSON level value: a name, a syslog severity or a pino/bunyan number."""
    if isinstance(value, bool):
        return Level.UNKNOWN
    if isinstance(value, int):
        return level_from_number(value)
    if isinstance(value, str):
        return parse_level(value)
    return Level.UNKNOWN


class JsonLineReader:
    """`line -> Header | None` for JSON object lines; None when the line is not one."""

    def __init__(
        self,
        message_field: str,
        level_field: str,
        time_field: str,
        inner: Callable[[str], Header | None] | None = None,
    ) -> None:
        self._message_keys = _ordered(message_field, MESSAGE_FALLBACKS)
        self._level_keys = _ordered(level_field, LEVEL_FALLBACKS)
        self._time_keys = _ordered(time_field, TIME_FALLBACKS)
        self._inner = inner

    def __call__(self, line: str) -> Header | None:
        """The header of a JSON line, or None when the line is not a JSON object."""
        first = line[:1]
        if first != "{" and (first not in (" ", "\t") or not line.lstrip().startswith("{")):
            return None  # decided on the first character: no copy of a long non-JSON line
        text = line.strip()
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None

        message_key, message = None, None
        for key in self._message_keys:
            value = lookup(obj, key)
            if value is not None:
                message_key, message = key, as_text(value)
                break
        ts = None
        for key in self._time_keys:
            value = lookup(obj, key)
            if value is not None:
                ts = time_of(value)
                if ts is not None:
                    break
        level = Level.UNKNOWN
        for key in self._level_keys:
            value = lookup(obj, key)
            if value is not None:
                level = level_of(value)
                break
        component = ""
        for key in COMPONENT_KEYS:
            value = lookup(obj, key)
            if isinstance(value, str) and value:
                component = value
                break
        fields = flatten(obj, message_key)
        if message is None:
            return ts, level, component, line, fields

        if level is Level.UNKNOWN and self._inner is not None:
            header = self._inner(message)
            if header is not None:
                inner_ts, inner_level, inner_component, inner_message, inner_fields = header
                return (
                    inner_ts if inner_ts is not None else ts,
                    inner_level,
                    inner_component or component,
                    inner_message,
                    inner_fields + fields,
                )
        return ts, level, component, message, fields
