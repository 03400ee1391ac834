"""The scan summary and anomaly blocks of seed 002, in colour and plain."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from log_fixtures import bgl_lines

from agent.explain import Explainer
from agent.incidents import IncidentGrouper
from agent.render import render_anomaly, render_summary
from agent.types import Anomaly, Incident, Level, LineContext, ParsedLine, TemplatedLine, Verdict
from trainer.profile import build_profile

_INCIDENT_LINE = re.compile(
    r"^Incident (\d+) \((\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d( - (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d)?\): "
    r".+ \[(CRITICAL|HIGH|MEDIUM|LOW)\]$"
)




def scan(data_dir: Path) -> tuple[int, list[Anomaly], list[Incident]]:
    """Train a profile on BGL_4k's normal lines, then flag BGL_2k with the explainer's facts."""
    vocab: dict[str, int] = {}
    profile = build_profile(
        [tl for lab, tl in bgl_lines(data_dir / "bgl" / "BGL_4k.log", vocab, None) if lab == "-"]
    )
    known = {int(k) for k in profile["templates"]}
    test = bgl_lines(data_dir / "loghub_2k" / "BGL" / "BGL_2k.log", vocab, known)
    explainer = Explainer(profile, {v: k for k, v in vocab.items()})
    grouper = IncidentGrouper()
    anomalies: list[Anomaly] = []
    incidents: list[Incident] = []
    for _, tl in test:
        explainer.observe(tl)
        ctx = LineContext(tl, np.zeros(1, dtype=np.float32), (tl.token,), (int(tl.line.level),))
        if explainer.is_notable(ctx):
            a = Anomaly(tl, 1.5, Verdict.WATCH, (), explainer.explain(ctx, []))
            iid, events = grouper.add(a)
            anomalies.append(replace(a, incident_id=iid))
            incidents += events
    incidents += grouper.close()
    return len(test), anomalies, incidents


def test_summary_has_seed_002_shape(data_dir: Path):
    """The text summary has seed 002's shape: counts first, then one block per incident."""
    lines, anomalies, incidents = scan(data_dir)
    text = render_summary(lines, anomalies, incidents, color=False)
    head = text.splitlines()
    groups = len({i.incident_id for i in incidents})
    assert head[0] == f"Scanned {lines:,} log lines"
    assert head[1] == f"Found {len(anomalies):,} anomalous lines in {groups:,} incident groups"
    incident_lines = [row for row in head if row.startswith("Incident ")]
    assert incident_lines and all(_INCIDENT_LINE.match(row) for row in incident_lines)
    assert re.search(r'^  └─ \d[\d,]* anomalous lines?(,| across| :|:).*"', text, re.M)
    # No combined score in the header: it has no unit a person knows (a rule alone makes it 2.00).
    assert "ANOMALY DETECTED  WATCH (no voting model fired: raised by the facts below)" in text
    assert "[Score:" not in text
    assert "NEW TEMPLATE: Never seen before in training data" in text
    assert "\x1b[" not in text


def test_colour_only_when_asked(data_dir: Path):
    """Colour codes appear only when asked for and change nothing else."""
    lines, anomalies, incidents = scan(data_dir)
    coloured = render_summary(lines, anomalies, incidents, color=True)
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[\d;]*m", "", coloured) == render_summary(lines, anomalies, incidents, color=False)


def test_anomaly_block_lists_every_factor():
    """An anomaly's block lists each explanation with its facts."""
    parsed = ParsedLine(
        "2024-01-15T03:42:18Z ERROR db-primary: Database connection pool exhausted, 0 available",
        "Database connection pool exhausted, 0 available", 1705290138.0, Level.ERROR, "db-primary",
    )  # fmt: skip
    line = TemplatedLine(
        parsed, 9, "Database connection pool exhausted, <*> available", ("0",), 0, True, 1705290138.0
    )
    explainer = Explainer({"templates": {"1": {"count": 10, "template": "x"}}, "totals": {"lines": 10}}, {})
    ctx = LineContext(line, np.zeros(1, dtype=np.float32), (0,), (6,))
    a = Anomaly(line, 0.89, Verdict.DANGER, (), explainer.explain(ctx, []))
    block = render_anomaly(a, color=False)
    rows = block.splitlines()
    assert rows[0] == "ANOMALY DETECTED  DANGER (no voting model fired: raised by the facts below)"
    assert "Timestamp: 2024-01-15 03:42:18" in block
    assert 'Log Line:  "Database connection pool exhausted, 0 available"' in block
    factors = [r for r in rows if r.startswith("  • ")]
    assert len(factors) == len(a.explanations) >= 1
    untimed = replace(a, line=replace(line, time_from_arrival=True))
    assert "arrival time" in render_anomaly(untimed, color=False)


def test_empty_scan():
    """A scan with no lines still prints the two count lines."""
    assert (
        render_summary(0, [], [], color=False)
        == "Scanned 0 log lines\nFound 0 anomalous lines in 0 incident groups\n"
    )
