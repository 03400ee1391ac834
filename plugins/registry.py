"""The one registry of source and sink types: config `type` → options class and factory.

The options class is a frozen dataclass whose fields are exactly the keys the config accepts
for that type (unknown keys are rejected against it) and whose `problems()` lists semantic
errors; the factory builds the component from its id, options and the agent's state dir.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugins.base import Sink, Source
from plugins.file_sink import FileSink, FileSinkOptions
from plugins.file_source import FileSource, FileSourceOptions
from plugins.forward_sink import ForwardSink, ForwardSinkOptions
from plugins.forward_source import ForwardSource, ForwardSourceOptions
from plugins.socket_source import SocketSource, SocketSourceOptions
from plugins.stdin_source import StdinSource, StdinSourceOptions
from plugins.stdout_sink import StdoutSink, StdoutSinkOptions
from plugins.zmq_sink import ZmqSink, ZmqSinkOptions
from plugins.zmq_source import ZmqSource, ZmqSourceOptions


@dataclass(frozen=True)
class SourceType:
    options: type[Any]
    build: Callable[[str, Any, Path | None], Source]
    summary: str


@dataclass(frozen=True)
class SinkType:
    options: type[Any]
    build: Callable[[str, Any], Sink]
    summary: str


SOURCES: dict[str, SourceType] = {
    "forward": SourceType(
        ForwardSourceOptions,
        lambda i, o, s: ForwardSource(i, o),
        "Fluentd Forward protocol server (Fluent Bit / Fluentd `forward` output), TCP or Unix socket",
    ),
    "zmq": SourceType(
        ZmqSourceOptions, lambda i, o, s: ZmqSource(i, o), "ZeroMQ PULL or SUB socket (lines, JSON, msgpack)"
    ),
    "stdin": SourceType(
        StdinSourceOptions, lambda i, o, s: StdinSource(i, o), "plain or JSON lines on standard input"
    ),
    "file": SourceType(
        FileSourceOptions, lambda i, o, s: FileSource(i, o, s), "follow a file like tail -F, resumable"
    ),
    "socket": SourceType(
        SocketSourceOptions,
        lambda i, o, s: SocketSource(i, o),
        "newline-delimited JSON/plain lines over TCP or a Unix socket (Vector `socket` sink)",
    ),
}

SINKS: dict[str, SinkType] = {
    "stdout": SinkType(StdoutSinkOptions, lambda i, o: StdoutSink(i, o), "event JSON lines on stdout"),
    "file": SinkType(FileSinkOptions, lambda i, o: FileSink(i, o), "event JSON lines in a size-rotated file"),
    "zmq": SinkType(ZmqSinkOptions, lambda i, o: ZmqSink(i, o), "ZeroMQ PUSH or PUB socket"),
    "forward": SinkType(
        ForwardSinkOptions, lambda i, o: ForwardSink(i, o), "Fluent Bit / Fluentd forward input, with acks"
    ),
}
