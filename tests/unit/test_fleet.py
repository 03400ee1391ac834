"""The fleet grouper (agent/fleet.py) on anomaly events as agents render them and sources read them:
the same new template on many hosts within minutes is one fleet incident listing the hosts."""

from __future__ import annotations

import time
from pathlib import Path

import jsonschema
import orjson

from agent import events
from agent.config import FleetSettings
from agent.fleet import FleetPipeline, read_anomaly, template_key
from agent.fleet_state import FLEET_STATE
from agent.pipeline import ONLINE_ID_BASE
from agent.types import (
    Anomaly,
    DetectorScore,
    Explanation,
    ExplanationKind,
    Incident,
    IncidentState,
    Level,
    ParsedLine,
    Record,
    TemplatedLine,
    Verdict,
)
from plugins.records import FieldMap, record_from_map

T0 = 1_795_428_000.0
NEW_TID = ONLINE_ID_BASE + 209_593_287_278
VALIDATOR = jsonschema.Draft202012Validator(events.json_schema())


def anomaly_record(
    host: str, t: float, tid: int, text: str, raw: str, bundle: str = "b1", origin: str = ""
) -> Record:
    """One agent's anomaly event, rendered with its host resource and read back as a source
    reads a JSON event (message field `body`); `origin`: where its line came from."""
    parsed = ParsedLine(raw, raw, t, Level.INFO, host, source="app", line_no=1, origin=origin)
    line = TemplatedLine(parsed, tid, text, (), 0, True, t)
    why = (Explanation(ExplanationKind.NEW_TEMPLATE, "never seen in training", ()),)
    anomaly = Anomaly(line, 2.0, Verdict.WATCH, (DetectorScore("novelty", 1.0, 0.5, True),), why, None)
    (encoded,) = events.encode_all([anomaly], t, "none", {"host.name": host, "logdetect.bundle.id": bundle})
    record = record_from_map(orjson.loads(encoded), FieldMap(message=("body",)), "agents", t, None)
    assert isinstance(record, Record)
    return record


def incidents(outputs: list[object]) -> list[Incident]:
    """The incidents among pipeline outputs."""
    return [o for o in outputs if isinstance(o, Incident)]


def test_one_new_template_on_37_hosts_is_one_incident_listing_them() -> None:
    """37 hosts meet the same new template within 5 minutes (each also has an anomaly of its
    own): one fleet incident opens, grows, and resolves listing all 37 hosts; nothing else."""
    hosts = [f"web-{i:02d}" for i in range(37)]
    fleet = FleetPipeline(FleetSettings())
    out: list[object] = []
    for i, host in enumerate(hosts):
        t = T0 + i * 8.0
        batch = [
            anomaly_record(host, t, NEW_TID, "connection from <IP> () at Sun Jul <NUM>", f"connection from 10.0.0.{i}"),
            anomaly_record(host, t + 1, ONLINE_ID_BASE + 1000 + i, f"own problem {i} <*>", f"own problem {i} x"),
        ]
        out += fleet.process(batch, time.time())
    out += fleet.close(time.time())
    found = incidents(out)
    assert {i.incident_id for i in found} == {found[0].incident_id}
    assert [i.state for i in found[1:-1]] == [IncidentState.UPDATE] * 35  # one per host that joined
    assert found[0].state == IncidentState.OPEN and found[-1].state == IncidentState.RESOLVED
    assert found[-1].entities == tuple(hosts)
    assert found[-1].anomaly_count == 37 and found[-1].leading_templates[0][0] == NEW_TID
    assert "on 37 hosts" in found[-1].title
    for event in events.encode_all(found, time.time(), "none"):
        VALIDATOR.validate(orjson.loads(event))


def test_hosts_beyond_the_window_start_a_new_incident_and_quiet_ones_resolve() -> None:
    """Two hosts at T0, two more two hours later: two incidents; the first resolves on the events'
    clock once `quiet_secs` passed, before the second opens."""
    fleet = FleetPipeline(FleetSettings(window_secs=600, quiet_secs=900))
    out: list[object] = []
    for host, t in (("a", T0), ("b", T0 + 60), ("c", T0 + 7200), ("d", T0 + 7260)):
        out += fleet.process([anomaly_record(host, t, NEW_TID, "disk <*> failed", f"disk {host} failed")], time.time())
    out += fleet.close(time.time())
    found = incidents(out)
    assert [(i.state, i.entities) for i in found] == [
        (IncidentState.OPEN, ("a", "b")),
        (IncidentState.RESOLVED, ("a", "b")),
        (IncidentState.OPEN, ("c", "d")),
        (IncidentState.RESOLVED, ("c", "d")),
    ]


