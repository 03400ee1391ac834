"""Two `logdetect agent` processes share one JetStream consumer (work queue) on a real
nats-server and publish their events to one JetStream events stream; one of them is killed with
SIGKILL mid-stream and restarted, as systemd would.

The fault that makes a line be processed by two agents is made on purpose: agent A reads the
stream through a proxy that, from one moment on, loses A's acks (`AckCutProxy`). A goes on
processing and writing: the events of those lines are in A's file and in the events stream, and
the server never hears A's acks. A is then killed -9; after `ack_wait_secs` the server
redelivers those messages to B, which processes them again and publishes the same events.

What is guaranteed, and checked here:
- no acked message is lost: every published line has its line event (the input stream ends
  empty, so every message was acked);
- exactly once in the events stream: every input line has exactly one line event there, and no
  anomaly event is there twice, although the lines whose acks were lost were processed (scored,
  written to the agents' files) by BOTH agents: the events carry ids derived from the input
  (stream, sequence, line index), published as `Nats-Msg-Id`, and JetStream drops the second
  publication.

What is not guaranteed (ARCHITECTURE.md, "One stream, many agents"): a line can be processed
twice (CPU, and each agent's own file or stdout sink holds its copy, with the same `event.id`);
the copy kept in the stream is the first agent's (B's verdict on a redelivered line may differ,
its detector state is not A's); the killed agent's in-memory state (sequence windows, open
incidents) is lost; incident and session events have no id and are not deduplicated; and a
redelivery later than the events stream's `duplicate_window` (2 min by default; the redelivery
here comes after `ack_wait_secs` = 2 s) would be stored twice.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from nats_server import AckCutProxy, SyncClient, shared_server, unique_name

from ops.agent_harness import AgentProcess, wait_until
from ops.conftest import SYSTEMS, lines_of

LINES = 400
PER_MESSAGE = 2  # Fluent Bit `nats` flushes of two records: the line index inside a message counts
IN_FLIGHT = 10  # fetch_batch = max_ack_pending: the most one agent holds unacked


def write_nats_config(path: Path, model: Path, state: Path, events: Path, source_url: str, sink_url: str,
                      stream: str, out_stream: str) -> None:
    """An agent config: the shared `nats` source (one durable); every line's events to its own
    file and to the shared events stream."""
    path.write_text(
        f"""
model = "{model}"
state_dir = "{state}"

[pipeline]
emit_all = true
snapshot_interval_secs = 0.5

[agent]
tick_interval_secs = 0.2
shutdown_budget_secs = 5.0
metrics_listen = "127.0.0.1:0"

[sources.fleet]
type = "nats"
servers = ["{source_url}"]
stream = "{stream}"
subject = "{stream}.logs"
durable = "agents"
fetch_batch = {IN_FLIGHT}
max_ack_pending = {IN_FLIGHT}
fetch_timeout_secs = 0.2
ack_wait_secs = 2.0

[sinks.events]
type = "file"
path = "{events}"

