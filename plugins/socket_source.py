"""`socket` source: newline-delimited JSON or plain lines over TCP or a Unix socket.

This is what Vector's `socket` sink (`encoding.codec = "json"`, newline framing, the default)
and Fluent Bit's `tcp` output with `format json_lines` send. There is no ack in this protocol;
while the queue is full the connection is not read and TCP flow control stalls the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from agent.components import BatchQueue, Source, count_drop, option
from agent.types import Batch
from plugins.addresses import StreamAddress, cleanup_unix, parse_stream_address, start_stream_server
from plugins.records import LineSplitter, RecordFieldOptions
from plugins.stdin_source import LINE_FORMATS, take_lines

log = structlog.get_logger(__name__)

READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class SocketSourceOptions(RecordFieldOptions):
    """Options of `[sources.<id>] type = "socket"`."""

    listen: str = option("tcp:127.0.0.1:9000", "tcp:HOST:PORT or unix:PATH")
    format: str = option("auto", "auto | plain | json: how each line is read (auto = JSON when it starts with '{')")
    message_field: list[str] = option(
        factory=lambda: ["message", "log", "msg"], doc="record field(s) holding the log line, first present wins"
    )
    level_field: str = option("", 'optional record field with the level (e.g. "level")')
    entity_field: str = option("", 'optional record field with the entity (e.g. "kubernetes.pod_name")')
    time_field: str = option("", "optional record field with the time (epoch seconds or RFC 3339)")
    max_line_bytes: int = option(64 * 1024, "longer lines are cut here (counted as line_truncated)")
    idle_timeout_secs: float = option(300.0, "close connections silent this long")
    max_connections: int = option(256, "connections beyond this are refused")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out: list[str] = []
        try:
            parse_stream_address(self.listen)
        except Exception as exc:
            out.append(str(exc))
        if self.format not in LINE_FORMATS:
            out.append(f"format = {self.format!r}: use one of {', '.join(LINE_FORMATS)}")
        if self.max_line_bytes < 16 or self.idle_timeout_secs <= 0 or self.max_connections < 1:
            out.append("max_line_bytes must be >= 16, idle_timeout_secs > 0, max_connections >= 1")
        return out


class SocketSource(Source):
    """Reads newline-delimited lines (plain or JSON) from TCP or Unix-socket clients."""

    type_name = "socket"

    def __init__(self, source_id: str, options: SocketSourceOptions) -> None:
        super().__init__(source_id)
        self.options = options
        self.address: StreamAddress = parse_stream_address(options.listen)
        self._server: asyncio.Server | None = None
        self._queue: BatchQueue | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, queue: BatchQueue) -> None:
        """Start listening; each connection's lines go to `queue`."""
        self._queue = queue
        self._server, self.address = await start_stream_server(self.address, self._on_connect)
        log.info("source listening", source=self.id, type=self.type_name, address=str(self.address))

    async def stop(self) -> None:
        """Stop listening and cancel every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
            cleanup_unix(self.address)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=1.0)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            if len(self._connections) > self.options.max_connections:
                count_drop(self.id, "too_many_connections")
                return
            await self._serve(reader)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader) -> None:
        if self._queue is None:
            raise RuntimeError("socket source used before start()")
        decoder = self.options.line_decoder(self.id)
        splitter = LineSplitter(self.options.max_line_bytes)
        while True:
            try:
                data = await asyncio.wait_for(reader.read(READ_BYTES), self.options.idle_timeout_secs)
            except TimeoutError:
                count_drop(self.id, "idle_timeout")
                return
            lines = splitter.feed(data) if data else splitter.finish()
            records = take_lines(decoder, self.id, splitter, lines)
            if records:
                await self._queue.put(Batch(source=self.id, records=records))
            if not data:
                return
