"""Header-parser coverage on the 15 Loghub-2k systems.

For each `<S>/<S>_2k.log` under the data directory: the format `detect_format` picks from the
first 20 lines, the share of lines with a timestamp and with a level, the share whose extracted
message equals the `Content` column of `<S>_2k.log_structured.csv` (Loghub's ground-truth
header split), how often our level agrees with the CSV's `Level` column where it has one, and
parse throughput on one core.

    .venv/bin/python bench/parser_coverage.py [--data DIR] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.multiline import Stitcher  # noqa: E402
from agent.parsing import LineParser, ParserConfig, detect_format, parse_level  # noqa: E402
from agent.types import Level, Record  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data")) / "loghub_2k"
SYSTEMS = (
    "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux",
    "Mac", "OpenSSH", "OpenStack", "Proxifier", "Spark", "Windows", "Zookeeper",
)  # fmt: skip
# The CSV "Level" column holds something else for these systems (Linux: the host name).
_NOT_A_LEVEL_COLUMN = {"Linux"}


@dataclass(frozen=True)
class Coverage:
    """How much of one Loghub system's lines the header parser reads, and how fast."""

    system: str
    format: str
    lines: int
    timestamp: float  # share of lines with a timestamp
    level: float  # share of lines with a level other than UNKNOWN
    message_match: float  # share whose message equals the ground-truth Content
    level_agreement: float | None  # share whose level equals the CSV Level column's
    lines_per_s: float


def read_lines(path: Path) -> list[str]:
    r"""The raw lines, CRLF or LF, without their line ends (no other splitting: a lone \r or
    a form feed inside a line stays where it is)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_truth(path: Path) -> list[dict[str, str]]:
    """The rows of a Loghub structured CSV."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def measure(system: str, data: Path = DEFAULT_DATA, min_seconds: float = 0.2) -> Coverage:
    """Parse one system's 2k lines in auto mode and compare with its structured CSV."""
    directory = data / system
    lines = read_lines(directory / f"{system}_2k.log")
    truth = read_truth(directory / f"{system}_2k.log_structured.csv")
    fmt = detect_format(lines[:20])
    # auto mode, as the agent runs by default: the detected format first, the others as fallback
    parser = LineParser(ParserConfig(log_format="auto", assume_year=2005), sample=lines[:20])
    assert parser.format == fmt
    records = [Record(line, source=system) for line in lines]
    parsed = [parser.parse(record, number) for number, record in enumerate(records, 1)]

    n = len(parsed)
    with_ts = sum(1 for p in parsed if p.timestamp is not None)
    with_level = sum(1 for p in parsed if p.level is not Level.UNKNOWN)
    pairs = list(zip(parsed, truth, strict=True))
    matches = sum(1 for p, row in pairs if p.message.strip() == row["Content"].strip())
    agreement = None
    if "Level" in truth[0] and system not in _NOT_A_LEVEL_COLUMN:
        agree = sum(1 for p, row in pairs if p.level is parse_level(row["Level"]))
        agreement = agree / n

    # CPU time of this process, best round of many (each round parses all lines): other
    # processes on a shared machine then barely move the figure.
    rate = _rate(parser, records, min_seconds)
    return Coverage(
        system=system,
        format=fmt,
        lines=n,
        timestamp=with_ts / n,
        level=with_level / n,
        message_match=matches / max(len(truth), 1),
        level_agreement=agreement,
        lines_per_s=rate,
    )


def _rate(parser: LineParser, records: list[Record], min_seconds: float) -> float:
    best, deadline = float("inf"), time.perf_counter() + min_seconds
    parse = parser.parse
    while True:
        start = time.process_time()
        for record in records:
            parse(record)
        best = min(best, time.process_time() - start)
        if time.perf_counter() >= deadline:
            break
    return len(records) / best


