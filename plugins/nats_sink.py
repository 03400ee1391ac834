"""`nats` sink: events published to a NATS subject, by default through JetStream.

With `jetstream = true` (the default) every event is published to a stream that captures the
subject and the server's acknowledgement is awaited: a batch is written when the stream holds
it. A batch the server did not take within `publish_timeout_secs` raises, so the daemon counts
it (`sink_error`) and withholds the acks of its source (the shipper or the stream resends).
With `jetstream = false` events are plain NATS publishes, flushed to the server after each
batch (nobody stores them; subscribers that are away miss them).

Exactly once in the stream: an event derived from one input line (its line and anomaly events,
`agent.events.event_id`) is published with a `Nats-Msg-Id` header built from the line's origin (a
JetStream source's stream, sequence and line index). When a message is redelivered to another
agent (its first agent died after writing, before its ack reached the server), the second
agent's publication of the same events carries the same ids and the stream drops it (JetStream
deduplication, counted here as `duplicate_event` drops), as long as it comes within the stream's
`duplicate_window` of the first (`duplicate_window_secs` when this sink creates the stream;
keep it above the source's `ack_wait_secs` plus the time a redelivery waits in a queue).
Incident, session and data-gap events have no such id: they are each agent's own aggregates.

nats-py is asynchronous; the sink is called from the pipeline's worker thread, so it runs its
client on an event loop of its own in one background thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from agent import metrics
from agent.components import Sink, count_drop, option
from plugins.nats_client import DEFAULT_SERVER, SERVERS_DOC, NatsConnectionOptions, connect, ensure_stream

log = structlog.get_logger(__name__)

T = TypeVar("T")

MSG_ID = "Nats-Msg-Id"  # JetStream drops a message whose id it stored within the duplicate window


@dataclass(frozen=True)
class NatsSinkOptions(NatsConnectionOptions):
    """Options of `[sinks.<id>] type = "nats"`."""

    servers: list[str] = option(factory=lambda: [DEFAULT_SERVER], doc=SERVERS_DOC)
    subject: str = option("logdetect.events", "publish every event to this subject")
    jetstream: bool = option(True, "publish through JetStream and wait for the stream's ack")
    stream: str = option("LOGDETECT_EVENTS", "the stream capturing `subject` (created if missing)")
    create_stream: bool = option(True, "create the stream (limits retention) if it does not exist")
    duplicate_window_secs: float = option(
        120.0, "a stream this sink creates drops an event whose Nats-Msg-Id it stored within this time"
    )
    publish_timeout_secs: float = option(5.0, "a batch not taken by the server within this time raises")
    connect_timeout_secs: float = option(5.0, "give up connecting at start after this time")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out = self.connection_problems()
        if any(c in self.subject for c in "*>"):
            out.append("subject must not hold wildcards (events are published to it)")
        if self.publish_timeout_secs <= 0:
            out.append("publish_timeout_secs must be > 0")
        if self.duplicate_window_secs < 1:
            out.append("duplicate_window_secs must be >= 1")
        return out


class NatsSink(Sink):
    """Publishes event lines to NATS (JetStream by default) from the pipeline's worker thread."""

    type_name = "nats"

    def __init__(self, sink_id: str, options: NatsSinkOptions) -> None:
        super().__init__(sink_id)
        self.options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._js: Any = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._loop is None:
            coro.close()
            raise ConnectionError(f"nats sink {self.id!r} is not open")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"nats sink {self.id!r}: no answer from the server within {timeout:g} s") from None

    def open(self) -> None:
        """Start the client's loop and connect (a server that cannot be reached raises)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"nats-sink-{self.id}", daemon=True)
        self._thread.start()
        o = self.options
        try:
            self._client = self._call(connect(o, f"logdetect sink {self.id}"), o.connect_timeout_secs + 1.0)
            if o.jetstream:
                self._js = self._client.jetstream()
                self._call(
                    ensure_stream(self._js, o, work_queue=False, duplicate_window=o.duplicate_window_secs),
                    o.publish_timeout_secs,
                )
        except Exception:
            self.close()
            raise

    def write(self, events: Sequence[bytes]) -> None:
        """Publish the events (no ids); raises when the server did not take them all in time."""
        self.write_with_ids(events, [None] * len(events))

    def write_with_ids(self, events: Sequence[bytes], ids: Sequence[str | None]) -> None:
        """Publish the events, each with its id as `Nats-Msg-Id` (JetStream drops one it stored
        within its duplicate window); raises when the server did not take them all in time."""
        if not events:
            return
        duplicates = self._call(self._publish(list(events), list(ids)), self.options.publish_timeout_secs + 1.0)
        count_drop(self.id, "duplicate_event", duplicates)
        metrics.records_out.labels(component=self.id).inc(len(events) - duplicates)

    async def _publish(self, events: list[bytes], ids: list[str | None]) -> int:
        """Publish; the number of events the stream dropped as duplicates."""
        subject, timeout = self.options.subject, self.options.publish_timeout_secs
        if self._js is not None:
            acks = await asyncio.gather(*(
                self._js.publish(subject, e, timeout=timeout, headers={MSG_ID: i} if i else None)
                for e, i in zip(events, ids, strict=True)
            ))
            return sum(1 for ack in acks if ack.duplicate)
        for event in events:
            await self._client.publish(subject, event)
        await self._client.flush(timeout)
        return 0

    def close(self) -> None:
        """Flush and close the connection, then stop the client's loop."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        client, self._client = self._client, None
        if client is not None:
            future = asyncio.run_coroutine_threadsafe(client.close(), loop)
            try:
                future.result(self.options.connect_timeout_secs)
            except Exception as exc:
                log.warning("nats sink close failed", sink=self.id, error=str(exc) or type(exc).__name__)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5.0)
        if not loop.is_running():
            loop.close()
