"""Events a source emits itself (not from the pipeline): the ZeroMQ data-gap report."""

from __future__ import annotations

import datetime as dt

import orjson

DATA_GAP_EVENT = "logdetect.data_gap"
SCHEMA_VERSION = 1


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def data_gap_event(
    *, source: str, producer: str, epoch: str, expected_seq: int, received_seq: int, at: float
) -> bytes:
    """One `logdetect.data_gap` event line: a producer's sequence jumped, messages were lost."""
    lost = received_seq - expected_seq
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "event_name": DATA_GAP_EVENT,
            "timestamp": rfc3339(at),
            "severity_text": "WARN",
            "severity_number": 13,
            "body": f"{lost} message(s) from producer {producer!r} never arrived at source {source!r}",
            "attributes": {
                "logdetect.source": source,
                "logdetect.producer": producer,
                "logdetect.epoch": epoch,
                "logdetect.expected_seq": expected_seq,
                "logdetect.received_seq": received_seq,
                "logdetect.lost_messages": lost,
            },
        }
    )