def measure_wrapped(data: Path = DEFAULT_DATA, min_seconds: float = 0.2) -> dict[str, float]:
    """Lines per CPU-second for the shapes Loghub lacks, built from Loghub lines: Fluent Bit
    json_lines around Hadoop lines, Vector console JSON around Spark messages, and RFC 5424
    around OpenSSH messages."""
    hadoop = read_lines(data / "Hadoop" / "Hadoop_2k.log")
    spark = read_truth(data / "Spark" / "Spark_2k.log_structured.csv")
    ssh = read_truth(data / "OpenSSH" / "OpenSSH_2k.log_structured.csv")
    shapes = {
        "json (Fluent Bit, ISO line inside)": [
            json.dumps({"date": 1700000000.0 + i, "log": line, "stream": "stdout"})
            for i, line in enumerate(hadoop)
        ],
        "json (Vector console)": [
            json.dumps(
                {
                    "message": row["Content"],
                    "timestamp": "2026-11-23T10:00:00.123Z",
                    "level": row["Level"],
                    "host": "node-1",
                    "kubernetes": {"pod_name": "spark-exec-1", "namespace": "jobs"},
                }
            )
            for row in spark
        ],
        "rfc5424": [
            f"<38>1 2026-11-23T10:00:{i % 60:02d}.{i:06d}Z LabSZ sshd {row['Pid']} - - {row['Content']}"
            for i, row in enumerate(ssh)
        ],
    }
    rates = {}
    for name, lines in shapes.items():
        parser = LineParser(ParserConfig(), sample=lines[:20])
        rates[f"{name} [{parser.format}]"] = _rate(parser, [Record(line) for line in lines], min_seconds)
    return rates


def measure_stitcher(data: Path = DEFAULT_DATA, min_seconds: float = 0.2) -> float:
    """Lines per CPU-second through the multiline Stitcher on all 15 systems' lines (best round)."""
    records = [
        Record(line, source=system)
        for system in SYSTEMS
        for line in read_lines(data / system / f"{system}_2k.log")
    ]
    best, deadline = float("inf"), time.perf_counter() + min_seconds
    while True:
        stitcher = Stitcher()
        start = time.process_time()
        feed = stitcher.feed
        for record in records:
            feed(record)
        stitcher.flush()
        best = min(best, time.process_time() - start)
        if time.perf_counter() >= deadline:
            break
    return len(records) / best


def table(rows: list[Coverage]) -> str:
    """The coverage rows as a text table."""
    head = f"{'system':<10} {'format':<10} {'lines':>5} {'ts %':>6} {'level %':>7} {'msg=Content %':>13}"
    head += f" {'level=CSV %':>11} {'lines/s':>9}"
    out = [head, "-" * len(head)]
    for r in rows:
        agreement = "n/a" if r.level_agreement is None else f"{100 * r.level_agreement:.1f}"
        out.append(
            f"{r.system:<10} {r.format:<10} {r.lines:>5} {100 * r.timestamp:>6.1f} {100 * r.level:>7.1f}"
            f" {100 * r.message_match:>13.1f} {agreement:>11} {r.lines_per_s:>9,.0f}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print parser coverage for every Loghub-2k system."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the loghub_2k directory")
    ap.add_argument("--json", action="store_true", help="one JSON object per system instead of a table")
    ap.add_argument("--seconds", type=float, default=0.5, help="minimum timing per system")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: {args.data} is not a directory (set --data or LOGDETECT_DATA)", file=sys.stderr)
        return 2
    rows = [measure(system, args.data, args.seconds) for system in SYSTEMS]
    wrapped = measure_wrapped(args.data, args.seconds)
    stitcher_rate = measure_stitcher(args.data, args.seconds)
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)))
        print(json.dumps({"wrapped_lines_per_s": wrapped, "stitcher_lines_per_s": stitcher_rate}))
    else:
        print(table(rows))
        print()
        for name, rate in wrapped.items():
            print(f"{name:<48} {rate:>9,.0f} lines/s")
        print(f"{'multiline Stitcher, all 30,000 lines':<48} {stitcher_rate:>9,.0f} lines/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
