"""Two `logdetect agent` processes share one JetStream consumer (work queue) on a real
nats-server; one of them is killed with SIGKILL mid-stream and restarted, as systemd would.

What must hold: every published line is emitted (nothing acked is lost; the stream ends empty,
so every message was acked), the two agents split the work, and a line is emitted twice only
when it was in the killed agent's in-flight window (written, ack not yet at the server; the
server then redelivers it, possibly to the other agent): never more than `max_ack_pending`
lines, and never a line the killed agent had not emitted itself before the kill.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
from nats_server import SyncClient, shared_server, unique_name

from ops.agent_harness import AgentProcess, wait_until
from ops.conftest import SYSTEMS, lines_of

MESSAGES = 400
IN_FLIGHT = 10  # fetch_batch = max_ack_pending: the most one agent holds unacked


def write_nats_config(path: Path, model: Path, state: Path, events: Path, url: str, stream: str) -> None:
    """An agent config: the shared `nats` source (one durable), every line to its own file."""
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
servers = ["{url}"]
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


def test_kill_9_of_one_of_two_agents_loses_no_acked_message(
    bundles: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    """Two agents, one durable consumer, Vector-style JSON messages; agent A is killed -9 after
    it emitted 60 lines and restarted; nothing is lost, duplicates only from A's in-flight window."""
    server = shared_server()
    stream = unique_name("K")
    lines = lines_of(data_dir, SYSTEMS[0])[:MESSAGES]
    paths = {n: (tmp_path / f"{n}.toml", tmp_path / f"state-{n}", tmp_path / f"{n}.jsonl") for n in "ab"}
    for config, state, events in paths.values():
        write_nats_config(config, bundles["a"], state, events, server.url, stream)
    client = SyncClient(server.url)
    agents: dict[str, AgentProcess] = {}
    try:
        agents["a"] = AgentProcess(paths["a"][0], None)
        ready(agents["a"])  # A creates the stream and the consumer
        agents["b"] = AgentProcess(paths["b"][0], None)
        ready(agents["b"])

        def publish() -> None:
            for line in lines:
                client.publish(f"{stream}.logs", orjson.dumps({"message": line, "host": "web-1"}))
                time.sleep(0.005)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        wait_until(lambda: len(emitted(paths["a"][2])) >= 60, 60, "agent A to emit 60 lines")
        agents["a"].proc.kill()  # SIGKILL: no drain, no acks for what is in flight
        agents["a"].wait(timeout=10)
        before_kill = paths["a"][2].stat().st_size
        agents["a"] = AgentProcess(paths["a"][0], None)
        ready(agents["a"])
        publisher.join(60)
        assert not publisher.is_alive()
        wait_until(lambda: client.stream_messages(stream) == 0, 60, "every message acked")
        wait_until(lambda: len(emitted(paths["a"][2])) + len(emitted(paths["b"][2])) >= MESSAGES, 30, "all lines")
        for agent in agents.values():
            agent.signal(signal.SIGTERM)
        for agent in agents.values():
            assert agent.wait(timeout=20) == 0
    finally:
        for agent in agents.values():
            agent.kill()
        client.close()
    a_lines, b_lines = emitted(paths["a"][2]), emitted(paths["b"][2])
    got, want = Counter(a_lines + b_lines), Counter(lines)
    missing, twice = want - got, got - want
    assert not missing, f"{sum(missing.values())} lines lost, e.g. {list(missing)[:2]}"
    assert a_lines and b_lines, "the work queue gave every message to one agent"
    a_before = emitted(paths["a"][2], before_kill)
    assert sum(twice.values()) <= IN_FLIGHT, f"{sum(twice.values())} lines emitted twice: {list(twice)[:3]}"
    assert set(twice) <= set(a_before[-IN_FLIGHT:]), "a line emitted twice outside A's in-flight window"
