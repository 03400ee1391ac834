"""The built-in sources and sinks, registered once: config `type` → options, factory, example.

The agent finds this registry through the `logdetect.components` entry point (pyproject.toml)
and never imports `plugins/`. Registering a type here is all it takes for `print-config` to
show it and for the contract suite (`tests/contract/`) to run it.
"""

from __future__ import annotations

from pathlib import Path

from agent.components import Registry, SinkType, SourceType
from plugins.file_sink import FileSink, FileSinkOptions
from plugins.file_source import FileSource, FileSourceOptions
from plugins.forward_sink import ForwardSink, ForwardSinkOptions
from plugins.forward_source import ForwardSource, ForwardSourceOptions
from plugins.nats_sink import NatsSink, NatsSinkOptions
from plugins.nats_source import NatsSource, NatsSourceOptions
from plugins.socket_source import SocketSource, SocketSourceOptions
from plugins.stdin_source import StdinSource, StdinSourceOptions
from plugins.stdout_sink import StdoutSink, StdoutSinkOptions
from plugins.zmq_sink import ZmqSink, ZmqSinkOptions
from plugins.zmq_source import ZmqSource, ZmqSourceOptions

SOURCES: dict[str, SourceType] = {
    "forward": SourceType(
        options=ForwardSourceOptions,
        build=lambda i, o, s: ForwardSource(i, o),
        summary="Fluentd Forward protocol server (Fluent Bit / Fluentd `forward` output), TCP or Unix "
        "socket; acks are sent after the records are processed",
        example_id="fluentbit",
        enabled=True,
        contract_options=lambda tmp: ForwardSourceOptions(listen="tcp:127.0.0.1:0"),
    ),
    "zmq": SourceType(
        options=ZmqSourceOptions,
        build=lambda i, o, s: ZmqSource(i, o),
        summary="ZeroMQ PULL or SUB socket: plain lines, JSON lines or msgpack; an optional sequence "
        "header makes lost messages visible (data-gap events)",
        example_id="zmq_in",
        contract_options=lambda tmp: ZmqSourceOptions(listen="tcp://127.0.0.1:0"),
    ),
    "stdin": SourceType(
        options=StdinSourceOptions,
        build=lambda i, o, s: StdinSource(i, o),
        summary="plain or JSON lines on standard input (Fluent Bit stdout json_lines, Vector console "
        "json); the agent exits after stdin ends when stdin is its only source",
        example_id="pipe",
        singleton=True,
        contract_options=lambda tmp: StdinSourceOptions(),
    ),
    "file": SourceType(
        options=FileSourceOptions,
        build=lambda i, o, s: FileSource(i, o, s),
        summary="follow a file like `tail -F`; the offset is saved in state_dir and resumed after a restart",
        example_id="applog",
        example={"path": "/var/log/app/current.log"},
        contract_options=lambda tmp: FileSourceOptions(
            path=str(tmp / "input.log"), read_from="beginning", poll_interval_secs=0.05
        ),
    ),
    "socket": SourceType(
        options=SocketSourceOptions,
        build=lambda i, o, s: SocketSource(i, o),
        summary="newline-delimited JSON or plain lines over TCP or a Unix socket (Vector `socket` sink, "
        "Fluent Bit `tcp`)",
        example_id="vector",
        contract_options=lambda tmp: SocketSourceOptions(listen="tcp:127.0.0.1:0"),
    ),
    "nats": SourceType(
        options=NatsSourceOptions,
        build=lambda i, o, s: NatsSource(i, o, s),
        summary="NATS JetStream durable pull consumer shared by many agents (work queue: each message to "
        "one agent); a message is acked after its records are processed (needs logdetect[fleet])",
        example_id="fleet_stream",
        contract_options=lambda tmp: NatsSourceOptions(servers=["nats://127.0.0.1:0"], connect_timeout_secs=2.0),
    ),
}

SINKS: dict[str, SinkType] = {
    "stdout": SinkType(
        options=StdoutSinkOptions,
        build=lambda i, o: StdoutSink(i, o),
        summary="event JSON lines on stdout",
        example_id="console",
        enabled=True,
        contract_options=lambda tmp: StdoutSinkOptions(),
    ),
    "file": SinkType(
        options=FileSinkOptions,
        build=lambda i, o: FileSink(i, o),
        summary="event JSON lines in a size-rotated file",
        example_id="events",
        example={"path": "/var/log/logdetect/events.jsonl"},
        contract_options=lambda tmp: FileSinkOptions(path=str(tmp / "events.jsonl")),
    ),
    "zmq": SinkType(
        options=ZmqSinkOptions,
        build=lambda i, o: ZmqSink(i, o),
        summary="ZeroMQ PUSH or PUB socket, with the sequence header a `zmq` source checks for gaps",
        example_id="bus",
        example={"connect": "tcp://127.0.0.1:5557"},
        contract_options=lambda tmp: ZmqSinkOptions(connect=f"ipc://{Path(tmp) / 'events.zmq'}",
                                                     send_timeout_ms=200, linger_ms=0),
    ),
    "forward": SinkType(
        options=ForwardSinkOptions,
        build=lambda i, o: ForwardSink(i, o),
        summary="Fluent Bit / Fluentd forward input, with acks and retries",
        example_id="fluentd",
        example={"address": "tcp:127.0.0.1:24225"},
        contract_options=lambda tmp: ForwardSinkOptions(
            address=f"unix:{tmp / 'forward.sock'}", max_retries=0, ack_timeout_secs=2.0,
            connect_timeout_secs=1.0,
        ),
    ),
    "nats": SinkType(
        options=NatsSinkOptions,
        build=lambda i, o: NatsSink(i, o),
        summary="NATS subject, through JetStream by default (a batch counts as written once the stream "
        "acked it); what `logdetect fleet` reads (needs logdetect[fleet])",
        example_id="fleet_events",
        contract_options=lambda tmp: NatsSinkOptions(servers=["nats://127.0.0.1:0"], connect_timeout_secs=2.0,
                                                     publish_timeout_secs=2.0),
    ),
}

REGISTRY = Registry(sources=SOURCES, sinks=SINKS)
