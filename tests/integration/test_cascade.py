"""The cascade changes no output: detectors outside the served vote run only where the vote finds
something (`agent/detectors/cascade.py`), and every event is the one the full schedule emits.

The stream is the demo's incident day (entity = component, every model of the demo bundle: the
trainer left the Isolation Forest, DeepLog, the LSTM-AE and LogBERT out of the vote at every
level there, so all four only explain). It is scanned twice, with and without the cascade, as
`logdetect scan` batches it; the outputs must be equal (`tests/cascade_outputs.py`: anomaly for
anomaly, incident for incident, session for session) and every line gets the same verdict. The
contract suite (`tests/contract/test_models.py`) checks the same on real HDFS lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cascade_outputs import assert_same_outputs
from conftest import DEMO_TIMEOUT, DemoRun

from agent.pipeline import Pipeline, PipelineConfig
from agent.reader import iter_records
from agent.types import Anomaly, Output, Record, SessionVerdict, Verdict


def scan(bundle: Path, records: list[Record], cascade: bool) -> tuple[Pipeline, list[Output]]:
    """`logdetect scan`'s calls (batches of 4,096 records, then close)."""
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(cascade=cascade))
    out: list[Output] = []
    for start in range(0, len(records), 4096):
        out.extend(pipe.process(records[start : start + 4096], 0.0))
    out.extend(pipe.close(0.0))
    return pipe, out


def verdicts(outputs: list[Output], lines: int) -> list[Verdict]:
    """Each line's verdict: its anomaly's, or NORMAL when none was emitted for it."""
    found = [Verdict.NORMAL] * lines
    for o in outputs:
        if isinstance(o, Anomaly):
            found[o.line.line.line_no - 1] = o.verdict
    return found


@pytest.mark.timeout(DEMO_TIMEOUT + 120)  # the session's demo run (shared with test_readme) counts as setup
def test_same_outputs_with_and_without_the_cascade_on_the_incident_day(demo_run: DemoRun) -> None:
    """Line for line the same verdicts, and the same events; the models outside the vote ran on
    a small part of the lines."""
    records = list(iter_records(demo_run.workdir / "incident-day.log"))
    full, expected = scan(demo_run.workdir / "model", records, cascade=False)
    fast, got = scan(demo_run.workdir / "model", records, cascade=True)
    assert fast.cascade.witness_names and not full.cascade.witness_names
    assert_same_outputs(got, expected, fast.cascade.witness_names)
    assert verdicts(got, fast.lines) == verdicts(expected, full.lines)
    flagged = sum(v is not Verdict.NORMAL for v in verdicts(got, fast.lines))
    assert 0 < flagged < fast.lines // 10
    assert [o for o in got if isinstance(o, SessionVerdict)] == [o for o in expected if isinstance(o, SessionVerdict)]
    for name in fast.cascade.witness_names:
        ran, all_rows = fast.detector_stats()[name].get("rows", 0.0), full.detector_stats()[name].get("rows", 0.0)
        assert ran < all_rows, (name, ran, all_rows)  # (the short road already spares most normal lines)
