"""`zmq` source: a PULL (default) or SUB socket receiving log lines.

Message layout (ecosystem.md §4.3), all optional but the payload:

    [topic...,] [header,] payload

- `payload`: newline-separated plain lines or JSON objects, or msgpack (an array of strings or
  maps, or one map); `format = "auto"` tells msgpack from text by the first byte.
- `header`: a msgpack map `{"producer": str, "epoch": int|str, "seq": int}`. Per producer, a
  jump in `seq` within one `epoch` counts the missing messages in
  `logdetect_input_lost_messages` and emits a `logdetect.data_gap` event; a new epoch is a
  producer restart, not a loss.

Backpressure: the receive loop awaits room in the queue before the next `recv`, so a full
queue leaves messages in ZeroMQ's queue up to RCVHWM and then PUSH senders block.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import msgpack
import structlog
import zmq
import zmq.asyncio

from agent import metrics
from agent.components import BatchQueue, Source, count_drop, now, option
from agent.types import Batch, DataGap, Record
from plugins.addresses import zmq_endpoint_problem
from plugins.records import LineDecoder, RecordFieldOptions, cap_record, record_from_map

log = structlog.get_logger(__name__)

SOCKET_TYPES = {"pull": zmq.PULL, "sub": zmq.SUB}
FORMATS = ("auto", "plain", "json", "msgpack")
# First bytes of msgpack maps/arrays; none of them can start UTF-8 text.
_MSGPACK_LEADS = set(range(0x80, 0xA0)) | {0xDC, 0xDD, 0xDE, 0xDF}


@dataclass(frozen=True)
class ZmqSourceOptions(RecordFieldOptions):
    """Options of `[sources.<id>] type = "zmq"`. Exactly one of `listen` (bind) or `connect`."""

    listen: str = option("tcp://127.0.0.1:5556", "bind here (a ZeroMQ endpoint) ...")
    connect: str = option("", "... or connect here instead (e.g. to a PUB)")
    socket_type: str = option("pull", "pull | sub")
    subscribe: list[str] = option(factory=lambda: [""], doc="SUB topic prefixes")
    format: str = option("auto", "auto | plain | json | msgpack")
    message_field: list[str] = option(
        factory=lambda: ["log", "message", "msg"], doc="record field(s) holding the log line, first present wins"
    )
    level_field: str = option("", 'optional record field with the level (e.g. "level")')
    entity_field: str = option("", 'optional record field with the entity (e.g. "kubernetes.pod_name")')
    time_field: str = option("", "optional record field with the time (epoch seconds or RFC 3339)")
    rcvhwm: int = option(1000, "ZeroMQ receive high-water mark (messages)")
    max_message_bytes: int = option(16 * 1024 * 1024, "larger messages are dropped (bounded memory)")
    max_line_bytes: int = option(64 * 1024, "longer lines are cut here (counted as line_truncated)")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out: list[str] = []
        if self.socket_type not in SOCKET_TYPES:
            out.append(f"socket_type = {self.socket_type!r}: use one of {', '.join(SOCKET_TYPES)}")
        if self.format not in FORMATS:
            out.append(f"format = {self.format!r}: use one of {', '.join(FORMATS)}")
        problem = zmq_endpoint_problem(self.connect or self.listen)
        if problem is not None:
            out.append(problem)
        if self.rcvhwm < 0 or self.max_message_bytes < 1024:
            out.append("rcvhwm must be >= 0 and max_message_bytes >= 1024")
        return out


@dataclass(slots=True)
class _Producer:
    epoch: str
    next_seq: int


class ZmqSource(Source):
    """Receives lines, JSON or msgpack records on a ZeroMQ PULL or SUB socket, reporting sequence gaps."""

    type_name = "zmq"

    def __init__(self, source_id: str, options: ZmqSourceOptions) -> None:
        super().__init__(source_id)
        self.options = options
        self.endpoint = options.connect or options.listen
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._producers: dict[str, _Producer] = {}
        self._lines = LineDecoder(
            source=source_id,
            format="auto" if options.format in ("auto", "msgpack") else options.format,
            fields=options.field_map(),
            max_line_bytes=options.max_line_bytes,
        )

    async def start(self, queue: BatchQueue) -> None:
        """Create, connect or bind the socket and start receiving into `queue`."""
        self._ctx = zmq.asyncio.Context()
        sock = self._ctx.socket(SOCKET_TYPES[self.options.socket_type])
        sock.setsockopt(zmq.RCVHWM, self.options.rcvhwm)
        sock.setsockopt(zmq.LINGER, 0)
        # Messages up to twice the limit still arrive, so the ones over it are counted here;
        # beyond that libzmq drops the connection before we see the message.
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.options.max_message_bytes)
        if self.options.socket_type == "sub":
            for topic in self.options.subscribe:
                sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        if self.options.connect:
            sock.connect(self.options.connect)
        else:
            sock.bind(self.options.listen)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(self._run(queue))
        log.info("source listening", source=self.id, type=self.type_name, address=self.endpoint)

    async def stop(self) -> None:
        """Stop receiving and close the socket and its context."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    async def _run(self, queue: BatchQueue) -> None:
        if self._sock is None:
            return
        sock = self._sock
        while True:
            frames = await sock.recv_multipart()
            batch = self.decode_message(frames, now())
            if batch.size:
                metrics.records_in.labels(component=self.id).inc(len(batch.records))
                await queue.put(batch)  # waits while full: no recv, ZeroMQ's HWM holds

    def decode_message(self, frames: list[bytes], received_at: float) -> Batch:
        """One multipart message → a batch (records, plus a data gap when one was detected)."""
        payload = frames[-1]
        events: list[DataGap] = []
        if len(frames) >= 2:
            header = _header(frames[-2])
            if header is not None:
                gap = self._check_sequence(header, received_at)
                if gap is not None:
                    events.append(gap)
        if sum(len(f) for f in frames) > self.options.max_message_bytes:
            count_drop(self.id, "message_too_large")
            log.warning("zmq message over max_message_bytes dropped", source=self.id, throttle=True)
            return Batch(source=self.id, records=[], events=events)
        if not payload.strip():
            count_drop(self.id, "empty_message")
            return Batch(source=self.id, records=[], events=events)
        records = self._decode_payload(payload, received_at)
        return Batch(source=self.id, records=records, events=events)

    def _check_sequence(self, header: dict[str, Any], at: float) -> DataGap | None:
        producer = str(header.get("producer", ""))
        epoch = str(header.get("epoch", ""))
        seq = header["seq"]
        state = self._producers.get(producer)
        if state is None or state.epoch != epoch:
            if state is not None:
                log.info("zmq producer restarted", source=self.id, producer=producer, epoch=epoch)
            self._producers[producer] = _Producer(epoch, seq + 1)
            return None
        expected = state.next_seq
        if seq < expected:
            count_drop(self.id, "out_of_order_message")
            return None
        state.next_seq = seq + 1
        if seq == expected:
            return None
        metrics.lost_messages.labels(component=self.id).inc(seq - expected)
        log.warning("zmq data gap", source=self.id, producer=producer, lost=seq - expected, throttle=True)
        return DataGap(source=self.id, producer=producer, epoch=epoch, expected_seq=expected, received_seq=seq, at=at)

    def _count_cut(self, raw: bytes) -> None:
        """A line over max_line_bytes is cut by the decoder: count it."""
        if len(raw) > self.options.max_line_bytes and len(raw.rstrip(b"\r\n")) > self.options.max_line_bytes:
            metrics.records_repaired.labels(component=self.id, reason="line_truncated").inc()

    def _decode_payload(self, payload: bytes, received_at: float) -> list[Record]:
        fmt = self.options.format
        if fmt == "msgpack" or (fmt == "auto" and payload[:1] and payload[0] in _MSGPACK_LEADS):
            return self._decode_msgpack(payload, received_at)
        records: list[Record] = []
        for raw in payload.split(b"\n"):
            if not raw.strip():
                continue
            self._count_cut(raw)
            result = self._lines.decode(raw, received_at)
            if isinstance(result, str):
                count_drop(self.id, result)
                if result in ("invalid_json", "non_object_json"):
                    metrics.decode_errors.labels(component=self.id).inc()
            else:
                records.append(result)
        return records

    def _decode_msgpack(self, payload: bytes, received_at: float) -> list[Record]:
        try:
            obj = msgpack.unpackb(payload, raw=True, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData):
            count_drop(self.id, "bad_frame")
            metrics.decode_errors.labels(component=self.id).inc()
            return []
        items = obj if isinstance(obj, list) else [obj]
        records: list[Record] = []
        for item in items:
            if isinstance(item, bytes | str):
                raw = item if isinstance(item, bytes) else item.encode("utf-8", "surrogateescape")
                self._count_cut(raw)
                result: Record | str = self._lines.decode(raw, received_at)
            elif isinstance(item, dict):
                result = record_from_map(item, self.options.field_map(), self.id, received_at, None)
                if not isinstance(result, str):
                    result, cut = cap_record(result, self.options.max_line_bytes)
                    if cut:
                        metrics.records_repaired.labels(component=self.id, reason="record_truncated").inc()
            else:
                result = "bad_item"
            if isinstance(result, str):
                count_drop(self.id, result)
            else:
                records.append(result)
        return records


def _header(frame: bytes) -> dict[str, Any] | None:
    """The sequence header if `frame` is one (a msgpack map with an integer `seq`)."""
    if not frame or frame[0] not in _MSGPACK_LEADS:
        return None
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData):
        return None
    if not isinstance(obj, dict):
        return None
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return None
    return obj
