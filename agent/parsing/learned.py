"""Headers learnt from the data, for logs whose header no known format explains.

Collectors often write a few columns in front of a familiar line (epoch seconds, a date, a host
name, then a syslog line), and applications invent their own headers. Without a header, the
whole line (times, hosts, pids) would go into the template miner and nearly every line would
look new. From a sample of lines, `learn_columns` finds:

* a known header that starts after `n` leading columns (`columns:3+syslog`): the known format
  must explain most of the sample once the first `n` whitespace-separated columns are set
  aside, and more of it than it does without; the smallest such `n` wins;
* otherwise the leading columns whose values behave like header values, by position statistics
  over the sample (`columns:2`): at each position, nearly every value is a time, a date, an
  epoch number, a level word, or holds a digit (counters, ids, pids, hosts like `node-17`),
  and the values vary (a constant first word is message, not header).

The leading columns become header fields (`col1`, `col2`, …), never message tokens. The time
comes from them (an ISO date-time, epoch seconds or milliseconds, or a date and a time in two
columns), else from the known header after them; a level word among them is the level.
The spec is a string (`columns:N` or `columns:N+format`) so it travels in the bundle manifest
like any format name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.parsing.clock import YearGuess, epoch_from_number, parse_iso8601
from agent.parsing.levels import parse_level
from agent.parsing.text_formats import TEXT_FORMATS, Fields, Header, HeaderParser
from agent.types import Level

PREFIX = "columns:"
MAX_COLUMNS = 6
_SPEC = re.compile(r"columns:([1-9])(?:\+([a-z0-9]+))?\Z")
_DATE = re.compile(r"\d{4}-\d\d-\d\d\Z|\d{4}/\d\d/\d\d\Z|\d\d/\d\d/\d{4}\Z")
_TIME = re.compile(r"\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?\Z")
_EPOCH = re.compile(r"\d{9,10}(?:\.\d{1,9})?\Z|\d{12,13}\Z")
_DIGIT = re.compile(r"\d").search
_HEADER_SHARE = 0.95  # of the sample values at a position, to call the position a header column
_KNOWN_SHARE = 0.5  # of the sample a known header must explain after the columns


@dataclass(frozen=True, slots=True)
class ColumnsSpec:
    """A learnt header: N leading columns, then a known format or the message."""

    columns: int
    inner: str | None  # a known text format after the columns, or None: the rest is the message

    @property
    def name(self) -> str:
        """The format name this spec is written as: `columns:N[+format]`."""
        return f"{PREFIX}{self.columns}" + (f"+{self.inner}" if self.inner else "")


def parse_spec(name: str) -> ColumnsSpec | None:
    """The spec a `columns:N[+format]` name stands for; None when `name` is not one."""
    m = _SPEC.match(name)
    if m is None or (m.group(2) is not None and m.group(2) not in TEXT_FORMATS):
        return None
    return ColumnsSpec(int(m.group(1)), m.group(2))


def _split(line: str, n: int) -> tuple[list[str], str] | None:
    parts = line.split(None, n)
    if len(parts) <= n:
        return None
    return parts[:n], parts[n]


def _header_like(values: Sequence[str]) -> bool:
    if not values:
        return False
    hits = sum(1 for v in values if _DIGIT(v) is not None or parse_level(v.strip("[]:")) is not Level.UNKNOWN)
    return hits >= _HEADER_SHARE * len(values) and len(set(values)) > 1


def learn_columns(sample: Sequence[str], known_best: int) -> ColumnsSpec | None:
    """The header the sample's leading columns make, if any (see the module docstring).

    `known_best` is how many sample lines the best known format explains as they are.
    """
    lines = [line for line in sample if line.strip()]
    if not lines:
        return None
    year = YearGuess(None)
    parsers = {name: factory(year) for name, factory in TEXT_FORMATS.items()}
    for n in range(1, MAX_COLUMNS + 1):
        rests = [s[1] for s in (_split(line, n) for line in lines) if s is not None]
        best, best_count = None, 0
        for name, parse in parsers.items():
            count = 0
            for rest in rests:
                try:
                    count += parse(rest) is not None
                except Exception:  # a parser that raises simply does not match
                    continue
            if count > best_count:
                best, best_count = name, count
        if best is not None and best_count >= _KNOWN_SHARE * len(lines) and best_count > known_best:
            return ColumnsSpec(n, best)
    columns = 0
    while columns < MAX_COLUMNS:
        values = [s[0][columns] for s in (_split(line, columns + 1) for line in lines) if s is not None]
        if len(values) < 0.9 * len(lines) or not _header_like(values):
            break
        columns += 1
    return ColumnsSpec(columns, None) if columns else None


def _time_of(cols: Sequence[str]) -> float | None:
    for i, col in enumerate(cols):
        if "T" in col or (i + 1 < len(cols) and _DATE.match(col) and _TIME.match(cols[i + 1])):
            text = col if "T" in col else f"{col.replace('/', '-')}T{cols[i + 1]}"
            t = parse_iso8601(text)
            if t is not None:
                return t
    for col in cols:
        if _EPOCH.match(col):
            return epoch_from_number(float(col))
    for col in cols:
        if _DATE.match(col):
            return parse_iso8601(col.replace("/", "-"))
    return None


def make_columns(spec: ColumnsSpec, year: YearGuess) -> HeaderParser:
    """A header parser for `spec`: fields from the columns, the rest parsed by the inner format."""
    inner: HeaderParser | None = TEXT_FORMATS[spec.inner](year) if spec.inner else None
    n = spec.columns
    names = tuple(f"col{i + 1}" for i in range(n))

    def parse(line: str) -> Header | None:
        split = _split(line, n)
        if split is None:
            return None
        cols, rest = split
        fields: Fields = tuple(zip(names, cols, strict=True))
        t = _time_of(cols)
        level = Level.UNKNOWN
        for col in cols:
            level = parse_level(col.strip("[]:"))
            if level is not Level.UNKNOWN:
                break
        if inner is None:
            return t, level, "", rest, fields
        header = inner(rest)
        if header is None:
            return None
        t_inner, level_inner, component, message, inner_fields = header
        return (
            t if t is not None else t_inner,
            level_inner if level_inner is not Level.UNKNOWN else level,
            component,
            message,
            fields + inner_fields,
        )

    return parse

