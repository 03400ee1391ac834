"""`LineParser`: a Record → ParsedLine, for every configured format, never raising.

The format is fixed at construction (detected from a sample in `auto` mode). Per line the
work is one anchored regex match on the header plus a cached timestamp computation. In `auto`
mode a line that does not fit the detected format is tried against the other formats (a mixed
stream, a stray JSON line); with an explicit format it is kept whole. Either way the worst case
is the raw line as message, `Level.UNKNOWN`, no timestamp — never an exception.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import orjson

from agent import metrics
from agent.parsing.clock import FUTURE_SLACK_SECS, YearGuess, sane_time
from agent.parsing.config import ParserConfig, entity_regex
from agent.parsing.jsonline import LEVEL_FALLBACKS, JsonLineReader
from agent.parsing.learned import learn_columns, make_columns, parse_spec
from agent.parsing.levels import parse_level
from agent.parsing.text_formats import TEXT_FORMATS, Fields, Header, HeaderParser, make_raw
from agent.types import Level, ParsedLine, Record

DETECT_SAMPLE = 200  # lines looked at by detect_format
_DETECT_MAX_CHARS = 1 << 20  # longer sample lines are skipped: JSON-decoding them is pointless


@dataclasses.dataclass
class ParserStats:
    """Counters a metrics exporter can read; plain ints, updated on the hot path."""

    lines: int = 0
    unparsed: int = 0  # no header found: kept whole as message
    failed: int = 0  # a format parser raised on the line (kept whole as well)
    truncated: int = 0  # message longer than max_message_chars
    bad_time: int = 0  # a time outside the sane window (non-finite, far future, before 1970)


class _Chain:
    """Try header parsers in order, starting with the one that matched last time.

    With `pinned_first` the first parser (the configured or detected format) is always tried
    first, so one odd line cannot make a looser format win the lines after it (an oslo.log
    line also reads as an ISO line without a level).
    """

    def __init__(self, parsers: Sequence[HeaderParser], pinned_first: bool = False) -> None:
        self._parsers = list(parsers)
        self._first = 1 if pinned_first else 0  # index of the first parser free to move
        self._last = self._first

    def __call__(self, line: str) -> Header | None:
        parsers = self._parsers
        if self._first:
            header = parsers[0](line)
            if header is not None:
                return header
        last = self._last
        if last < len(parsers):
            header = parsers[last](line)
            if header is not None:
                return header
        for index in range(self._first, len(parsers)):
            if index != last:
                header = parsers[index](line)
                if header is not None:
                    self._last = index
                    return header
        return None


def _looks_like_json(line: str) -> bool:
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")) or len(text) > _DETECT_MAX_CHARS:
        return False
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


def detect_format(lines: Sequence[str]) -> str:
    """The format that explains most of the first non-blank lines; "raw" when none does.

    When no known format explains 90 % of them, a header is learnt from the leading columns
    (`agent.parsing.learned`): "columns:N" or "columns:N+FORMAT".

    Ties go to the more specific format (the order of `TEXT_FORMATS`), so a Windows CBS line,
    which also reads as an ISO line, is reported as "windows".
    """
    sample = [line.rstrip("\r\n") for line in lines[: DETECT_SAMPLE * 2] if line.strip()][:DETECT_SAMPLE]
    if not sample:
        return "raw"
    best, best_count = "raw", 0
    json_count = sum(1 for line in sample if _looks_like_json(line))
    if json_count:
        best, best_count = "json", json_count
    year = YearGuess(None)
    for name, factory in TEXT_FORMATS.items():
        parser = factory(year)
        count = 0
        for line in sample:
            try:
                if parser(line[:_DETECT_MAX_CHARS]) is not None:
                    count += 1
            except Exception:  # a parser that raises simply does not match
                continue
        if count > best_count:
            best, best_count = name, count
    if best != "json" and best_count < 0.9 * len(sample):
        # No known header explains the lines: leading columns, maybe before a known header.
        learnt = learn_columns(sample, best_count)
        if learnt is not None:
            return learnt.name
    return best


EntityFn = Callable[[Record, str, Fields, str], str]
# A ParsedLine's fields in their order: raw, message, timestamp, level, entity, source, line_no,
# component, fields, origin (`LineParser.parts`; `ParsedLine(*parts)` is the line).
LineParts = tuple[str, str, float | None, Level, str, str, int, str, Fields, str]


class LineParser:
    """Splits records into timestamp, level, component, entity and message; never raises."""

    def __init__(self, config: ParserConfig, sample: Sequence[str] = ()) -> None:
        self.config = config
        self.stats = ParserStats()
        self._year = YearGuess(config.assume_year)
        self._max = config.max_message_chars
        self._auto = config.log_format == "auto"
        self._resolved = False
        self.format = config.log_format
        if self._auto and sample:
            self.format = detect_format(sample)
            self._resolved = True
        # auto without a sample: the first non-blank line parsed decides (see parse)
        resolved_now = not self._auto or self._resolved
        self._header: HeaderParser = self._build(self.format) if resolved_now else make_raw(self._year)
        self._entity = self._entity_fn(config)

    # -- construction ----------------------------------------------------------------------
    def _text_chain(self) -> _Chain:
        return _Chain([factory(self._year) for factory in TEXT_FORMATS.values()])

    def _json_reader(self) -> JsonLineReader:
        c = self.config
        return JsonLineReader(c.json_message_field, c.json_level_field, c.json_time_field, self._text_chain())

    def _build(self, name: str) -> HeaderParser:
        if name == "json":
            primary: HeaderParser = self._json_reader()
        elif name == "raw":
            primary = make_raw(self._year)
        elif name in TEXT_FORMATS:
            primary = TEXT_FORMATS[name](self._year)
        else:
            spec = parse_spec(name)
            if spec is None:
                raise ValueError(f"unknown log format {name!r}")  # ParserConfig refused it already
            primary = make_columns(spec, self._year)
        if not self._auto:
            return primary
        # auto: fall back through the other formats, JSON first (it is unmistakable)
        others: list[HeaderParser] = [] if name == "json" else [self._json_reader()]
        others.extend(factory(self._year) for other, factory in TEXT_FORMATS.items() if other != name)
        if name == "raw":
            return _Chain(others)
        return _Chain([primary, *others], pinned_first=True)

    def _entity_fn(self, config: ParserConfig) -> EntityFn:
        spec = config.entity
        if spec == "stream":
            # A structured source with a configured entity field offers it as `entity`
            # (plugins/records.py); otherwise the stream is the source name.
            def by_stream(record: Record, component: str, fields: Fields, line: str) -> str:
                if record.fields:
                    found = record.field("entity")
                    if found:
                        return found
                return record.source

            return by_stream
        if spec == "component":
            return lambda record, component, fields, line: component or record.source
        pattern = entity_regex(spec)
        if pattern is not None:
            search = pattern.search
            limit = config.max_message_chars

            def by_regex(record: Record, component: str, fields: Fields, line: str) -> str:
                m = search(line if len(line) <= limit else line[:limit])
                if m is None:
                    return record.source
                group: str | None = m.group(1) if m.re.groups else None
                return group if group is not None else m.group(0)

            return by_regex
        name = spec[len("field:") :]

        def by_field(record: Record, component: str, fields: Fields, line: str) -> str:
            for key, value in fields:
                if key == name:
                    return value
            found = record.field(name)
            return record.source if found is None else found

        return by_field

    def resolved_config(self) -> ParserConfig:
        """This parser's config with `auto` replaced by the detected format (for bundles)."""
        if self.format == "auto":
            return self.config
        return dataclasses.replace(self.config, log_format=self.format)

    # -- hot path --------------------------------------------------------------------------
    def parse(self, record: Record, line_no: int = 0) -> ParsedLine:
        """One record as a ParsedLine (the raw line and Level.UNKNOWN at worst)."""
        return ParsedLine(*self.parts(record, line_no))

    def parts(self, record: Record, line_no: int = 0) -> LineParts:
        """`parse` without the object: the ParsedLine's fields in their order, as a tuple (the
        pipeline's short road reads them and builds a ParsedLine only for a line it keeps)."""
        line = record.line
        stats = self.stats
        stats.lines += 1
        if not self._resolved and self._auto and line.strip():
            # no sample was given: the first non-blank line decides
            self.format = detect_format([line])
            self._header = self._build(self.format)
            self._resolved = True
        try:
            header = self._header(line)
        except Exception:  # bad input must never stop the stream
            stats.failed += 1
            header = None
        if header is None:
            stats.unparsed += 1
            timestamp: float | None = None
            level = Level.UNKNOWN
            component = ""
            message = line
            fields: Fields = ()
        else:
            timestamp, level, component, message, fields = header
        message = message.rstrip()
        if len(message) > self._max:
            stats.truncated += 1
            message = message[: self._max]
        if record.fields:
            fields = fields + record.fields
            if level is Level.UNKNOWN:
                level = self._record_level(record)
        if timestamp is not None and 0.0 < timestamp <= (record.received_at or time.time()) + FUTURE_SLACK_SECS:
            pass  # the usual header time: sane (`_sane_time` keeps it)
        elif timestamp is not None or record.time is not None:
            timestamp = self._sane_time(timestamp, record)
        return (line, message, timestamp, level, self._entity(record, component, fields, line), record.source,
                line_no, component, fields, record.origin)

    def _sane_time(self, header_time: float | None, record: Record) -> float | None:
        """The line's time: its header's, else the transport's, whichever is sane first.

        None (the pipeline then uses the arrival time) when neither is. A time that was there
        but outside the sane window (`clock.sane_time`) is counted as `bad_time`, so no stage
        after the parser ever sees a non-finite, far-future or pre-1970 time.
        """
        if header_time is None and record.time is None:
            return None
        arrival = record.received_at or time.time()
        sane: float | None = None
        bad = False
        for candidate in (header_time, record.time):
            if candidate is None:
                continue
            sane = sane_time(candidate, arrival)
            if sane is not None:
                break
            bad = True
        if bad:
            self.stats.bad_time += 1
            metrics.records_repaired.labels(component=record.source, reason="bad_time").inc()
        return sane

    def _record_level(self, record: Record) -> Level:
        """Level from a structured record's fields (a Forward record's `level`, say)."""
        for key in (self.config.json_level_field, *LEVEL_FALLBACKS):
            value = record.field(key)
            if value is not None:
                return parse_level(value)
        return Level.UNKNOWN
