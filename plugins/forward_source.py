"""`forward` source: a Fluentd Forward protocol v1 server on TCP or a Unix socket.

Per connection: optional HELO/PING/PONG, then a bounded streaming msgpack decoder. Each
request becomes one `Batch`; when the request carries a `chunk` option the ack is written only
after the batch's `done` future says its records were processed and the events written to the
sinks. While the queue is full `put` waits, so this connection is not read any further and no
acks go out: the client's own buffer (Fluent Bit's retry/backlog) holds the data.

Processed chunk ids are also journaled with the batch they belong to (`agent.delivery`), so a
chunk resent after a crash is acked without being emitted again (or only its unwritten rest).
A chunk's records carry the `origin` `forward:<chunk id>:<index>`: a chunk the client resends
to another agent (its first agent died before the ack) gives that agent's events the same ids
(`event.id`, the `nats` sink's `Nats-Msg-Id`), so an events stream keeps one copy.

A bad connection (malformed msgpack, a frame over `max_frame_bytes`, failed handshake, idle
past `idle_timeout_secs`) is counted by reason and closed; other connections are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import msgpack
import structlog

from agent import metrics
from agent.components import BatchQueue, Source, count_drop, now, option
from agent.delivery import Progress
from agent.types import Batch
from plugins.addresses import StreamAddress, cleanup_unix, parse_stream_address, start_stream_server
from plugins.forward_codec import (
    DEFAULT_MAX_FRAME_BYTES,
    DecodedRequest,
    ForwardProtocolError,
    Handshake,
    RequestDecoder,
    encode_ack,
    new_unpacker,
)
from plugins.records import DEFAULT_MAX_RECORD_BYTES, RecordFieldOptions, with_origins

log = structlog.get_logger(__name__)

READ_BYTES = 256 * 1024
MAX_PING_BYTES = 64 * 1024


@dataclass(frozen=True)
class ForwardSourceOptions(RecordFieldOptions):
    """Options of `[sources.<id>] type = "forward"`."""

    listen: str = option("tcp:127.0.0.1:24224", "tcp:HOST:PORT, or unix:PATH (Fluent Bit `unix_path`)")
    message_field: list[str] = option(
        factory=lambda: ["log"], doc="record field(s) holding the log line, first present wins"
    )
    level_field: str = option("", 'optional record field with the level (e.g. "level")')
    entity_field: str = option("", 'optional record field with the entity (e.g. "kubernetes.pod_name")')
    time_field: str = option("", "optional record field with the time (the Forward EventTime is used otherwise)")
    shared_key: str = option("", "non-empty: require the HELO/PING/PONG shared-key handshake")
    self_hostname: str = option("logdetect", "our name in the handshake (must differ from the client's)")
    idle_timeout_secs: float = option(300.0, "close connections silent this long")
    handshake_timeout_secs: float = option(10.0, "a client must finish the shared-key handshake within this time")
    max_frame_bytes: int = option(DEFAULT_MAX_FRAME_BYTES, "larger requests close the connection (bounded memory)")
    max_record_bytes: int = option(DEFAULT_MAX_RECORD_BYTES, "longer records are cut (counted)")
    dedupe_chunks: int = option(4096, "recently seen chunk ids: retries are acked, not reprocessed")
    max_connections: int = option(256, "connections beyond this are refused")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out: list[str] = []
        try:
            parse_stream_address(self.listen)
        except Exception as exc:
            out.append(str(exc))
        if not self.message_field:
            out.append("message_field must name at least one field")
        if self.max_frame_bytes < 1024 or self.max_record_bytes < 1024:
            out.append("max_frame_bytes and max_record_bytes must be at least 1024")
        if self.idle_timeout_secs <= 0 or self.handshake_timeout_secs <= 0:
            out.append("idle_timeout_secs and handshake_timeout_secs must be > 0")
        if self.max_connections < 1 or self.dedupe_chunks < 0:
            out.append("max_connections must be >= 1 and dedupe_chunks >= 0")
        return out


class _Closing(Exception):
    """Close this connection; the reason has been counted."""


class ForwardSource(Source):
    """A Fluent Forward protocol server: shippers send records, acked once processed."""

    type_name = "forward"

    def __init__(self, source_id: str, options: ForwardSourceOptions) -> None:
        super().__init__(source_id)
        self.options = options
        self.address: StreamAddress = parse_stream_address(options.listen)
        self._server: asyncio.Server | None = None
        self._queue: BatchQueue | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._ack_tasks: set[asyncio.Task[None]] = set()
        self._acks_by_writer: dict[int, set[asyncio.Task[None]]] = {}
        self._stopping = False
        self._parked: list[asyncio.StreamWriter] = []
        # chunk id -> future of the batch that carried it (None once processed).
        self._chunks: dict[bytes, asyncio.Future[bool] | None] = {}
        self._chunk_order: list[bytes] = []
        # chunk id -> records of it written before the last restart (`agent.delivery`).
        self._delivered: dict[bytes, Progress] = {}

    def restore_delivered(self, delivered: dict[bytes, Progress]) -> None:
        """Chunks already emitted before a restart: a resend is acked without emitting twice."""
        self._delivered = dict(delivered)

    async def start(self, queue: BatchQueue) -> None:
        """Start listening; connections hand their records to `queue`."""
        self._queue = queue
        self._server, self.address = await start_stream_server(
            self.address, self._on_connect, limit=READ_BYTES
        )
        log.info("source listening", source=self.id, type=self.type_name, address=str(self.address))

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
            cleanup_unix(self.address)
        # Stop reading, but keep the sockets open: batches already queued are drained by the
        # daemon after this, and their acks must still reach the clients (`finish`).
        self._stopping = True
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=1.0)

    async def finish(self, timeout: float) -> None:
        """After the drain: let acks of processed batches go out, then close every socket."""
        if self._ack_tasks:
            await asyncio.wait(self._ack_tasks, timeout=timeout)
        parked, self._parked = self._parked, []
        for writer in parked:
            writer.close()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            if len(self._connections) > self.options.max_connections:
                count_drop(self.id, "too_many_connections")
                return
            await self._serve(reader, writer)
        except _Closing:
            pass
        except (ConnectionError, asyncio.IncompleteReadError):
            count_drop(self.id, "connection_reset")
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            self._acks_by_writer.pop(id(writer), None)
            if self._stopping and not writer.is_closing():
                self._parked.append(writer)
            else:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _read(self, reader: asyncio.StreamReader, timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(reader.read(READ_BYTES), timeout)
        except TimeoutError:
            count_drop(self.id, "idle_timeout")
            raise _Closing from None

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """HELO → PING → PONG. Returns the bytes the client sent after its PING (a client may
        pipeline its first request in the same write): they are requests, processed as such."""
        shake = Handshake(
            shared_key=self.options.shared_key.encode(), hostname=self.options.self_hostname.encode()
        )
        writer.write(shake.helo())
        await writer.drain()
        received = bytearray()
        while True:
            data = await self._read(reader, self.options.handshake_timeout_secs)
            if not data or len(received) > MAX_PING_BYTES:  # a PING is a few hundred bytes
                count_drop(self.id, "handshake_failed")
                raise _Closing
            received += data
            unpacker = new_unpacker(max(len(received), 1024))
            try:
                unpacker.feed(bytes(received))
                ping = next(iter(unpacker), _NOTHING)
            except (ValueError, TypeError, msgpack.UnpackException):
                ping = None
            if ping is _NOTHING:
                continue
            accepted, pong = shake.check_ping(ping)
            writer.write(pong)
            await writer.drain()
            if not accepted:
                count_drop(self.id, "handshake_failed")
                log.warning("forward handshake failed", source=self.id, throttle=True)
                raise _Closing
            return bytes(received[unpacker.tell() :])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pipelined = await self._handshake(reader, writer) if self.options.shared_key else b""
        decoder = RequestDecoder(
            self.id, self.options.field_map(), self.options.max_frame_bytes, self.options.max_record_bytes
        )
        unpacker = new_unpacker(self.options.max_frame_bytes)
        fed = 0
        while True:
            if pipelined:
                data, pipelined = pipelined, b""
            else:
                data = await self._read(reader, self.options.idle_timeout_secs)
            if not data:
                if fed > unpacker.tell():
                    count_drop(self.id, "disconnect_mid_frame")
                # The client may have only shut down its sending side: let its acks go out.
                pending = self._pending_for(writer)
                if pending:
                    await asyncio.wait(pending, timeout=self.options.idle_timeout_secs)
                return
            try:
                unpacker.feed(data)
            except msgpack.BufferFull:
                count_drop(self.id, "frame_too_large")
                log.warning(
                    "forward frame too large; closing",
                    source=self.id,
                    max_frame_bytes=self.options.max_frame_bytes,
                    throttle=True,
                )
                raise _Closing from None
            fed += len(data)
            while True:
                try:
                    obj = unpacker.unpack()
                except msgpack.OutOfData:
                    break
                except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData) as exc:
                    # Covers malformed bytes and str/bin/array headers over the frame limit.
                    reason = "frame_too_large" if "exceeds max" in str(exc) else "malformed_msgpack"
                    count_drop(self.id, reason)
                    metrics.decode_errors.labels(component=self.id).inc()
                    raise _Closing from None
                await self._handle(obj, decoder, writer)

    async def _handle(self, obj: object, decoder: RequestDecoder, writer: asyncio.StreamWriter) -> None:
        try:
            request = decoder.decode(obj, now())
        except ForwardProtocolError:
            # The spec says to ignore non-request values; count them and keep the connection.
            count_drop(self.id, "bad_request")
            metrics.decode_errors.labels(component=self.id).inc()
            return
        if request.heartbeat:
            return
        for reason, n in request.skipped.items():
            count_drop(self.id, reason, n)
        if request.truncated:
            metrics.records_repaired.labels(component=self.id, reason="record_truncated").inc(request.truncated)
        await self._submit(request, writer)

    async def _submit(self, request: DecodedRequest, writer: asyncio.StreamWriter) -> None:
        if self._queue is None:
            raise RuntimeError("forward source used before start()")
        chunk = request.chunk
        if chunk is not None and chunk in self._chunks:
            # A retry of a chunk we already have: do not process twice, ack once the first is done.
            count_drop(self.id, "duplicate_chunk", len(request.records))
            self._ack_after(self._chunks[chunk], chunk, writer)
            return
        records, skip = request.records, 0
        if chunk is not None:  # the chunk id is the same on any agent it is (re)sent to
            records = with_origins(records, "forward:" + chunk.decode("utf-8", "replace").strip())
        before = self._delivered.get(chunk) if chunk is not None else None
        if before is not None:
            # A resend of a chunk written before a restart: emit only what was not.
            skip = min(before.emitted, len(records))
            count_drop(self.id, "duplicate_chunk", skip)
            records = records[skip:]
        if not records:
            if chunk is not None:
                self._ack_after(None, chunk, writer)
            return
        metrics.records_in.labels(component=self.id).inc(len(records))
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        batch = Batch(source=self.id, records=records, done=done, key=chunk, skip=skip)
        if chunk is not None:
            self._remember(chunk, done)
        await self._queue.put(batch)  # waits while full: we stop reading this connection
        if chunk is not None:
            self._ack_after(done, chunk, writer)

    def _remember(self, chunk: bytes, done: asyncio.Future[bool]) -> None:
        if self.options.dedupe_chunks == 0:
            return
        self._chunks[chunk] = done
        self._chunk_order.append(chunk)

        def forget_if_dropped(fut: asyncio.Future[bool]) -> None:
            # A batch dropped at shutdown was never processed: a retry must be processed.
            if fut.cancelled() or not fut.result():
                self._chunks.pop(chunk, None)

        done.add_done_callback(forget_if_dropped)
        if len(self._chunk_order) > self.options.dedupe_chunks * 2:
            keep = self._chunk_order[-self.options.dedupe_chunks :]
            for old in self._chunk_order[: -self.options.dedupe_chunks]:
                self._chunks.pop(old, None)
            self._chunk_order = keep

    def _ack_after(
        self, done: asyncio.Future[bool] | None, chunk: bytes, writer: asyncio.StreamWriter
    ) -> None:
        async def ack() -> None:
            if done is not None:
                try:
                    processed = await asyncio.shield(done)
                except asyncio.CancelledError:
                    return
                if not processed:
                    return
            if writer.is_closing():
                return
            writer.write(encode_ack(chunk))
            with contextlib.suppress(ConnectionError):
                await writer.drain()

        task = asyncio.get_running_loop().create_task(ack())
        self._ack_tasks.add(task)
        task.add_done_callback(self._ack_tasks.discard)
        per_connection = self._acks_by_writer.setdefault(id(writer), set())
        per_connection.add(task)
        task.add_done_callback(per_connection.discard)

    def _pending_for(self, writer: asyncio.StreamWriter) -> set[asyncio.Task[None]]:
        return set(self._acks_by_writer.get(id(writer), ()))


_NOTHING = object()
