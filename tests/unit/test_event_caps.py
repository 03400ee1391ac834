"""Every emitted field is capped (issue 14, defect 2: a 10 MB record gave a 10 MB event)."""

from __future__ import annotations

import jsonschema
import orjson

from agent import events
from agent.types import Anomaly, Level, LineResult, ParsedLine, TemplatedLine, Verdict


def _line(raw: str) -> TemplatedLine:
    parsed = ParsedLine(raw, raw, 1_700_000_000.0, Level.ERROR, "web-1", "fwd")
    return TemplatedLine(parsed, 1_000_001, raw, (raw,), 0, True, 1_700_000_000.0)


def test_long_fields_are_cut_and_named_in_truncated_and_the_event_validates() -> None:
    """Over-long fields are cut, named in `truncated`, and the event still validates."""
    raw = "disk failure " * 20_000  # 260 KB
    outputs = [
        LineResult(_line(raw), (), 1.0, Verdict.WATCH),
        Anomaly(_line(raw), 2.0, Verdict.DANGER, (), ()),
        LineResult(_line("short line"), (), 0.1, Verdict.NORMAL),
    ]
    lines = events.encode_all(outputs, 1_700_000_001.0, "CPUExecutionProvider")
    validator = jsonschema.Draft202012Validator(events.json_schema())
    long_line, anomaly, short = (orjson.loads(line) for line in lines)
    for event in (long_line, anomaly, short):
        validator.validate(event)
    assert len(long_line["attributes"]["log.raw"]) == events.MAX_FIELD_CHARS
    assert long_line["attributes"]["truncated"] == ["log.raw"]
    assert set(anomaly["attributes"]["truncated"]) == {"log.raw", "template.text", "template.params"}
    assert all(len(line) < 4 * events.MAX_FIELD_CHARS for line in lines)
    assert "truncated" not in short["attributes"]
