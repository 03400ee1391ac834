"""`forward` sink: send events to a Fluent Bit / Fluentd `forward` input.

Forward mode `[tag, [[EventTime, record], …], {"chunk": id, "size": n}]`, one request per batch,
each event's JSON object as the record. With `require_ack_response` (default) the sink waits for
`{"ack": id}` and, on a timeout, a refused connection or a wrong ack, reconnects and resends the
same chunk (same id, so the receiver can drop the duplicate) with exponential backoff, up to
`max_retries`; then the batch is counted as dropped. This runs in the pipeline worker thread, so
a receiver that is down holds the pipeline (and, through the bounded queue, the sources) for at
most the retry budget.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
import structlog

from agent import metrics
from agent.components import Sink, count_drop, option
from plugins.addresses import TcpAddress, UnixAddress, parse_stream_address

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ForwardSinkOptions:
    """Options of `[sinks.<id>] type = "forward"`."""

    address: str = option("tcp:127.0.0.1:24224", "tcp:HOST:PORT or unix:PATH of a Fluent Bit / Fluentd forward input")
    tag: str = option("logdetect.events", "the Forward tag of the events")
    require_ack_response: bool = option(True, "wait for the receiver's ack of every chunk (at-least-once)")
    ack_timeout_secs: float = option(10.0, "an unacked chunk is resent after this time")
    connect_timeout_secs: float = option(5.0, "give up connecting after this time")
    max_retries: int = option(5, "resends of one chunk before its events are dropped (counted)")
    retry_backoff_secs: float = option(0.5, "the first wait between retries (doubles each time)")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out: list[str] = []
        try:
            parse_stream_address(self.address, "address")
        except Exception as exc:
            out.append(str(exc))
        if not self.tag:
            out.append("tag must not be empty")
        if self.max_retries < 0 or self.ack_timeout_secs <= 0 or self.connect_timeout_secs <= 0:
            out.append("max_retries must be >= 0 and timeouts > 0")
        return out


def event_time(ts: float) -> msgpack.ExtType:
    """Epoch seconds as a Forward EventTime (msgpack ext type 0, nanosecond precision)."""
    sec = int(ts)
    return msgpack.ExtType(0, struct.pack(">II", sec, int((ts - sec) * 1e9)))


def _record(event: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(event)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        return obj
    return {"message": event.decode("utf-8", errors="replace")}


class ForwardSink(Sink):
    """Sends events to a Fluentd/Fluent Bit Forward input, waiting for its ack when asked to."""

    type_name = "forward"

    def __init__(self, sink_id: str, options: ForwardSinkOptions) -> None:
        super().__init__(sink_id)
        self.options = options
        self.address = parse_stream_address(options.address, "address")
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if isinstance(self.address, UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = str(self.address.path)
        else:
            if not isinstance(self.address, TcpAddress):
                raise OSError("bad address")
            sock = socket.socket(socket.AF_INET6 if ":" in self.address.host else socket.AF_INET)
            target = (self.address.host, self.address.port)
        sock.settimeout(self.options.connect_timeout_secs)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def write(self, events: Sequence[bytes]) -> None:
        """Send the events as one chunk, retrying with backoff up to max_retries times."""
        if not events:
            return
        now = time.time()
        chunk = base64.b64encode(secrets.token_bytes(16))
        entries = [[event_time(now), _record(e)] for e in events]
        chunk_option: dict[str, Any] = {"size": len(entries)}
        if self.options.require_ack_response:
            chunk_option["chunk"] = chunk.decode()
        payload = msgpack.packb([self.options.tag, entries, chunk_option], use_bin_type=True)
        delay = self.options.retry_backoff_secs
        for attempt in range(self.options.max_retries + 1):
            try:
                self._send(payload, chunk)
            except OSError as exc:
                self._disconnect()
                if attempt == self.options.max_retries:
                    count_drop(self.id, "forward_failed", len(events))
                    log.error("forward sink gave up", sink=self.id, error=str(exc), attempts=attempt + 1)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            metrics.records_out.labels(component=self.id).inc(len(events))
            return

    def _send(self, payload: bytes, chunk: bytes) -> None:
        if self._sock is None:
            self._sock = self._connect()
        sock = self._sock
        sock.settimeout(self.options.ack_timeout_secs)
        sock.sendall(payload)
        if not self.options.require_ack_response:
            return
        unpacker = msgpack.Unpacker(raw=True, max_buffer_size=64 * 1024)
        deadline = time.monotonic() + self.options.ack_timeout_secs
        while time.monotonic() < deadline:
            data = sock.recv(4096)
            if not data:
                raise OSError("connection closed before the ack")
            unpacker.feed(data)
            for reply in unpacker:
                if isinstance(reply, dict) and reply.get(b"ack") == chunk:
                    return
                raise OSError(f"unexpected reply {reply!r}")
        raise OSError("no ack within the timeout")

    def close(self) -> None:
        """Close the connection."""
        self._disconnect()
