"""The contract suite's harness: how to put input into each source type and read what each sink
type wrote, with real clients (sockets, pipes, files), plus one sample of every event kind.

The checks themselves (test_components.py) run over the installed component registry. A source
type needs a `Feeder` and a sink type a `Reader` here to be driven; the suite fails for a
registered type that has none, so a new component cannot go untested.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
import zmq
from nats_server import SyncClient, free_port, shared_server, unique_name

from agent import events
from agent.components import Source
from agent.types import (
    Anomaly,
    DataGap,
    DetectorScore,
    Event,
    Explanation,
    ExplanationKind,
    Incident,
    IncidentSeverity,
    IncidentState,
    Level,
    LineResult,
    ParsedLine,
    SessionVerdict,
    TemplatedLine,
    Verdict,
)

STEP_SECS = 10.0
FULL_DISK = "/dev/full"  # the bound on every single step (start, stop, a delivery)

# --- input: what every source is fed -----------------------------------------------------------


def good(n: int, prefix: str = "contract line") -> list[dict[str, Any]]:
    """Structured records every source's default field map reads (`log` is a message field of all)."""
    return [{"log": f"{prefix} {i}", "level": "info"} for i in range(n)]


BAD = {"other": "no message field here"}  # dropped by every source as `missing_message_field`
BAD_REASON = "missing_message_field"


