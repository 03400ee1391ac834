"""The `zmq` source with real pyzmq producers: payload formats, the loss-aware header (gaps counted
and reported as data-gap events, restarts not), garbage frames, SUB mode, and the ZeroMQ sink
feeding the source (one agent into another)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import jsonschema
import msgpack
import orjson
import zmq

from agent import events, metrics
from agent.components import BatchQueue
from agent.types import Batch
from plugins.zmq_sink import ZmqSink, ZmqSinkOptions
from plugins.zmq_source import ZmqSource, ZmqSourceOptions


def counter(name: str, labels: dict[str, str]) -> float:
    """A metric sample's value (0 when never set)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def collect(queue: BatchQueue, until: int, timeout: float = 10.0) -> list[Batch]:
    """Batches until `until` records (+events) arrived; finishes them as the pipeline would."""
    out: list[Batch] = []
    deadline = time.monotonic() + timeout
    while sum(b.size for b in out) < until:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {sum(b.size for b in out)} of {until} arrived")
        for batch in await queue.get_many(10_000, 0.05):
            batch.finish(True)
            out.append(batch)
    return out


def producer(endpoint: str, kind: int = zmq.PUSH) -> tuple[zmq.Context[Any], zmq.Socket[Any]]:
    """A ZeroMQ socket connected to the endpoint, with its context."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(endpoint)
    return ctx, sock


def header(seq: int, epoch: int = 1, producer_id: str = "p1") -> bytes:
    """The msgpack sequence header a logdetect ZeroMQ sink puts before its payload."""
    return msgpack.packb({"producer": producer_id, "epoch": epoch, "seq": seq})


def test_pull_formats_header_gaps_and_garbage() -> None:
    """Plain lines, JSON lines and msgpack payloads; a seq jump counts lost messages and yields
    one data-gap event; a new epoch is a restart, not a loss; garbage frames are counted."""

    async def scenario() -> None:
        sid = f"zmq-{uuid.uuid4().hex[:6]}"
        source = ZmqSource(sid, ZmqSourceOptions(listen="tcp://127.0.0.1:*"))
        queue = BatchQueue(10_000)
        await source.start(queue)
        ctx, push = producer(source.endpoint)
        try:
            push.send_multipart([b"logs.v1", header(0), b"plain one\nplain two\n"])
            push.send_multipart(
                [b"logs.v1", header(1), b'{"log": "json line", "level": "ERROR"}\n{"message": "m"}']
            )
            push.send_multipart([header(2), msgpack.packb(["mp one", {"log": "mp two", "pod": "w-1"}])])
            push.send_multipart([header(5), b"after a gap"])  # 3 and 4 never sent
            push.send_multipart([header(0, epoch=2), b"after restart"])  # new epoch: no gap
            push.send(b"\x92\xc1\xc1")  # garbage msgpack
            push.send(b'{"broken json\n')
            push.send_multipart([b"topic", b"\xff\xfe not utf-8"])
            batches = await collect(queue, until=10)
        finally:
            push.close()
            ctx.term()
            await source.stop()
        lines = [r.line for b in batches for r in b.records]
        assert lines == [
            "plain one",
            "plain two",
            "json line",
            "m",
            "mp one",
            "mp two",
            "after a gap",
            "after restart",
            '{"broken json',  # auto format: not JSON after all, kept as a plain line
            "\ufffd\ufffd not utf-8",
        ]
        records = [r for b in batches for r in b.records]
        assert records[2].field("level") == "ERROR"
        assert records[5].field("pod") == "w-1"
        gaps = [e for b in batches for e in b.events]
        assert len(gaps) == 1
        assert (gaps[0].expected_seq, gaps[0].received_seq, gaps[0].lost) == (3, 5, 2)
        # Rendered where every event is (agent/events.py), the data gap obeys `logdetect schema`.
        gap = events.render(gaps[0], time.time(), "none")
        jsonschema.Draft202012Validator(events.json_schema()).validate(gap)
        assert gap["event_name"] == "logdetect.data_gap"
        assert gap["attributes"]["gap.lost_messages"] == 2
        assert gap["attributes"]["gap.expected_seq"] == 3
        assert gap["resource"] == {"log.source": sid}
        assert counter("logdetect_input_lost_messages_total", {"component": sid}) == 2
        assert counter("logdetect_records_dropped_total", {"component": sid, "reason": "bad_frame"}) == 1

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_every_drop_and_cut_is_counted() -> None:
    """Issue 14, defect 6: a message over max_message_bytes, an empty message, an over-long
    line and an over-long msgpack record each leave a count behind."""

    async def scenario() -> None:
        sid = f"zmq-{uuid.uuid4().hex[:6]}"
        options = ZmqSourceOptions(listen="tcp://127.0.0.1:*", max_message_bytes=4096, max_line_bytes=100)
        source = ZmqSource(sid, options)
        queue = BatchQueue(10_000)
        await source.start(queue)
        ctx, push = producer(source.endpoint)
        try:
            push.send(b"x" * 5000)  # over max_message_bytes (under libzmq's 2x limit)
            push.send(b"")
            push.send(b"  \n")
            push.send(b"long " * 100)
            push.send(msgpack.packb([{"log": "m" * 300, "pod": "p" * 300}]))
            push.send(b"last")
            batches = await collect(queue, until=3)
        finally:
            push.close()
            ctx.term()
            await source.stop()
        records = [r for b in batches for r in b.records]
        assert [len(r.line) for r in records] == [100, 100, 4]
        assert all(len(v) <= 100 for r in records for _, v in r.fields)
        dropped = "logdetect_records_dropped_total"
        repaired = "logdetect_records_repaired_total"
        assert counter(dropped, {"component": sid, "reason": "message_too_large"}) == 1
        assert counter(dropped, {"component": sid, "reason": "empty_message"}) == 2
        assert counter(repaired, {"component": sid, "reason": "line_truncated"}) == 1
        assert counter(repaired, {"component": sid, "reason": "record_truncated"}) == 1

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_full_queue_stops_receiving_and_nothing_is_lost() -> None:
    """With the queue full the source stops calling recv: messages wait in ZeroMQ (PUSH blocks at
    its HWM), and once the consumer runs every message arrives, none dropped."""

    async def scenario() -> None:
        source = ZmqSource("zmq-bp", ZmqSourceOptions(listen="tcp://127.0.0.1:*", rcvhwm=10))
        queue = BatchQueue(5)
        await source.start(queue)
        ctx: zmq.Context[Any] = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 10)  # before connect: HWMs apply to later connections only
        push.setsockopt(zmq.SNDTIMEO, 200)
        push.connect(source.endpoint)
        padding = "x" * 10_000  # big messages so the OS socket buffers fill quickly

        def send_until_blocked() -> int:
            for i in range(3000):
                try:
                    push.send(f"line {i} {padding}".encode())
                except zmq.Again:
                    return i  # the sender is held back: backpressure reached the producer
            return 3000

        try:
            sent = await asyncio.to_thread(send_until_blocked)
            await asyncio.sleep(0.3)
            assert queue.records <= 5
            assert sent < 3000
            batches = await collect(queue, until=sent)
            assert [r.line for b in batches for r in b.records] == [
                f"line {i} {padding}" for i in range(sent)
            ]
        finally:
            push.close(linger=0)
            ctx.term()
            await source.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_sub_source_and_zmq_sink_between_two_agents() -> None:
    """The ZeroMQ sink (PUB, binding) feeds a SUB source (connecting): header and payload
    round-trip, and the sink's sequence numbers run without gaps."""

    async def scenario() -> None:
        sink = ZmqSink("bus", ZmqSinkOptions(listen="tcp://127.0.0.1:*", socket_type="pub"))
        sink.open()
        source = ZmqSource(
            "zmq-sub",
            ZmqSourceOptions(
                connect=sink.endpoint, socket_type="sub", subscribe=["logdetect."], format="plain"
            ),
        )
        queue = BatchQueue(1000)
        await source.start(queue)
        try:
            events = [orjson.dumps({"event_name": "logdetect.anomaly", "body": f"e{i}"}) for i in range(5)]
            # PUB drops until the subscription has propagated (slow joiner): resend until seen.
            deadline = time.monotonic() + 5
            got: list[Batch] = []
            while not got and time.monotonic() < deadline:
                await asyncio.to_thread(sink.write, events[:1])
                got = await queue.get_many(100, 0.1)
            assert got, "subscription never became active"
            for batch in got:
                batch.finish(True)
            await asyncio.to_thread(sink.write, events[1:])
            await asyncio.to_thread(sink.write, events[2:])
            rest = await collect(queue, until=4 + 3)
            lines = [orjson.loads(r.line)["body"] for b in rest for r in b.records]
            assert lines == ["e1", "e2", "e3", "e4", "e2", "e3", "e4"]
            assert all(not b.events for b in rest)  # consecutive sequence numbers: no gap
        finally:
            await source.stop()
            sink.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