[sinks.stream]
type = "nats"
servers = ["{sink_url}"]
stream = "{out_stream}"
subject = "{out_stream}.events"
"""
    )


def emitted(path: Path, upto: int | None = None) -> list[str]:
    """The raw lines of the line events in an events file (its first `upto` bytes)."""
    if not path.exists():
        return []
    data = path.read_bytes()[:upto]
    out = []
    for raw in data.splitlines():
        try:
            event = json.loads(raw)
        except ValueError:  # the line being written while we read
            continue
        if event["event_name"] == "logdetect.line":
            out.append(str(event["attributes"]["log.raw"]))
    return out


def ready(agent: AgentProcess) -> None:
    """Wait until the agent logs that it is ready; fail if it exited."""
    wait_until(lambda: "agent ready" in agent.log_events() or agent.proc.poll() is not None, 90, "agent ready")
    assert agent.proc.poll() is None, "\n".join(agent.raw_stderr[-20:])


def test_kill_9_with_lost_acks_loses_nothing_and_the_events_stream_has_each_line_once(
    bundles: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    """Two agents, one durable consumer, Fluent Bit-style flushes of two lines; A's acks are lost
    from its 60th line on, A is killed -9 once it wrote lines whose acks were lost, B processes
    them again: nothing lost, and one line event per input line in the events stream."""
    server = shared_server()
    proxy = AckCutProxy(server.port)
    stream, out_stream = unique_name("K"), unique_name("E")
    lines = lines_of(data_dir, SYSTEMS[0])[:LINES]
    paths = {n: (tmp_path / f"{n}.toml", tmp_path / f"state-{n}", tmp_path / f"{n}.jsonl") for n in "ab"}
    for name, (config, state, events) in paths.items():
        source_url = proxy.url if name == "a" else server.url
        write_nats_config(config, bundles["a"], state, events, source_url, server.url, stream, out_stream)
    client = SyncClient(server.url)
    agents: dict[str, AgentProcess] = {}
    try:
        agents["a"] = AgentProcess(paths["a"][0], None)
        ready(agents["a"])  # A creates the streams and the consumer
        agents["b"] = AgentProcess(paths["b"][0], None)
        ready(agents["b"])

        def publish() -> None:
            for i in range(0, LINES, PER_MESSAGE):
                flush = [[time.time(), {"log": line, "host": "web-1"}] for line in lines[i : i + PER_MESSAGE]]
                client.publish(f"{stream}.logs", orjson.dumps(flush))
                time.sleep(0.01)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        wait_until(lambda: len(emitted(paths["a"][2])) >= 60, 60, "agent A to emit 60 lines")
        proxy.drop_acks.set()  # from now on A's acks never reach the server
        cut = len(emitted(paths["a"][2]))
        wait_until(lambda: proxy.dropped >= 3 and len(emitted(paths["a"][2])) > cut, 30, "A to write unacked lines")
        agents["a"].proc.kill()  # SIGKILL: no drain; what it wrote stays unacked
        agents["a"].wait(timeout=10)
        proxy.drop_acks.clear()
        unacked = emitted(paths["a"][2])[cut:]  # written by A after its acks were cut
        b_has = lambda: not (Counter(unacked) - Counter(emitted(paths["b"][2])))  # noqa: E731
        wait_until(b_has, 30, "B to process the messages A wrote but never acked")
        agents["a"] = AgentProcess(paths["a"][0], None)
        ready(agents["a"])
        publisher.join(60)
        assert not publisher.is_alive()
        wait_until(lambda: client.stream_messages(stream) == 0, 60, "every message acked")
        wait_until(lambda: len(set(emitted(paths["a"][2]) + emitted(paths["b"][2]))) >= len(set(lines)), 30,
                   "all lines")
        for agent in agents.values():
            agent.signal(signal.SIGTERM)
        for agent in agents.values():
            assert agent.wait(timeout=20) == 0
        stored = client.stream_messages(out_stream)
        published = [orjson.loads(m) for m in client.read_all(f"{out_stream}.events", stored)]
    finally:
        for agent in agents.values():
            agent.kill()
        client.close()
        proxy.close()
    a_lines, b_lines = emitted(paths["a"][2]), emitted(paths["b"][2])
    assert a_lines and b_lines, "the work queue gave every message to one agent"
    assert unacked, "A wrote no line after its acks were cut"
    # Processed by both agents: in both files (each agent's own sink holds its copy).
    assert not Counter(unacked) - Counter(b_lines)
    got, want = Counter(a_lines + b_lines), Counter(lines)
    assert not want - got, f"{sum((want - got).values())} lines lost, e.g. {list(want - got)[:2]}"
    assert len(published) == stored
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in published:
        by_name.setdefault(event["event_name"], []).append(event["attributes"])
    line_events = by_name["logdetect.line"]
    assert Counter(e["log.raw"] for e in line_events) == want, "the events stream: not one line event per line"
    ids = [e["event.id"] for e in line_events]
    assert len(set(ids)) == len(ids) == LINES
    assert {i.rsplit(":", 1)[1] for i in ids} == {"0/line", "1/line"}  # the index inside each message
    anomaly_ids = [e["event.id"] for e in by_name.get("logdetect.anomaly", [])]
    assert len(set(anomaly_ids)) == len(anomaly_ids), "an anomaly event stored twice"
