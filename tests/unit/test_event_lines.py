"""`encode_all` splices anomaly and incident event lines from encoded pieces: the bytes must be
exactly those of the event object encoded whole (`encode(render(...))`), whatever they hold."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from log_fixtures import bgl_lines

from agent import events
from agent.incidents import IncidentGrouper
from agent.types import Anomaly, DetectorScore, Explanation, ExplanationKind, Incident, IncidentState, Verdict


def _whole(a: Anomaly | Incident, observed: float, provider: str, resource: dict[str, str] | None) -> bytes:
    """The event line as built whole, capped as `encode_all` caps it."""
    obj = events.render(a, observed, provider)
    if resource:
        obj["resource"] = {**resource, **obj["resource"]}
    line = events.encode(obj)
    return events.encode(events.cap_fields(obj)) if len(line) > events.MAX_FIELD_CHARS else line


def test_spliced_anomaly_lines_are_the_whole_events_bytes(data_dir: Path) -> None:
    """Real BGL lines as anomalies of every shape an event can take: shared and one-off
    explanations, float, zero, integer and negative scores, both verdicts, with and without an
    incident, an origin, an arrival time, a resource, a line over the field cap."""
    lines = [tl for _, tl in bgl_lines(data_dir / "bgl" / "BGL_14k.log", {}, set())[:400]]
    new = Explanation(ExplanationKind.NEW_TEMPLATE, "NEW TEMPLATE: Never seen before in training data",
                      (("template_id", 7), ("template", "a <*>")))
    burst = Explanation(ExplanationKind.BURST, "BURST: 12 lines in 60 s\nsecond line", (("count", 12),))
    silent = Explanation(ExplanationKind.SEVERITY, "", (("level", "FATAL"), ("share", 0.001)))
    scores = (DetectorScore("deeplog", 73.0, 126.033745, False),
              DetectorScore("isolation_forest", 0.1234567891, 0.32, False), DetectorScore("novelty", 1.0, 0.5, True))
    odd = (DetectorScore("novelty", 1, 0.5, True), DetectorScore("isolation_forest", 0.0, -0.0, False),
           DetectorScore("lstm_ae", -2.5e-7, 1e300, True))
    anomalies = []
    for i, tl in enumerate(lines):
        one_off = Explanation(ExplanationKind.RARE_TEMPLATE, f"rare {i}")
        explained = [(new,), (new, burst), (silent,), (), (one_off,)][i % 5]
        a = Anomaly(tl, 2.0 + i / 7, Verdict.WATCH if i % 3 else Verdict.DANGER, scores if i % 4 else odd, explained,
                    f"inc-{i % 9}" if i % 6 else None)
        if i % 11 == 0:
            a = replace(a, line=replace(tl, line=replace(tl.line, origin=f"stream/{i}"), time_from_arrival=True))
        anomalies.append(a)
    long_tl = replace(lines[0], line=replace(lines[0].line, raw="x" * (events.MAX_FIELD_CHARS + 10)))
    anomalies.append(Anomaly(long_tl, 2.0, Verdict.WATCH, scores, (new,)))
    for resource in (None, {"host.name": "bgl-1"}, {"log.source": "overridden", "host.name": "h"}):
        for observed in (0.0, 1_121_716_969.25):
            got = events.encode_all(anomalies, observed, "CPUExecutionProvider", resource)
            assert got == [_whole(a, observed, "CPUExecutionProvider", resource) for a in anomalies]
    capped = events.encode_all(anomalies[-1:], 0.0, "none")[0]
    assert b'"truncated":["log.raw"]' in capped

    # the incidents these anomalies open, update and resolve (and one with a sample over the cap)
    grouper = IncidentGrouper()
    incidents = [i for a in anomalies for i in grouper.add(a)[1]] + grouper.close()
    assert {i.state for i in incidents} == set(IncidentState)
    incidents.append(replace(incidents[0], samples=("y" * (events.MAX_FIELD_CHARS + 1),)))
    for resource in (None, {"host.name": "bgl-1"}):
        got = events.encode_all([*incidents, anomalies[0]], 5.5, "CPUExecutionProvider", resource)
        assert got == [_whole(i, 5.5, "CPUExecutionProvider", resource) for i in [*incidents, anomalies[0]]]
