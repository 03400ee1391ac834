r"""Multi-line stitching: a stack trace joins the log line that started it.

`Stitcher.feed` takes physical lines (Records) and returns completed logical records: the lines
of a Java stack trace (`\tat …`, `Caused by: …`, `\t... 12 more`, the exception line right
after the logged message) or a Python traceback (`Traceback (most recent call last):`, indented
frames and code, chained-exception banners, the final `ValueError: …` line) are appended with
"\n" to the record before them. Any other line is a new header: it closes the pending record.
A line that starts with blank space continues the pending record too (pretty-printed payloads,
wrapped messages), which is how every shipper's multiline mode treats it.

As in Fluent Bit's `python` multiline parser, the exception line ends a traceback: the second
line of a multi-line exception message starts a record of its own unless it is indented.

A record is held until the next header line shows it is complete, so the caller must call
`flush()` when the input goes idle and at EOF. State is per `Record.source`, so interleaved
streams do not stitch into each other (at most `max_streams` are held; beyond that the least
recently started record is released). Buffers are bounded by `max_lines` and `max_chars`: the
excess starts a record of its own (counted in `splits`), never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from agent.types import Record

_JAVA_CONTINUATION = re.compile(r"\s*(?:Caused by: |Suppressed: |\.\.\. \d+ (?:more|common frames omitted))")
# `java.lang.IllegalStateException: msg`, `com.x.FooError`, `kotlin.KotlinNullPointerException`
_JAVA_EXCEPTION = re.compile(r"(?:[a-zA-Z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)(?::\s|$)")
_PY_TRACEBACK = "Traceback (most recent call last):"
_PY_CHAIN = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
# The last line of a traceback: `ValueError: bad`, `mod.CustomError: x`, `KeyboardInterrupt`
_PY_EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(?::|$)")

# Python traceback state of a stream
_NONE, _PY_FRAMES, _PY_DONE = 0, 1, 2
# First letters of a line that `_continues` looks at more closely (Caused by, Suppressed, Traceback)
_NOT_PLAIN = frozenset("CST")


class _Pending:
    __slots__ = ("chars", "first", "lines", "py_state")

    def __init__(self, record: Record) -> None:
        self.first = record
        self.lines = [record.line]
        self.chars = len(record.line)
        self.py_state = _NONE


class Stitcher:
    """Joins stack-trace and traceback lines to the record that started them, per stream."""

    def __init__(self, max_lines: int = 500, max_chars: int = 1_000_000, max_streams: int = 4096) -> None:
        self.max_lines = max(1, max_lines)
        self.max_chars = max(1, max_chars)
        self.max_streams = max(1, max_streams)
        self.splits = 0  # records cut because a trace exceeded max_lines / max_chars
        self.joined = 0  # physical lines appended to an earlier record
        self._pending: dict[str, _Pending] = {}

    @property
    def pending(self) -> int:
        """Streams with a record held back (waiting for its next line or a flush)."""
        return len(self._pending)

    def held(self) -> dict[str, int]:
        """Physical lines held back per stream (`Record.source`)."""
        return {source: len(p.lines) for source, p in self._pending.items()}

    def feed(self, record: Record) -> list[Record]:
        """Completed logical records, in order (usually the previous one of this stream)."""
        pending = self._pending.get(record.source)
        if pending is not None and not self._continues(pending, record.line):
            return [self._restart(record, pending)]
        return self._held(record, pending)

    def feed_all(self, records: Iterable[Record]) -> list[Record]:
        """`feed` of each record in turn: the completed records of them all, in order."""
        out: list[Record] = []
        pending_by, continues, start = self._pending, self._continues, self._start
        for record in records:
            source = record.source
            pending = pending_by.get(source)
            line = record.line
            if pending is None:
                out.extend(self._held(record, None))
                continue
            first = line[:1]
            if (pending.py_state == _NONE and first.isalpha() and first not in _NOT_PLAIN
                    and len(pending.lines) == 1 and len(pending_by) == 1):
                space = line.find(" ")
                if line.find(".", 0, space if space >= 0 else len(line)) < 0:
                    # The usual line: a new header with no traceback open (`_continues` is False:
                    # a letter that starts neither `Caused by`, `Suppressed` nor `Traceback`, no
                    # `.` before its first space) after a record of one line, one stream held:
                    # `_restart`, the pending entry starting the next record (still _NONE).
                    out.append(pending.first)
                    pending.first = record
                    pending.lines[0] = line
                    pending.chars = len(line)
                    continue
            if not continues(pending, line):
                # `_restart`, inlined: the usual case of a line
                if len(pending_by) > 1:  # re-insert: dict order = least recently started first
                    del pending_by[source]
                    pending_by[source] = pending
                lines = pending.lines
                if len(lines) == 1:  # a record of one line: the pending entry starts the next one
                    out.append(pending.first)
                    pending.first = record
                    lines[0] = line
                    pending.chars = len(line)
                    pending.py_state = _PY_FRAMES if line.startswith(_PY_TRACEBACK) else _NONE
                else:
                    out.append(self._emit(pending))
                    pending_by[source] = start(record)
            else:
                out.extend(self._held(record, pending))
        return out

    def _restart(self, record: Record, pending: _Pending) -> Record:
        """A new header line closes its stream's pending record and starts the next."""
        del self._pending[record.source]  # re-insert: dict order = least recently started first
        self._pending[record.source] = self._start(record)
        return self._emit(pending)

    def _held(self, record: Record, pending: _Pending | None) -> list[Record]:
        """A stream's first record, or a line that continues its pending record."""
        if pending is None:
            self._pending[record.source] = self._start(record)
            if len(self._pending) > self.max_streams:
                # too many streams hold a record: release the least recently started one
                oldest = next(iter(self._pending))
                return [self._emit(self._pending.pop(oldest))]
            return []
        line = record.line
        if len(pending.lines) < self.max_lines and pending.chars + 1 + len(line) <= self.max_chars:
            pending.lines.append(line)
            pending.chars += 1 + len(line)
            self.joined += 1
            return []
        # over the bound: the excess continues as a record of its own, in the same trace state
        self.splits += 1
        fresh = _Pending(record)
        fresh.py_state = pending.py_state
        del self._pending[record.source]  # re-insert: dict order = least recently started first
        self._pending[record.source] = fresh
        return [self._emit(pending)]

    def flush(self) -> list[Record]:
        """Emit every pending record (input idle or at EOF)."""
        out = [self._emit(pending) for pending in self._pending.values()]
        self._pending.clear()
        return out

    # -- rules -----------------------------------------------------------------------------
    @staticmethod
    def _start(record: Record) -> _Pending:
        pending = _Pending(record)
        if record.line.startswith(_PY_TRACEBACK):
            pending.py_state = _PY_FRAMES  # a bare traceback (uncaught, on stderr)
        return pending

    @staticmethod
    def _continues(pending: _Pending, line: str) -> bool:
        """Does `line` belong to the pending record? Updates the traceback state."""
        first = line[:1]
        state = pending.py_state
        if state != _NONE:
            if not line.strip() or first in " \t":
                return True  # frames, code lines, blank lines between chained tracebacks
            if line.startswith(_PY_TRACEBACK):
                pending.py_state = _PY_FRAMES
                return True
            if line.startswith(_PY_CHAIN):
                return True
            if state == _PY_FRAMES and _PY_EXCEPTION.match(line):
                pending.py_state = _PY_DONE  # the exception line ends the traceback
                return True
            pending.py_state = _NONE
            return False
        if first in " \t":
            return bool(line.strip())
        if not first:
            return False
        if line.startswith(_PY_TRACEBACK):
            pending.py_state = _PY_FRAMES
            return True
        if first in ("C", "S", ".") and _JAVA_CONTINUATION.match(line):
            return True
        if not first.isalpha():
            return False
        # An exception line's name is dotted before any space (`java.lang.X: `): most lines that
        # start with a letter (a syslog month) have no `.` before their first space.
        space = line.find(" ")
        if line.find(".", 0, space if space >= 0 else len(line)) < 0:
            return False
        return _JAVA_EXCEPTION.match(line) is not None

    @staticmethod
    def _emit(pending: _Pending) -> Record:
        lines = pending.lines
        while len(lines) > 1 and not lines[-1].strip():
            lines.pop()  # blank lines kept while a chained traceback might follow
        if len(lines) == 1:
            return pending.first
        return replace(pending.first, line="\n".join(lines))
