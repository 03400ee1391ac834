"""The fleet view counts what its hosts counted (agent/fleet.py): a host emits only the first
repeats of a storm (the storm contract, `incidents.repeat_emitted`) and counts the rest in its
incident, so the fleet reads the hosts' incident events as well as their anomaly events. Real
data: BGL_2k's second half through a pipeline trained on its first half, as three hosts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from loghub_halves import final_incidents, halves, scan_records

from agent import events
from agent.config import FleetSettings
from agent.fleet import FleetPipeline, template_key
from agent.types import Anomaly, Incident, Output, Record
from plugins.records import FieldMap, record_from_map
from trainer.train import TrainOptions, train

HOSTS = ("bgl-a", "bgl-b", "bgl-c")


def _as_hosts(outputs: list[Output], bundle_id: str) -> list[Record]:
    """The host's events as each of `HOSTS` would publish them, read back as a fleet source
    reads them, interleaved (event by event, host by host)."""
    per_host = []
    for host in HOSTS:
        encoded = events.encode_all(outputs, 0.0, "cpu", {"host.name": host, "logdetect.bundle.id": bundle_id})
        records = [record_from_map(orjson.loads(e), FieldMap(message=("body",)), "agents", 0.0, None)
                   for e in encoded]
        per_host.append([r for r in records if isinstance(r, Record)])
    return [r for trio in zip(*per_host, strict=True) for r in trio]


@pytest.fixture(scope="module")
def bgl(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Output]]:
    """BGL_2k trained on its first half (the set rule), the second half scanned: the bundle id, the outputs."""
    train_part, scan_part, _ = halves(data_dir, "BGL")
    out = tmp_path_factory.mktemp("bgl") / "m"
    train(train_part, TrainOptions(output=out, models=("novel_set",), progress=False))
    pipe, outputs = scan_records(out, scan_part)
    return pipe.bundle_id, outputs


@pytest.mark.parametrize(("batch", "restart"), [(3, False), (300, False), (300, True)])
def test_a_fleet_incident_carries_the_repeats_its_hosts_counted(
    bgl: tuple[str, list[Output]], tmp_path: Path, batch: int, restart: bool
) -> None:
    """BGL_2k's "iar … dear …" storm: a host emits 6 of its 208 anomalies (the rest are counted
    in its incident, `repeats_not_emitted`). Three hosts with that storm: the fleet incidents of
    its template counted 18 anomalies (3 × 6, the anomaly events); they now count 624 (3 × 208),
    what the hosts' incident events said, whatever the batches the fleet view reads, and across a
    restart of the fleet view on its `state_dir` half way (the counts are saved with its state)."""
    bundle_id, outputs = bgl
    incidents = final_incidents(outputs)
    storm = max(incidents.values(), key=lambda i: i.repeats_not_emitted)
    tid = storm.leading_templates[0][0]
    emitted = sum(isinstance(o, Anomaly) and o.line.template_id == tid for o in outputs)
    counted = sum(n for i in incidents.values() for t, _, n in i.leading_templates if t == tid)
    assert emitted < counted // 10, (emitted, counted)  # (6 of 208)

    state = tmp_path / "state" if restart else None
    fleet = FleetPipeline(FleetSettings(), state)
    records = _as_hosts(outputs, bundle_id)
    out: list[Output] = []
    for i in range(0, len(records), batch):
        out += fleet.process(records[i:i + batch], 0.0)
        fleet.checkpoint()
        if restart and i // batch == len(records) // batch // 2:
            fleet.close(0.0)  # with a state dir: kept open, saved; the next start takes them back
            fleet = FleetPipeline(FleetSettings(), state)
    out += fleet.grouper.close()
    key = template_key(tid, "", bundle_id)
    assert key.startswith("online:") or key.startswith("bundle:")
    fleet_incidents = {o.incident_id: o for o in out if isinstance(o, Incident)}
    of_storm = [i for i in fleet_incidents.values() if i.leading_templates[0][0] == tid]
    assert of_storm and all(set(i.entities) == set(HOSTS) for i in of_storm)
    assert sum(i.anomaly_count for i in of_storm) == len(HOSTS) * counted
