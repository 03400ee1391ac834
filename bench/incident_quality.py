"""Alert fatigue on BGL: how the product's incidents group real alerts, and how many a normal stream makes.

    .venv/bin/python bench/incident_quality.py [--data DIR] [--train 4k,6k,8k,10k,12k]
        [--test 14k,16k,2k] [--models isolation_forest] [--report OUT.html] [--json]

1. Trains a bundle (`trainer.train.train`, BGL format, normal lines only: the semi-supervised
   protocol of `logdetect eval bgl`) on the `--train` files.
2. Scans every `--test` file (labels stripped; multi-line stitching off so that line numbers
   stay aligned with the labels) through `agent.pipeline.Pipeline`, exactly as `scan` does,
   and reports: incidents formed, how many of them hold at least one alert line, and the
   fraction of alert lines that land in an incident (= flagged and grouped).
3. Scans the same files with every alert line removed (a normal-only stream) and reports the
   incidents per day: per calendar day the file spans, and per day that has any line (the BGL
   files are random samples spread over months, so most calendar days are empty).
`--report` writes the HTML report of the first test file (the page `scan --report` writes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from agent.parsing import ParserConfig, strip_bgl_label  # noqa: E402
from agent.pipeline import Pipeline, PipelineConfig  # noqa: E402
from agent.types import Anomaly, Incident, LineResult, Record  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))
PARSER = ParserConfig(log_format="bgl", multiline=False)


def bgl_file(data: Path, name: str) -> Path:
    """A BGL file by short name (`4k`, `2k`) or file name."""
    if name.endswith(".log"):
        return data / name
    if name == "2k":
        return data / "loghub_2k" / "BGL" / "BGL_2k.log"
    return data / "bgl" / f"BGL_{name}.log"


def read_labelled(path: Path) -> tuple[list[str], list[bool]]:
    """(lines without their label column, is-alert flags)."""
    lines: list[str] = []
    alerts: list[bool] = []
    for raw in path.read_text(errors="replace").splitlines():
        if not raw.strip():
            continue
        label, rest = strip_bgl_label(raw)
        lines.append(rest)
        alerts.append(label != "-")
    return lines, alerts


@dataclass
class ScanOutcome:
    """What one scan produced: anomalies, final incidents and the time span covered."""

    lines: int
    anomalies: list[Anomaly]
    incidents: dict[str, Incident]
    first_time: float
    last_time: float
    days_with_lines: int


def scan(bundle: Path, lines: Sequence[str], source: str, report: Path | None = None) -> ScanOutcome:
    """Scan lines through the pipeline, collecting anomalies and the final incident states."""
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(parser=PARSER))
    times: list[float] = []
    collector = None
    if report is not None:
        from agent.report import ReportCollector

        files = pipe.bundle.manifest["files"]
        sample = pipe.bundle.read_json("score_sample.json")["scores"] if "score_sample.json" in files else []
        collector = ReportCollector(sample)
    report_collector = collector

    def observe(r: LineResult) -> None:
        times.append(r.line.time)
        if report_collector is not None:
            report_collector.observe(r.line, r.score)

    pipe.observers.append(observe)
    now = time.time()
    outputs: list[Any] = []
    for start in range(0, len(lines), 4096):
        outputs += pipe.process([Record(x, source=source) for x in lines[start : start + 4096]], now)
    outputs += pipe.close(now)
    anomalies = [o for o in outputs if isinstance(o, Anomaly)]
    incidents: dict[str, Incident] = {}
    for o in outputs:
        if isinstance(o, Incident):
            incidents[o.incident_id] = o
    if collector is not None and report is not None:
        for a in anomalies:
            collector.add_anomaly(a)
        for inc in incidents.values():
            collector.add_incident(inc)
        collector.write_html(report, title=f"logdetect scan of {source}")
    finite = [t for t in times if math.isfinite(t)]
    days = {datetime.fromtimestamp(t, UTC).date() for t in finite}
    return ScanOutcome(
        pipe.lines, anomalies, incidents, min(finite, default=0.0), max(finite, default=0.0), len(days)
    )


def measure(bundle: Path, path: Path, report: Path | None) -> dict[str, Any]:
    """Alerts grouped into incidents, incidents per day and on normal lines, for one file."""
    lines, alerts = read_labelled(path)
    full = scan(bundle, lines, path.name, report)
    by_line = {a.line.line.line_no: a.incident_id for a in full.anomalies}
    alert_numbers = [i + 1 for i, is_alert in enumerate(alerts) if is_alert]
    grouped_alerts = sum(1 for n in alert_numbers if by_line.get(n))
    incidents_with_alerts = {by_line[n] for n in alert_numbers if by_line.get(n)}
    normal_lines = [x for x, is_alert in zip(lines, alerts, strict=True) if not is_alert]
    normal = scan(bundle, normal_lines, path.name + " (normal lines only)")
    span_days = max((normal.last_time - normal.first_time) / 86400.0, 1.0)
    return {
        "file": path.name,
        "lines": full.lines,
        "alert_lines": len(alert_numbers),
        "anomalies": len(full.anomalies),
        "incidents": len(full.incidents),
        "incidents_with_alerts": len(incidents_with_alerts),
        "alert_lines_in_incident": grouped_alerts,
        "alert_fraction_in_incident": grouped_alerts / len(alert_numbers) if alert_numbers else 0.0,
        "alert_lines_per_incident": grouped_alerts / max(1, len(incidents_with_alerts)),
        "normal_lines": normal.lines,
        "normal_incidents": len(normal.incidents),
        "normal_span_days": span_days,
        "normal_days_with_lines": normal.days_with_lines,
        "normal_incidents_per_span_day": len(normal.incidents) / span_days,
        "normal_incidents_per_active_day": len(normal.incidents) / max(1, normal.days_with_lines),
        "normal_severities": _severities(normal.incidents.values()),
        "severities": _severities(full.incidents.values()),
    }


def _severities(incidents: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for inc in incidents:
        out[inc.severity.name.lower()] = out.get(inc.severity.name.lower(), 0) + 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Train on the BGL training files, measure incident quality on each test file."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train", default="4k,6k,8k,10k,12k")
    parser.add_argument("--test", default="14k,16k,2k")
    parser.add_argument("--models", default="isolation_forest")
    parser.add_argument("--report", type=Path, help="write the HTML report of the first test file here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from trainer.train import TrainOptions, train

    records: list[Record] = []
    keep: list[bool] = []
    for name in args.train.split(","):
        path = bgl_file(args.data, name)
        lines, alerts = read_labelled(path)
        records += [Record(x, source=path.name) for x in lines]
        keep += [not a for a in alerts]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        started = time.monotonic()
        result = train(
            records,
            TrainOptions(output=bundle, parser=PARSER, models=tuple(args.models.split(",")), progress=False),
            keep_line=lambda i: keep[i],
        )
        train_secs = time.monotonic() - started
        for k, name in enumerate(args.test.split(",")):
            rows.append(measure(bundle, bgl_file(args.data, name), args.report if k == 0 else None))
    summary = {
        "train_files": args.train,
        "train_lines": result.train_lines,
        "models": result.models,
        "train_seconds": round(train_secs, 1),
        "results": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    models = ", ".join(result.models)
    print(f"trained {models} on {result.train_lines:,} normal lines of BGL {args.train} ({train_secs:.0f}s)")
    header = ("file", "lines", "alerts", "anom", "incid", "w/alert", "alerts in inc", "alerts/inc")
    widths = (12, 7, 6, 6, 6, 7, 14, 10)
    pairs = enumerate(zip(header, widths, strict=True))
    head = " ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w) in pairs)
    print(head + f" | {'normal-only: incid':>18} {'/span day':>9} {'/active day':>11}")
    for r in rows:
        cells = (
            f"{r['file']:<12}", f"{r['lines']:>7,}", f"{r['alert_lines']:>6,}", f"{r['anomalies']:>6,}",
            f"{r['incidents']:>6,}", f"{r['incidents_with_alerts']:>7,}",
            f"{r['alert_fraction_in_incident']:>14.1%}", f"{r['alert_lines_per_incident']:>10.1f}",
        )  # fmt: skip
        print(
            " ".join(cells) + f" | {r['normal_incidents']:>18,} {r['normal_incidents_per_span_day']:>9.2f} "
            f"{r['normal_incidents_per_active_day']:>11.2f}"
        )
    if args.report:
        print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
