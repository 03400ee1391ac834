"""`nats` source: a JetStream durable pull consumer, shared by many agents as a work queue.

Every agent configured with the same `stream` and `durable` pulls from one consumer, so each
message goes to one agent. A message becomes one `Batch`; it is acked only once the batch's
`done` future says its records were processed and the events written to the sinks (as the
`forward` source acks a chunk). A message whose batch was dropped at shutdown is nak'ed, so
another agent takes it at once; one whose agent died (`kill -9`) is redelivered by the server
after `ack_wait_secs`. While a message waits in the queue the source tells the server it is in
progress, so a slow pipeline does not cause a redelivery to another agent.

Each message's key (`<stream>:<stream sequence>`) goes into the delivery journal
(`agent.delivery`) like a Forward chunk id: a message redelivered to the same agent after a
crash is acked without emitting its records again (or only its unwritten rest). A redelivery to
another agent is processed there: processing is at-least-once across agents, and twice only for
the messages whose events were written but whose ack had not reached the server. Each record's
`origin` is `<stream>@<incarnation>:<stream sequence>:<index in the message>` (the incarnation:
a hash of the stream's creation time, so a stream deleted and made again does not reuse the ids
of the old one): the same on whichever agent the message lands, it is the identity of the
line's events, which the `nats` sink publishes as `Nats-Msg-Id` so the events stream keeps one
copy (exactly-once output; see `plugins/nats_sink.py`).

Payloads, by first byte: `[` a Fluent Bit `nats` output flush (`[[time, {record}], …]`),
`{` one JSON record (Vector's `nats` sink with `encoding.codec = "json"`), otherwise plain text
lines (Vector's `text` codec).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from agent import metrics
from agent.components import BatchQueue, Source, count_drop, now, option
from agent.delivery import Progress
from agent.types import Batch, Record
from plugins.nats_client import DEFAULT_SERVER, SERVERS_DOC, NatsConnectionOptions, connect, ensure_stream
from plugins.records import (
    DEFAULT_MAX_RECORD_BYTES,
    RecordFieldOptions,
    cap_record,
    record_from_map,
    with_origins,
)

log = structlog.get_logger(__name__)

RECENT_KEYS = 4096  # keys completed lately: a redelivery whose ack was lost is acked, not reprocessed


@dataclass(frozen=True)
class NatsSourceOptions(RecordFieldOptions, NatsConnectionOptions):
    """Options of `[sources.<id>] type = "nats"`."""

    servers: list[str] = option(factory=lambda: [DEFAULT_SERVER], doc=SERVERS_DOC)
    stream: str = option("LOGS", "the JetStream stream holding the logs")
    subject: str = option("logs.>", "subject filter of the consumer (and of the stream, if created)")
    durable: str = option("logdetect", "durable consumer name: every agent with the same name shares the work")
    create_stream: bool = option(True, "create the stream (work-queue retention) if it does not exist")
    fetch_batch: int = option(256, "messages pulled per request")
    fetch_timeout_secs: float = option(1.0, "a pull request waits this long for messages")
    ack_wait_secs: float = option(30.0, "the server redelivers a message not acked within this time")
    max_ack_pending: int = option(4096, "messages handed to this consumer and not yet acked, at most")
    connect_timeout_secs: float = option(5.0, "give up connecting at start after this time")
    message_field: list[str] = option(
        factory=lambda: ["log", "message", "msg"], doc="record field(s) holding the log line, first present wins"
    )
    level_field: str = option("", 'optional record field with the level (e.g. "level")')
    entity_field: str = option("", 'optional record field with the entity (e.g. "host")')
    time_field: str = option("", "optional record field with the time (epoch seconds or RFC 3339)")
    max_record_bytes: int = option(DEFAULT_MAX_RECORD_BYTES, "longer records are cut (counted)")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out = self.connection_problems()
        if not self.stream:
            out.append("stream must name the JetStream stream")
        if not self.durable or any(c in self.durable for c in " .*>"):
            out.append("durable must be a consumer name (no spaces, dots or wildcards)")
        if self.fetch_batch < 1 or self.max_ack_pending < 1:
            out.append("fetch_batch and max_ack_pending must be >= 1")
        if self.fetch_timeout_secs <= 0 or self.ack_wait_secs < 1:
            out.append("fetch_timeout_secs must be > 0 and ack_wait_secs >= 1")
        if not self.message_field:
            out.append("message_field must name at least one field")
        if self.max_record_bytes < 1024:
            out.append("max_record_bytes must be at least 1024")
        return out


class NatsSource(Source):
    """Pulls messages from a JetStream consumer shared with other agents; acks once processed."""

    type_name = "nats"

    def __init__(self, source_id: str, options: NatsSourceOptions, state_dir: Path | None = None) -> None:
        super().__init__(source_id)
        self.options = options
        self._client: Any = None
        self._sub: Any = None
        self._queue: BatchQueue | None = None
        self._pull: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._acks: set[asyncio.Task[None]] = set()
        self._waiting: dict[bytes, Any] = {}  # key -> the latest delivery of a message not yet acked
        self._unqueued: list[Any] = []  # fetched, not yet in the queue (nak'ed at stop)
        self._recent: dict[bytes, None] = {}
        self._delivered: dict[bytes, Progress] = {}
        self._origin = ""  # `<stream>@<incarnation>`: the prefix of the records' origins

    def restore_delivered(self, delivered: dict[bytes, Progress]) -> None:
        """Messages emitted before a restart: a redelivery is acked without emitting twice."""
        self._delivered = dict(delivered)

    async def start(self, queue: BatchQueue) -> None:
        """Connect, create the stream if asked, bind the durable consumer and start pulling."""
        from nats.js import api

        self._queue = queue
        o = self.options
        self._client = await connect(o, f"logdetect {self.id}")
        try:
            js = self._client.jetstream()
            await ensure_stream(js, o, work_queue=True)
            config = api.ConsumerConfig(
                durable_name=o.durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=o.ack_wait_secs,
                max_ack_pending=o.max_ack_pending,
                filter_subject=o.subject,
            )
            self._sub = await js.pull_subscribe(o.subject, durable=o.durable, stream=o.stream, config=config)
            info = await js.stream_info(o.stream)
        except Exception as exc:
            await self._client.close()
            raise ConnectionError(f"JetStream stream {o.stream!r}, consumer {o.durable!r}: {exc}") from None
        created = str(info.created) if info.created is not None else ""
        self._origin = f"{o.stream}@{hashlib.blake2b(created.encode(), digest_size=4).hexdigest()}"
        loop = asyncio.get_running_loop()
        self._pull = loop.create_task(self._pull_loop())
        self._keepalive = loop.create_task(self._keep_in_progress())
        log.info("source pulling", source=self.id, type=self.type_name, stream=o.stream, durable=o.durable)

    async def stop(self) -> None:
        """Stop pulling; batches already queued are still processed and acked (`finish`)."""
        if self._pull is not None:
            self._pull.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._pull, 2.0)
            self._pull = None
        unqueued, self._unqueued = self._unqueued, []
        for msg in unqueued:
            with contextlib.suppress(Exception):
                await msg.nak()

    async def finish(self, timeout: float) -> None:
        """After the drain: let the acks go out, then close the connection."""
        if self._acks:
            await asyncio.wait(self._acks, timeout=timeout)
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.flush(), timeout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.close(), timeout)
            self._client = None

    async def _pull_loop(self) -> None:
        import nats.errors

        while True:
            try:
                msgs = await self._sub.fetch(self.options.fetch_batch, timeout=self.options.fetch_timeout_secs)
            except nats.errors.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a reconnect in progress, a server restart: try again
                log.warning("nats fetch failed", source=self.id, error=str(exc) or type(exc).__name__, throttle=True)
                await asyncio.sleep(1.0)
                continue
            self._unqueued = list(msgs)
            while self._unqueued:
                await self._submit(self._unqueued[0])
                self._unqueued.pop(0)

    async def _keep_in_progress(self) -> None:
        """Every third of ack_wait: the messages still waiting for their batch are in progress."""
        while True:
            await asyncio.sleep(self.options.ack_wait_secs / 3)
            for msg in [*self._waiting.values(), *self._unqueued]:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _submit(self, msg: Any) -> None:
        if self._queue is None:
            raise RuntimeError("nats source used before start()")
        meta = msg.metadata
        key = f"{meta.stream}:{meta.sequence.stream}".encode()
        if key in self._waiting:  # redelivered while still queued here: ack the latest delivery
            self._waiting[key] = msg
            return
        if key in self._recent:  # processed; its ack was lost
            count_drop(self.id, "duplicate_message")
            await self._ack(msg)
            return
        records = with_origins(self._decode(msg.data, now()), f"{self._origin}:{meta.sequence.stream}")
        skip = 0
        before = self._delivered.get(key)
        if before is not None:  # redelivered after a restart: emit only what was not
            skip = min(before.emitted, len(records))
            count_drop(self.id, "duplicate_message", skip)
            records = records[skip:]
        if not records:
            await self._ack(msg)
            return
        metrics.records_in.labels(component=self.id).inc(len(records))
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[key] = msg
        done.add_done_callback(lambda fut: self._settle(key, fut))
        await self._queue.put(Batch(source=self.id, records=records, done=done, key=key, skip=skip))

    def _settle(self, key: bytes, fut: asyncio.Future[bool]) -> None:
        msg = self._waiting.pop(key, None)
        if msg is None:
            return
        processed = not fut.cancelled() and fut.result()
        if processed:
            self._recent[key] = None
            if len(self._recent) > RECENT_KEYS:
                del self._recent[next(iter(self._recent))]
        task = asyncio.get_running_loop().create_task(self._ack(msg) if processed else self._nak(msg))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _ack(self, msg: Any) -> None:
        try:
            await msg.ack()
        except Exception as exc:  # the server redelivers it; the journal recognises it here
            count_drop(self.id, "ack_failed")
            log.warning("nats ack failed", source=self.id, error=str(exc) or type(exc).__name__, throttle=True)

    async def _nak(self, msg: Any) -> None:
        with contextlib.suppress(Exception):
            await msg.nak()

    def _decode(self, payload: bytes, received_at: float) -> list[Record]:
        head = payload.lstrip()[:1]
        if head in (b"[", b"{"):
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                count_drop(self.id, "invalid_json")
                metrics.decode_errors.labels(component=self.id).inc()
                return []
            if isinstance(obj, dict):
                return self._keep([record_from_map(obj, self.options.field_map(), self.id, received_at, None)])
            return self._keep([self._entry(entry, received_at) for entry in obj])
        decoder = self.options.line_decoder(self.id)
        lines = [raw for raw in payload.split(b"\n") if raw.strip()]
        return self._keep([decoder.decode(raw, received_at) for raw in lines])

    def _entry(self, entry: Any, received_at: float) -> Record | str:
        """One `[time, {record}]` entry of a Fluent Bit flush."""
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
            return "bad_entry"
        stamp = entry[0]
        event_time = float(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None
        return record_from_map(entry[1], self.options.field_map(), self.id, received_at, event_time)

    def _keep(self, results: list[Record | str]) -> list[Record]:
        """The records, with each dropped one counted by reason and long ones cut (counted)."""
        records: list[Record] = []
        for result in results:
            if isinstance(result, str):
                count_drop(self.id, result)
                continue
            record, cut = cap_record(result, self.options.max_record_bytes)
            if cut:
                metrics.records_repaired.labels(component=self.id, reason="record_truncated").inc()
            records.append(record)
        return records
