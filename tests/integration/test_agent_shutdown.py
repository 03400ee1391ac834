"""The daemon's runtime around the pipeline: a stop request drains queued input, writes its
events, and still acks every drained Forward chunk before the sockets close; a full queue holds
clients back without dropping anything.

The pipeline here is a stand-in that echoes one event per record and takes a fixed time per
batch (the real pipeline is exercised in test_agent_daemon.py); what is under test is the daemon.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import msgpack

from agent.config import parse_config
from agent.daemon import Daemon
from agent.dead_letter import Rejected
from agent.types import Level, LineResult, Output, ParsedLine, Record, SessionVerdict, TemplatedLine, Verdict


def echoed(record: Record, now: float) -> LineResult:
    """The record as an unscored line result (rendered as a `logdetect.line` event)."""
    parsed = ParsedLine(record.line, record.line, None, Level.UNKNOWN, record.source, record.source)
    return LineResult(TemplatedLine(parsed, 0, record.line, (), 0, False, now), (), 0.0, Verdict.NORMAL)


class SlowEcho:
    provider = "none"

    def __init__(self, secs_per_batch: float) -> None:
        self.secs = secs_per_batch
        self.closed = False

    def process(self, records: Sequence[Record], now: float) -> list[Output]:
        time.sleep(self.secs)
        return [echoed(r, now) for r in records]

    def tick(self, now: float) -> list[Output]:
        return []

    def close(self, now: float) -> list[Output]:
        self.closed = True
        return [SessionVerdict("closed", (), (), 0.0, Verdict.WATCH, now)]

    def pending_records(self) -> int:
        return 0

    def flush_pending(self, now: float) -> list[Output]:
        return []

    def take_rejected(self) -> list[Rejected]:
        return []

    def held_by_source(self) -> dict[str, int]:
        return {}


def make_daemon(tmp_path: Path, pipeline: SlowEcho, queue_records: int = 10_000) -> Daemon:
    """A daemon with a Forward source on port 0 and a file sink around the given pipeline."""
    text = f"""
model = "{tmp_path / "unused-model"}"
[agent]
metrics_listen = ""
queue_records = {queue_records}
batch_records = 10
shutdown_budget_secs = 5.0
[sources.fw]
type = "forward"
listen = "tcp:127.0.0.1:0"
[sinks.events]
type = "file"
path = "{tmp_path / "events.jsonl"}"
"""
    config, problems = parse_config(text, tmp_path / "agent.toml")
    assert config is not None, problems
    return Daemon(config, pipeline_factory=lambda _config: pipeline)


def request(lines: list[str], chunk: str) -> bytes:
    """A Forward request of these lines asking for an ack of `chunk`."""
    return msgpack.packb(["t", [[int(time.time()), {"log": line}] for line in lines], {"chunk": chunk}])


def read_acks(sock: socket.socket, n: int, timeout: float) -> list[bytes]:
    """Up to `n` acks from the socket within `timeout` seconds."""
    sock.settimeout(timeout)
    unpacker = msgpack.Unpacker(raw=True)
    acks: list[bytes] = []
    try:
        while len(acks) < n:
            data = sock.recv(4096)
            if not data:
                break
            unpacker.feed(data)
            acks += [obj[b"ack"] for obj in unpacker]
    except TimeoutError:
        pass
    return acks


async def started(daemon: Daemon) -> int:
    """Wait until the daemon's Forward source listens; return its port."""
    while not daemon.sources or getattr(daemon.sources[0], "_server", None) is None:
        await asyncio.sleep(0.01)
    return int(daemon.sources[0].address.port)  # type: ignore[attr-defined]


def test_stop_drains_the_queue_and_acks_what_it_drained(tmp_path: Path) -> None:
    """On stop the daemon processes what is queued, acks it, and closes the pipeline."""
    pipeline = SlowEcho(0.3)
    daemon = make_daemon(tmp_path, pipeline)

    async def scenario() -> list[bytes]:
        runner = asyncio.get_running_loop().create_task(daemon.run())
        port = await started(daemon)
        sock = socket.create_connection(("127.0.0.1", port))
        for i in range(4):
            sock.sendall(request([f"c{i}-{j}" for j in range(10)], f"chunk-{i}"))
        while daemon.counts.batches == 0:  # the first batch is in the pipeline, the rest queued
            await asyncio.sleep(0.01)
        daemon.request_stop()
        acks = await asyncio.to_thread(read_acks, sock, 4, 5.0)
        assert await asyncio.wait_for(runner, 10) == 0
        sock.close()
        return acks

    acks = asyncio.run(scenario())
    assert sorted(acks) == [f"chunk-{i}".encode() for i in range(4)]
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    bodies = [e["body"] for e in events if e["event_name"] == "logdetect.line"]
    assert sorted(bodies) == sorted(f"c{i}-{j}" for i in range(4) for j in range(10))
    assert events[-1]["attributes"]["entity"] == "closed" and pipeline.closed


def test_full_queue_holds_clients_back_without_loss(tmp_path: Path) -> None:
    """Queue of 20 records, a slow pipeline, 3 clients of 10 chunks each: every chunk is acked
    and processed once, and the queue never held more than its bound (plus one batch)."""
    pipeline = SlowEcho(0.02)
    daemon = make_daemon(tmp_path, pipeline, queue_records=20)

    async def scenario() -> int:
        runner = asyncio.get_running_loop().create_task(daemon.run())
        port = await started(daemon)
        peak = 0

        def client(n: int) -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                for i in range(10):
                    sock.sendall(request([f"k{n}-{i}-{j}" for j in range(10)], f"k{n}-{i}"))
                return read_acks(sock, 10, 15.0)

        clients = [asyncio.create_task(asyncio.to_thread(client, n)) for n in range(3)]
        while not all(c.done() for c in clients):
            assert daemon.queue is not None
            peak = max(peak, daemon.queue.records)
            await asyncio.sleep(0.005)
        results = [c.result() for c in clients]
        daemon.request_stop()
        await asyncio.wait_for(runner, 10)
        assert [sorted(r) for r in results] == [sorted(f"k{n}-{i}".encode() for i in range(10)) for n in range(3)]
        return peak

    peak = asyncio.run(scenario())
    assert peak <= 30
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    bodies = [e["body"] for e in events if e["event_name"] == "logdetect.line"]
    assert len(bodies) == 300 and len(set(bodies)) == 300
