"""`zmq` sink: events as ZeroMQ messages on a PUSH (default) or PUB socket.

Each message is `[topic, header, payload]` with the same loss-aware header the `zmq` source
reads (`{"producer", "epoch", "seq"}`) and a payload of newline-joined event lines, so one agent
can feed another and gaps are visible. PUSH waits up to `send_timeout_ms` when no peer takes
messages (ZMQ_IMMEDIATE keeps messages off connections that are not up), then counts the batch
as dropped; PUB never blocks and drops silently inside ZeroMQ at its HWM (the subscriber sees
the sequence gap).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import zmq

from agent import metrics
from agent.components import Sink, count_drop, option
from plugins.addresses import zmq_endpoint_problem

SINK_SOCKET_TYPES = {"push": zmq.PUSH, "pub": zmq.PUB}


@dataclass(frozen=True)
class ZmqSinkOptions:
    """Options of `[sinks.<id>] type = "zmq"`. Exactly one of `listen` (bind) or `connect`."""

    connect: str = option("", "connect here (a ZeroMQ endpoint) ...")
    listen: str = option("", "... or bind here; set exactly one")
    socket_type: str = option("push", "push | pub")
    topic: str = option("logdetect.events", "PUB topic frame")
    producer: str = option("", "producer id in the sequence header (default: logdetect-<pid>)")
    sndhwm: int = option(1000, "ZeroMQ send high-water mark (messages)")
    send_timeout_ms: int = option(1000, "PUSH waits this long for a peer before the batch is dropped (counted)")
    linger_ms: int = option(1000, "at close, wait this long for queued messages to go out")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out: list[str] = []
        if bool(self.connect) == bool(self.listen):
            out.append("set exactly one of connect or listen (a ZeroMQ endpoint)")
        elif (problem := zmq_endpoint_problem(self.connect or self.listen)) is not None:
            out.append(problem)
        if self.socket_type not in SINK_SOCKET_TYPES:
            out.append(f"socket_type = {self.socket_type!r}: use one of {', '.join(SINK_SOCKET_TYPES)}")
        return out


class ZmqSink(Sink):
    """Sends events on a ZeroMQ PUSH or PUB socket, each batch with a producer/epoch/seq header."""

    type_name = "zmq"

    def __init__(self, sink_id: str, options: ZmqSinkOptions) -> None:
        super().__init__(sink_id)
        self.options = options
        self.producer = options.producer or f"logdetect-{os.getpid()}"
        self.epoch = int(time.time() * 1000)
        self.seq = 0
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sock: zmq.Socket[bytes] | None = None
        self.endpoint = options.connect or options.listen

    def open(self) -> None:
        """Create the socket with its limits and connect or bind it."""
        self._ctx = zmq.Context()
        sock = self._ctx.socket(SINK_SOCKET_TYPES[self.options.socket_type])
        sock.setsockopt(zmq.SNDHWM, self.options.sndhwm)
        sock.setsockopt(zmq.LINGER, self.options.linger_ms)
        sock.setsockopt(zmq.SNDTIMEO, self.options.send_timeout_ms)
        if self.options.socket_type == "push":
            sock.setsockopt(zmq.IMMEDIATE, 1)
        if self.options.listen:
            sock.bind(self.options.listen)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        else:
            sock.connect(self.options.connect)
        self._sock = sock

    def write(self, events: Sequence[bytes]) -> None:
        """Send the events as one message; a peer not ready or a failed send drops and counts them."""
        if not events:
            return
        if self._sock is None:
            self.open()
        if self._sock is None:
            return
        header = msgpack.packb({"producer": self.producer, "epoch": self.epoch, "seq": self.seq})
        try:
            self._sock.send_multipart([self.options.topic.encode(), header, b"\n".join(events)])
        except zmq.Again:
            count_drop(self.id, "peer_not_ready", len(events))
            return
        except zmq.ZMQError:
            count_drop(self.id, "send_failed", len(events))
            return
        finally:
            self.seq += 1
        metrics.records_out.labels(component=self.id).inc(len(events))

    def close(self) -> None:
        """Close the socket and its context."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