def test_trained_ids_join_only_within_one_bundle_and_other_events_are_skipped() -> None:
    """A trained template id means the same template only for agents serving the same bundle;
    line and incident events are not anomalies and are skipped."""
    assert template_key(42, "x", "b1") != template_key(42, "x", "b2")
    assert template_key(NEW_TID, "x", "b1") == template_key(NEW_TID, "y", "b2")
    fleet = FleetPipeline(FleetSettings())
    out = fleet.process(
        [anomaly_record("a", T0, 42, "t <*>", "t 1", "b1"), anomaly_record("b", T0 + 1, 42, "t <*>", "t 2", "b2")],
        time.time(),
    )
    assert incidents([*out, *fleet.close(time.time())]) == []
    not_anomaly = Record("x", "agents", T0, None, (("event_name", "logdetect.line"),))
    assert read_anomaly(not_anomaly) == "not_an_anomaly_event"


def test_open_fleet_incidents_survive_a_restart_with_a_state_dir(tmp_path: Path) -> None:
    """Three hosts, then the fleet view stops (nothing resolves: the incident is saved) and a new
    one starts on the same state dir: two more hosts update the SAME incident, listing all five.
    A state file that cannot be read starts an empty fleet view instead of failing."""
    text = "disk <*> failed"
    first = FleetPipeline(FleetSettings(), tmp_path)
    out = [*first.process([anomaly_record(h, T0 + i, NEW_TID, text, f"disk {h} failed")
                           for i, h in enumerate("abc")], time.time())]
    first.checkpoint()  # what the daemon does once the events are written
    assert first.close(time.time()) == []
    assert (tmp_path / FLEET_STATE).is_file()
    second = FleetPipeline(FleetSettings(), tmp_path)
    assert second.grouper.open_count == 1
    out += second.process([anomaly_record(h, T0 + 60, NEW_TID, text, f"disk {h} failed") for h in "de"], time.time())
    found = incidents(out)
    assert [i.state for i in found] == [IncidentState.OPEN, IncidentState.UPDATE]
    assert found[0].incident_id == found[1].incident_id
    assert found[1].entities == ("a", "b", "c", "d", "e") and found[1].first_seen == T0
    assert found[1].samples == tuple(f"disk {h} failed" for h in "abcde")
    second.checkpoint()
    third = FleetPipeline(FleetSettings(quiet_secs=900), tmp_path)
    resolved = incidents(list(third.tick(time.time() + 1000)))  # quiet for longer than quiet_secs
    assert [(i.state, i.incident_id) for i in resolved] == [(IncidentState.RESOLVED, found[0].incident_id)]
    (tmp_path / FLEET_STATE).write_bytes(b'{"version": 1, "open": [["x"')
    assert FleetPipeline(FleetSettings(), tmp_path).grouper.open_count == 0


def test_the_same_lines_anomaly_counts_once_also_across_a_restart(tmp_path: Path) -> None:
    """Anomaly events with the same `event.id` (one line, processed by two agents, or redelivered
    after a crash between the save and the acks) count once, before and after a restart; events
    without an id each count."""
    text = "disk <*> failed"
    line = anomaly_record("a", T0, NEW_TID, text, "disk a failed", origin="LOGS@1:7:0")
    other = anomaly_record("b", T0 + 1, NEW_TID, text, "disk b failed", origin="LOGS@1:8:0")
    first = FleetPipeline(FleetSettings(), tmp_path)
    out = incidents(list(first.process([line, other, line], time.time())))
    assert out[-1].anomaly_count == 2 and out[-1].entities == ("a", "b")
    first.checkpoint()
    second = FleetPipeline(FleetSettings(), tmp_path)
    no_id = anomaly_record("c", T0 + 2, NEW_TID, text, "disk c failed")
    out = incidents(list(second.process([line, other, no_id, no_id], time.time())))
    assert [(i.state, i.anomaly_count, i.entities) for i in out] == [(IncidentState.UPDATE, 4, ("a", "b", "c"))]
