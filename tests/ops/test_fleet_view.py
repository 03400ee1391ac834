"""Ids that agree across hosts, and the fleet view end to end, on real Loghub lines.

Agents are real pipelines on a real bundle (OpenSSH); the new message is a Linux ftpd line the
bundle never saw. The simulated hosts' anomaly events go, as their `nats` sinks would publish
them, onto a JetStream subject that a real `logdetect fleet` process reads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
from nats_server import SyncClient, shared_server, unique_name

from agent import events
from agent.pipeline import ONLINE_ID_BASE, Pipeline, PipelineConfig
from agent.types import Anomaly, Record
from ops.agent_harness import REPO, AgentProcess, wait_until
from ops.conftest import SYSTEMS, lines_of

HOSTS = 6


def ftpd_lines(data_dir: Path) -> list[str]:
    """Linux ftpd connection lines of one shape (`… at Sun Jul …`): one template, other values."""
    return [line for line in lines_of(data_dir, "Linux") if "ftpd" in line and "()" in line and " Sun Jul " in line]


def run_agent(bundle: Path, background: list[str], new: list[str]) -> list[Anomaly]:
    """One simulated agent: a pipeline on the bundle, fed its own traffic, then the new lines."""
    pipeline = Pipeline.from_bundle(bundle, PipelineConfig())
    now = time.time()
    out = list(pipeline.process([Record(line, "app", now) for line in background], now))
    out += pipeline.process([Record(line, "app", now) for line in new], now)
    out += pipeline.close(now)
    return [o for o in out if isinstance(o, Anomaly)]


def test_two_agents_fed_the_same_new_message_assign_the_same_online_id(
    bundles: dict[str, Path], data_dir: Path
) -> None:
    """Agents with different history meet the same new message, and its siblings in another
    order: both name the template with the same online id (derived from its content)."""
    known, new = lines_of(data_dir, SYSTEMS[0]), ftpd_lines(data_dir)[:3]
    a = run_agent(bundles["a"], known[:300], new)
    b = run_agent(bundles["a"], known[300:700], new[::-1])
    ids_a = {x.line.line.raw: x.line.template_id for x in a if x.line.line.raw in new}
    ids_b = {x.line.line.raw: x.line.template_id for x in b if x.line.line.raw in new}
    assert ids_a and ids_a == ids_b
    assert len(set(ids_a.values())) == 1 and next(iter(ids_a.values())) >= ONLINE_ID_BASE


def test_logdetect_fleet_turns_one_new_template_on_n_hosts_into_one_incident(
    bundles: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    """Six hosts each see the ftpd line (other values) among their own traffic; their anomaly
    events reach `logdetect fleet` through JetStream: one incident, listing the six hosts.

    `logdetect validate` accepts the fleet config. Half way (three hosts in, every event acked)
    the fleet view is killed with SIGKILL and restarted on the same state dir: the other three
    hosts update the SAME incident (its open incidents were saved before the acks), and a clean
    stop keeps it open (saved) instead of resolving it."""
    server = shared_server()
    stream = unique_name("F")
    known, new = lines_of(data_dir, SYSTEMS[0]), ftpd_lines(data_dir)
    client = SyncClient(server.url)
    config, out = tmp_path / "fleet.toml", tmp_path / "fleet.jsonl"
    config.write_text(
        f"""
state_dir = "{tmp_path / 'state'}"

[agent]
tick_interval_secs = 0.2
metrics_listen = "127.0.0.1:0"

[fleet]
window_secs = 600

[sources.agents]
type = "nats"
servers = ["{server.url}"]
stream = "{stream}"
subject = "{stream}.events"
durable = "fleet"
message_field = ["body"]
fetch_timeout_secs = 0.2

[sinks.incidents]
type = "file"
path = "{out}"
"""
    )
    checked = subprocess.run([sys.executable, "-m", "agent.cli", "validate", "--config", str(config)],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert checked.returncode == 0 and "OK (fleet config)" in checked.stdout, checked.stderr

    def start() -> AgentProcess:
        fleet = AgentProcess(config, None, command="fleet")
        wait_until(lambda: "agent ready" in fleet.log_events() or fleet.proc.poll() is not None, 60, "fleet ready")
        assert fleet.proc.poll() is None, "\n".join(fleet.raw_stderr[-20:])
        return fleet

    def publish(hosts: range) -> None:
        for h in hosts:
            anomalies = run_agent(bundles["a"], known[h * 100 : h * 100 + 100], [new[h]])
            for line in events.encode_all(anomalies, time.time(), "none", {"host.name": f"db-{h}"}):
                client.publish(f"{stream}.events", line)
        wait_until(lambda: client.stream_messages(stream) == 0, 30, "the fleet to ack every event")

    fleet = start()
    try:
        publish(range(HOSTS // 2))
        fleet.proc.kill()  # SIGKILL: no shutdown, only what was saved before the acks
        fleet.wait(timeout=10)
        fleet = start()
        assert "fleet incidents restored" in fleet.log_events()
        publish(range(HOSTS // 2, HOSTS))
        fleet.signal(signal.SIGTERM)
        assert fleet.wait(timeout=20) == 0
    finally:
        fleet.kill()
        client.close()
    found = [json.loads(raw) for raw in out.read_bytes().splitlines()]
    incidents = {e["attributes"]["incident.id"] for e in found if e["event_name"] == "logdetect.incident"}
    assert len(incidents) == 1, found
    states = [e["attributes"]["incident.state"] for e in found]
    assert states[0] == "open" and set(states[1:]) == {"update"}, states  # kept open over both stops
    last = found[-1]["attributes"]
    assert last["incident.entities"] == [f"db-{h}" for h in range(HOSTS)]
    assert last["incident.leading_templates"][0]["id"] >= ONLINE_ID_BASE
    validator = jsonschema.Draft202012Validator(events.json_schema())
    for event in found:
        validator.validate(event)
        assert event["resource"]["host.name"]  # the fleet view's own host
