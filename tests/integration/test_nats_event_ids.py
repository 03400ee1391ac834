"""The `nats` sink on a real nats-server: an event published again with the same id (what a
second agent does after a redelivery) is dropped by the stream; events without an id are not."""

from __future__ import annotations

import orjson
from nats_server import SyncClient, shared_server, unique_name

from agent import metrics
from plugins.nats_sink import NatsSink, NatsSinkOptions


def dropped(sink_id: str) -> float:
    """The sink's `duplicate_event` drops so far."""
    return float(metrics.records_dropped.labels(component=sink_id, reason="duplicate_event")._value.get())


def test_a_republished_event_id_is_stored_once() -> None:
    """Two agents' sinks publish the same line event (same id) and each its own incident event
    (no id): the stream holds the line event once and both incident events."""
    server = shared_server()
    stream = unique_name("D")
    options = NatsSinkOptions(servers=[server.url], stream=stream, subject=f"{stream}.events")
    line = orjson.dumps({"event_name": "logdetect.line", "attributes": {"event.id": "LOGS@1:7:0/line"}})
    first, second = NatsSink("first", options), NatsSink("second", options)
    client = SyncClient(server.url)
    try:
        first.open()
        second.open()
        first.write_with_ids([line, b'{"incident": "a"}'], ["LOGS@1:7:0/line", None])
        before = dropped("second")
        second.write_with_ids([line, b'{"incident": "b"}'], ["LOGS@1:7:0/line", None])
        assert dropped("second") - before == 1
        assert client.stream_messages(stream) == 3
        stored = client.read_all(f"{stream}.events", 3)
    finally:
        first.close()
        second.close()
        client.close()
    assert sorted(stored) == sorted([line, b'{"incident": "a"}', b'{"incident": "b"}'])
