"""`stdin` source: plain lines or JSON lines on standard input (`tail -F f | logdetect …`).

JSON lines are what Fluent Bit's `stdout` output writes with `format json_lines` (message in
`log`) and Vector's `console` sink with `encoding.codec = "json"` (message in `message`).
A reader thread does blocking reads and hands batches to the asyncio queue; while the queue is
full the thread waits, so stdin is not read and the writer of the pipe blocks. At EOF the source
is `finished` (the daemon then drains and exits 0). There is no replay in a pipe: best effort.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import BinaryIO

import structlog

from agent import metrics
from agent.components import BatchQueue, Source, count_drop, now, option, put_from_thread
from agent.types import Batch, Record
from plugins.records import LineDecoder, LineSplitter, RecordFieldOptions

log = structlog.get_logger(__name__)

LINE_FORMATS = ("auto", "plain", "json")
READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class StdinSourceOptions(RecordFieldOptions):
    """Options of `[sources.<id>] type = "stdin"`."""

    format: str = option("auto", "auto | plain | json: how each line is read (auto = JSON when it starts with '{')")
    message_field: list[str] = option(
        factory=lambda: ["log", "message", "msg"], doc="record field(s) holding the log line, first present wins"
    )
    level_field: str = option("", 'optional record field with the level (e.g. "level")')
    entity_field: str = option("", 'optional record field with the entity (e.g. "kubernetes.pod_name")')
    time_field: str = option("", "optional record field with the time (epoch seconds or RFC 3339)")
    max_line_bytes: int = option(64 * 1024, "longer lines are cut here (counted as line_truncated)")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out: list[str] = []
        if self.format not in LINE_FORMATS:
            out.append(f"format = {self.format!r}: use one of {', '.join(LINE_FORMATS)}")
        if self.max_line_bytes < 16:
            out.append("max_line_bytes must be at least 16")
        if not self.message_field:
            out.append("message_field must name at least one field")
        return out


def decode_lines(
    decoder: LineDecoder, component: str, lines: list[bytes], received_at: float
) -> list[Record]:
    """Lines → records; each line that cannot become a record is counted by reason."""
    records: list[Record] = []
    for raw in lines:
        result = decoder.decode(raw, received_at)
        if isinstance(result, str):
            if result != "empty_line":
                count_drop(component, result)
            if result in ("invalid_json", "non_object_json"):
                metrics.decode_errors.labels(component=component).inc()
        else:
            records.append(result)
    return records


def take_lines(decoder: LineDecoder, component: str, splitter: LineSplitter, lines: list[bytes]) -> list[Record]:
    """What a line-reading source does with each chunk it split: count the lines cut short,
    decode the rest (counting what cannot become a record), and count what came in."""
    if splitter.truncated:
        count_drop(component, "line_truncated", splitter.truncated)
        splitter.truncated = 0
    records = decode_lines(decoder, component, lines, now())
    if records:
        metrics.records_in.labels(component=component).inc(len(records))
    return records


class StdinSource(Source):
    """Reads lines from standard input (or a given stream) until it ends."""

    type_name = "stdin"

    def __init__(self, source_id: str, options: StdinSourceOptions, stream: BinaryIO | None = None) -> None:
        super().__init__(source_id)
        self.endless = False
        self.options = options
        self._stream = stream
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self, queue: BatchQueue) -> None:
        """Read from a thread that hands batches to `queue`."""
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._read_loop, args=(loop, queue), name=f"source-{self.id}", daemon=True
        )
        self._thread.start()
        log.info("source reading", source=self.id, type=self.type_name)

    async def stop(self) -> None:
        """Stop handing batches over (a blocked read ends with the process)."""
        # The thread may sit in a blocking read of an open pipe; it is a daemon thread and
        # stops handing batches over once `_stopping` is set.
        self._stopping.set()

    def _read_loop(self, loop: asyncio.AbstractEventLoop, queue: BatchQueue) -> None:
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        decoder = self.options.line_decoder(self.id)
        splitter = LineSplitter(self.options.max_line_bytes)
        try:
            while not self._stopping.is_set():
                # os.read returns what the pipe holds now: natural batching without waiting.
                data = os.read(stream.fileno(), READ_BYTES)
                lines = splitter.feed(data) if data else splitter.finish()
                if not self._hand_over(loop, queue, decoder, lines, splitter):
                    return
                if not data:
                    return
        except Exception as exc:  # a reader thread must never die silently
            log.error("stdin read failed", source=self.id, error=str(exc))
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.finished.set)

    def _hand_over(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: BatchQueue,
        decoder: LineDecoder,
        lines: list[bytes],
        splitter: LineSplitter,
    ) -> bool:
        records = take_lines(decoder, self.id, splitter, lines)
        if not records:
            return True
        if put_from_thread(loop, queue, Batch(source=self.id, records=records), self._stopping):
            return True
        count_drop(self.id, "shutdown", len(records))  # a pipe has no replay
        return False
