"""A Loghub-2k file split as `logdetect eval normal-logs` splits it (train on the first half of
the raw lines, scan the second), and the count check every incident test makes on the scan."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from agent.pipeline import Pipeline, PipelineConfig
from agent.reader import iter_records
from agent.types import Anomaly, Incident, Output, Record


def halves(data_dir: Path, system: str) -> tuple[list[Record], list[Record], list[str]]:
    """The training half, the scanned half and every line's ground-truth event id."""
    folder = data_dir / "loghub_2k" / system
    records = list(iter_records(folder / f"{system}_2k.log"))
    with (folder / f"{system}_2k.log_structured_corrected.csv").open(newline="") as fh:
        events = [row["EventId"] for row in csv.DictReader(fh)]
    assert len(events) == len(records)
    half = len(records) // 2
    return records[:half], records[half:], events


def scan_records(bundle: Path, records: list[Record], **config: float) -> tuple[Pipeline, list[Output]]:
    """The records through one pipeline, as `scan` does (one batch, then close)."""
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(**config))  # type: ignore[arg-type]
    return pipe, pipe.process(records, 0.0) + pipe.close(0.0)


def final_incidents(outputs: list[Output]) -> dict[str, Incident]:
    """Each incident's last event, by id."""
    return {o.incident_id: o for o in outputs if isinstance(o, Incident)}


def assert_incident_counts_agree(pipe: Pipeline, outputs: list[Output]) -> None:
    """Every anomaly event in an incident carries its id; an incident's count is its events plus
    the identical repeats it counted; the pipeline's anomalous lines are the incidents' plus the
    isolated ones."""
    anomalies = [o for o in outputs if isinstance(o, Anomaly)]
    incidents = final_incidents(outputs)
    per_incident = Counter(a.incident_id for a in anomalies if a.incident_id is not None)
    assert set(per_incident) == set(incidents)
    for iid, inc in incidents.items():
        assert per_incident[iid] + inc.repeats_not_emitted == inc.anomaly_count
    isolated = sum(a.incident_id is None for a in anomalies)
    assert pipe.anomalies == sum(i.anomaly_count for i in incidents.values()) + isolated