class Feeder:
    """Puts records into one started source with the real client of its protocol.
    `send` is one unit of the transport (one request, one message, one write)."""

    def __init__(self, source: Source, tmp: Path) -> None:
        self.source = source
        self.tmp = tmp

    def send(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the client (end of input where the transport has one)."""


def _json_lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


class ForwardFeeder(Feeder):
    """Fluentd Forward mode over TCP, as Fluent Bit's `forward` output sends it (no ack asked)."""

    def __init__(self, source: Source, tmp: Path) -> None:
        super().__init__(source, tmp)
        port = source.address.port  # type: ignore[attr-defined]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP_SECS)

    def send(self, records: list[dict[str, Any]]) -> None:
        now = int(time.time())
        self.sock.sendall(msgpack.packb(["contract", [[now, r] for r in records]]))

    def close(self) -> None:
        self.sock.close()


class ZmqFeeder(Feeder):
    """A PUSH producer with the sequence header; one sequence number is skipped after the first
    message, so the source reports one data gap."""

    def __init__(self, source: Source, tmp: Path) -> None:
        super().__init__(source, tmp)
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.connect(source.endpoint)  # type: ignore[attr-defined]
        self.seq = 0

    def send(self, records: list[dict[str, Any]]) -> None:
        header = msgpack.packb({"producer": "contract", "epoch": 1, "seq": self.seq})
        self.sock.send_multipart([header, msgpack.packb(records)])
        self.seq += 2 if self.seq == 0 else 1

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


class StdinFeeder(Feeder):
    """JSON lines into the pipe that is standard input (see the `stdin_pipe` fixture)."""

    write_fd: int = -1

    def send(self, records: list[dict[str, Any]]) -> None:
        os.write(self.write_fd, _json_lines(records))

    def close(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            StdinFeeder.write_fd = -1


class FileFeeder(Feeder):
    """Appends JSON lines to the file the source follows."""

    def send(self, records: list[dict[str, Any]]) -> None:
        with open(self.source.options.path, "ab") as fh:  # type: ignore[attr-defined]
            fh.write(_json_lines(records))


class SocketFeeder(Feeder):
    """Newline-delimited JSON over TCP, as Vector's `socket` sink sends it."""

    def __init__(self, source: Source, tmp: Path) -> None:
        super().__init__(source, tmp)
        port = source.address.port  # type: ignore[attr-defined]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP_SECS)

    def send(self, records: list[dict[str, Any]]) -> None:
        self.sock.sendall(_json_lines(records))

    def close(self) -> None:
        self.sock.close()


class NatsFeeder(Feeder):
    """One JetStream publish per unit, in the JSON Fluent Bit's `nats` output sends per flush:
    `[[time, {record}], …]`."""

    def __init__(self, source: Source, tmp: Path) -> None:
        super().__init__(source, tmp)
        self.client = SyncClient(source.options.servers[0])  # type: ignore[attr-defined]

    def send(self, records: list[dict[str, Any]]) -> None:
        self.client.publish(self.source.options.subject, orjson.dumps([[time.time(), r] for r in records]))  # type: ignore[attr-defined]

    def close(self) -> None:
        self.client.close()


FEEDERS: dict[str, type[Feeder]] = {
    "forward": ForwardFeeder,
    "nats": NatsFeeder,
    "zmq": ZmqFeeder,
    "stdin": StdinFeeder,
    "file": FileFeeder,
    "socket": SocketFeeder,
}


# --- output: what every sink wrote --------------------------------------------------------------


class Reader:
    """Receives what one sink type writes, with the real peer of its protocol.
    `peer()` starts the peer before the sink opens; `lines()` is what arrived (event JSON lines);
    `broken()` gives the options of a sink whose output fails (no peer, a closed stream, a full
    disk)."""

    def __init__(self, options: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.options = options
        self.monkeypatch = monkeypatch

    def peer(self) -> None:
        """Start the receiving end (network sinks)."""

    def lines(self, expected: int) -> list[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the receiving end."""

    def broken(self) -> Any:
        """Options (and surroundings) under which the sink's output fails: by default the contract
        options as they are, with no peer listening."""
        return self.options


class StdoutReader(Reader):
    def peer(self) -> None:
        self.written = io.BytesIO()  # what the sink writes to sys.stdout.buffer
        self.monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(self.written))

    def lines(self, expected: int) -> list[bytes]:
        return self.written.getvalue().splitlines()

    def broken(self) -> Any:
        stream = io.TextIOWrapper(io.BytesIO())
        stream.close()
        self.monkeypatch.setattr(sys, "stdout", stream)
        return self.options


class FileReader(Reader):
    def lines(self, expected: int) -> list[bytes]:
        return Path(self.options.path).read_bytes().splitlines()

    def broken(self) -> Any:
        return dataclasses.replace(self.options, path=FULL_DISK)  # every write or flush fails: ENOSPC


class ZmqReader(Reader):
    """A PULL socket bound where the sink connects."""

    def peer(self) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.options.connect)

    def lines(self, expected: int) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + STEP_SECS
        while len(out) < expected and time.monotonic() < deadline:
            if self.sock.poll(100):
                frames = self.sock.recv_multipart()
                out += frames[-1].split(b"\n")
        return out

    def close(self) -> None:
        if hasattr(self, "sock"):
            self.sock.close()
            self.ctx.term()


class ForwardReader(Reader):
    """A minimal Fluentd `forward` input on the sink's Unix socket: collects each entry's record
    and acks every chunk, as Fluent Bit does with `require_ack_response`."""

    def peer(self) -> None:
        path = self.options.address.removeprefix("unix:")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.server.settimeout(0.2)
        self.records: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.2)
                unpacker = msgpack.Unpacker(raw=False)
                while not self.stopping.is_set():
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    unpacker.feed(data)
                    for _tag, entries, option in unpacker:
                        self.records += [record for _t, record in entries]
                        if "chunk" in option:
                            conn.sendall(msgpack.packb({"ack": option["chunk"]}))

    def lines(self, expected: int) -> list[bytes]:
        deadline = time.monotonic() + STEP_SECS
        while len(self.records) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        return [orjson.dumps(r) for r in self.records]

    def close(self) -> None:
        if hasattr(self, "thread"):
            self.stopping.set()
            self.thread.join(STEP_SECS)
            self.server.close()


class NatsReader(Reader):
    """Reads the stream the sink publishes into, with nats-py (an ordered consumer)."""

    def peer(self) -> None:
        self.client = SyncClient(self.options.servers[0])

    def lines(self, expected: int) -> list[bytes]:
        return self.client.read_all(self.options.subject, expected, STEP_SECS)

    def close(self) -> None:
        if hasattr(self, "client"):
            self.client.close()

    def broken(self) -> Any:
        return dataclasses.replace(self.options, servers=[f"nats://127.0.0.1:{free_port()}"], connect_timeout_secs=1.0)


READERS: dict[str, type[Reader]] = {
    "nats": NatsReader,
    "stdout": StdoutReader,
    "file": FileReader,
    "zmq": ZmqReader,
    "forward": ForwardReader,
}


# --- services: a component whose peer is a server the test session runs --------------------------


def prepared(kind: str, name: str, options: Any) -> Any:
    """The contract options of a type, pointed at the servers this session runs: a `nats`
    component's contract options name `nats://127.0.0.1:0` (no server); here they get the
    session's nats-server and a stream and subject of their own."""
    if name != "nats":
        return options
    server = shared_server()
    stream = unique_name("C")
    subject = f"{stream}.logs" if kind == "sources" else f"{stream}.events"
    extra = {"durable": stream, "fetch_timeout_secs": 0.2} if kind == "sources" else {}
    return dataclasses.replace(options, servers=[server.url], stream=stream, subject=subject, **extra)


# --- events --------------------------------------------------------------------------------------


def sample_events() -> list[Event]:
    """One event of every kind a sink is handed: line, anomaly, incident, session, data gap."""
    t = 1_795_428_000.0
    parsed = ParsedLine("2026-11-23 10:00:00 ERROR db: connection refused", "db: connection refused", t,
                        Level.ERROR, "db-1", source="contract", line_no=7, component="db")
    line = TemplatedLine(parsed, 42, "db: connection <*>", ("refused",), 0, True, t)
    scores = (DetectorScore("novelty", 1.0, 0.5, True), DetectorScore("deeplog", 3.0, 2.0, True))
    why = (Explanation(ExplanationKind.NEW_TEMPLATE, "never seen in training", (("count", 0),)),)
    anomaly = Anomaly(line, 2.5, Verdict.DANGER, scores, why, "inc-1")
    incident = Incident("inc-1", IncidentState.OPEN, IncidentSeverity.HIGH, "db: connection refused", t, t,
                        1, 1, ("db-1",), ((42, "db: connection <*>", 1),), parsed.raw,
                        (parsed.raw,), (ExplanationKind.NEW_TEMPLATE,))
    return [
        LineResult(line, scores, 2.5, Verdict.DANGER),
        anomaly,
        incident,
        SessionVerdict("db-1", (0, 3, 4), scores, 2.5, Verdict.WATCH, t),
        DataGap("bus", "p1", "1", 3, 5, t),
    ]


def sample_lines() -> list[bytes]:
    """One encoded event of every kind the pipeline emits, for the sink checks."""
    return events.encode_all(sample_events(), time.time(), "CPUExecutionProvider")


def run(coro: Any, timeout: float = 60.0) -> Any:
    """Run one async scenario, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
