"""Structured input → `Record`: shared by every source that receives maps or JSON lines.

A structured record (Forward map, JSON line) gives the log line in one field (`log` for
Fluent Bit, `message` for Vector) and may carry level, entity and time in others. All other
fields travel in `Record.fields` as (dotted name, text) pairs; a configured level/entity field is
also offered under the conventional names `level` / `entity`, which the parser reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import orjson

from agent.types import Record

MAX_DEPTH = 4
DEFAULT_MAX_RECORD_BYTES = 64 * 1024  # the same cap as a line source's max_line_bytes
MAX_FIELDS = 256  # fields kept per structured record (the message field aside)


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Which record fields feed a `Record`.

    `message` lists candidate names, first present wins (Fluent Bit writes `log`, Vector
    `message`); `level`, `entity`, `time` name optional fields (dotted for nested maps).
    """

    message: tuple[str, ...] = ("log",)
    level: str | None = None
    entity: str | None = None
    time: str | None = None


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {_text(k) if isinstance(k, bytes | str) else str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return None  # msgpack ExtType and other exotic values


def scalar_text(value: Any) -> str | None:
    """A field value as text; None for values that are absent."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return None
    try:
        return orjson.dumps(_jsonable(value)).decode()
    except (TypeError, orjson.JSONEncodeError):
        return None


def flatten_fields(record: dict[Any, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """A record's fields as (dotted name, text) pairs.

    Nested maps are flattened: `{"kubernetes": {"pod_name": …}}` → `kubernetes.pod_name`.
    This runs once per received record, hence the exact-type fast paths.
    """
    out: list[tuple[str, str]] = []
    for key, value in record.items():
        key_type = type(key)
        if key_type is bytes:
            name = prefix + key.decode("utf-8", "replace")
        elif key_type is str:
            name = prefix + key
        else:
            continue
        value_type = type(value)
        if value_type is bytes:
            out.append((name, value.decode("utf-8", "replace")))
        elif value_type is str:
            out.append((name, value))
        elif value_type is dict and depth < MAX_DEPTH:
            out.extend(flatten_fields(value, name + ".", depth + 1))
        else:
            as_text = scalar_text(value)
            if as_text is not None:
                out.append((name, as_text))
    return out


def parse_time_text(value: str) -> float | None:
    """Epoch seconds (`1700000000.5`) or RFC 3339 (`2026-11-23T10:00:00Z`) → epoch seconds."""
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if number > 1e12:  # epoch milliseconds (Fluent Bit json_date_format epoch_ms)
            number /= 1000.0
        return number if number > 0 else None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def record_from_map(
    record: dict[Any, Any],
    fields: FieldMap,
    source: str,
    received_at: float,
    event_time: float | None,
) -> Record | str:
    """A `Record` from a decoded map, or the reason word it is dropped for."""
    pairs = flatten_fields(record)
    by_name = dict(reversed(pairs))  # the first occurrence of a name wins
    message_name = next((name for name in fields.message if name in by_name), None)
    if message_name is None:
        return "missing_message_field"
    message = by_name[message_name]
    rest = [pair for pair in pairs if pair[0] != message_name]
    time = event_time
    if fields.time is not None and fields.time in by_name:
        time = parse_time_text(by_name[fields.time]) or time
    aliases: list[tuple[str, str]] = []
    for wanted, alias in ((fields.level, "level"), (fields.entity, "entity")):
        if wanted is not None and wanted != alias and wanted in by_name:
            aliases.append((alias, by_name[wanted]))
    return Record(
        line=message.rstrip("\r\n"),
        source=source,
        received_at=received_at,
        time=time,
        fields=tuple(rest + aliases),
    )


def with_origins(records: list[Record], prefix: str) -> list[Record]:
    """`records` with `origin` `<prefix>:<index>`: the identity of one message's lines, the same
    whichever agent the message is delivered to (`Record.origin`)."""
    return [Record(r.line, r.source, r.received_at, r.time, r.fields, f"{prefix}:{i}") for i, r in enumerate(records)]


def cap_record(record: Record, max_chars: int) -> tuple[Record, bool]:
    """`record` with its line and every field value cut at `max_chars` characters and at most
    `MAX_FIELDS` fields; True when anything was cut (the caller counts `record_truncated`).

    A Forward record can be any size up to the frame limit (16 MiB); nothing after a source
    should hold or emit more than this per record.
    """
    line, fields = record.line, record.fields
    if len(line) <= max_chars and len(fields) <= MAX_FIELDS and all(len(v) <= max_chars for _, v in fields):
        return record, False
    capped = tuple((k[:max_chars], v[:max_chars]) for k, v in fields[:MAX_FIELDS])
    return replace(record, line=line[:max_chars], fields=capped), True


_INVALID = object()


def _loads_lenient(raw: bytes) -> Any:
    """JSON with invalid UTF-8 inside: decode with replacement characters, then parse."""
    try:
        return orjson.loads(raw.decode("utf-8", errors="replace"))
    except orjson.JSONDecodeError:
        return _INVALID


@dataclass(frozen=True, slots=True)
class LineDecoder:
    """One line of bytes → `Record`: plain text, JSON object, or `auto` (JSON when it looks so).

    Invalid UTF-8 is replaced (U+FFFD), never fatal; over-long lines are cut at
    `max_line_bytes` (counted by the caller as truncated).
    """

    source: str
    format: str = "auto"  # auto | plain | json
    fields: FieldMap = FieldMap(message=("log", "message", "msg"))
    max_line_bytes: int = 64 * 1024

    def decode(self, raw: bytes, received_at: float) -> Record | str:
        """A Record from one raw line (JSON or plain), or the reason it was dropped."""
        raw = raw.rstrip(b"\r\n")
        if len(raw) > self.max_line_bytes:
            raw = raw[: self.max_line_bytes]
        if self.format == "json" or (self.format == "auto" and raw[:1] == b"{"):
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                obj = _loads_lenient(raw)
            if obj is _INVALID:
                if self.format == "json":
                    return "invalid_json"
            else:
                if not isinstance(obj, dict):
                    return "non_object_json"
                return record_from_map(obj, self.fields, self.source, received_at, None)
        if not raw.strip():
            return "empty_line"
        return Record(line=raw.decode("utf-8", errors="replace"), source=self.source, received_at=received_at)


class LineSplitter:
    """Bytes in, complete lines out; a line longer than `max_line_bytes` is cut there.

    The cut-off rest of an over-long line is discarded up to its newline, and counted by the
    caller through `truncated`.
    """

    def __init__(self, max_line_bytes: int = 64 * 1024) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()
        self._discarding = False
        self.truncated = 0

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held until its newline arrives."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines in `data` (and what was held); over-long lines are cut."""
        lines: list[bytes] = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            piece = data[start:] if newline < 0 else data[start:newline]
            if self._discarding:
                if newline >= 0:
                    self._discarding = False
            else:
                self._partial += piece
                if len(self._partial) > self.max_line_bytes:
                    lines.append(bytes(self._partial[: self.max_line_bytes]))
                    self.truncated += 1
                    self._partial.clear()
                    self._discarding = newline < 0
                elif newline >= 0:
                    lines.append(bytes(self._partial))
                    self._partial.clear()
            if newline < 0:
                return lines
            start = newline + 1

    def finish(self) -> list[bytes]:
        """At end of input: the last line even without a newline."""
        rest = [bytes(self._partial)] if self._partial else []
        self._partial.clear()
        self._discarding = False
        return rest


class RecordFieldOptions:
    """Mixin for source options that name record fields (`message_field`, `level_field`,
    `entity_field`, `time_field`; line sources also `format` and `max_line_bytes`): one place
    turns those config keys into a `FieldMap` and a `LineDecoder`."""

    message_field: list[str]
    level_field: str
    entity_field: str
    time_field: str

    def field_map(self) -> FieldMap:
        """Which JSON fields carry the message, level, entity and time."""
        return FieldMap(
            message=tuple(self.message_field),
            level=self.level_field or None,
            entity=self.entity_field or None,
            time=self.time_field or None,
        )

    def line_decoder(self, source: str) -> LineDecoder:
        """A decoder for this source's lines with these field options."""
        return LineDecoder(
            source=source,
            format=getattr(self, "format", "auto"),
            fields=self.field_map(),
            max_line_bytes=getattr(self, "max_line_bytes", 64 * 1024),
        )
