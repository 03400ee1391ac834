"""Headers learnt from the data: extra columns before a known header, and headers of columns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.parsing import LineParser, ParserConfig, detect_format
from agent.types import Level, Record
from tests.unit.test_templates import _bench


def _structured(data_dir: Path, system: str) -> tuple[list[str], list[str]]:
    path = data_dir / "loghub_2k" / system / f"{system}_2k.log_structured_corrected.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["Content"] for r in rows], [r["EventTemplate"] for r in rows]


def _raw(data_dir: Path, system: str) -> list[str]:
    return (data_dir / "loghub_2k" / system / f"{system}_2k.log").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(("system", "inner"), [("Linux", "syslog"), ("HDFS", "hdfs"), ("OpenStack", "openstack")])
def test_known_header_after_extra_columns(data_dir: Path, system: str, inner: str) -> None:
    """Epoch seconds, a date and a host before a known header: the columns are header fields,
    the time is the epoch column, and the message is exactly the one without the columns."""
    lines = _bench().prefix_lines(_raw(data_dir, system))
    fmt = detect_format(lines[:200])
    assert fmt == f"columns:3+{inner}"
    parser = LineParser(ParserConfig(log_format=fmt), lines[:200])
    contents, _ = _structured(data_dir, system)
    for i, (line, content) in enumerate(zip(lines, contents, strict=True)):
        p = parser.parse(Record(line))
        assert p.message.split() == content.split(), line
        assert [k for k, _ in p.fields[:3]] == ["col1", "col2", "col3"]
        assert p.timestamp == 1_700_000_000 + 7 * i


def test_prefixed_lines_group_like_plain_ones(data_dir: Path, tmp_path: Path) -> None:
    """`logdetect templates` on prefixed lines: the same GA as on the plain file (issue 12)."""
    bench = _bench()
    for system in ("Linux", "Proxifier", "Mac"):
        _, truth = _structured(data_dir, system)
        plain, _ = bench.templates_command(data_dir / "loghub_2k" / system / f"{system}_2k.log")
        shifted = tmp_path / f"{system}.log"
        shifted.write_text("\n".join(bench.prefix_lines(_raw(data_dir, system))) + "\n", encoding="utf-8")
        prefixed, _ = bench.templates_command(shifted)
        ga_plain = bench.grouping_accuracy(truth, plain)
        assert abs(bench.grouping_accuracy(truth, prefixed) - ga_plain) <= 0.01, system


def test_a_header_of_columns_only(data_dir: Path) -> None:
    """No known header at all: epoch, host and level columns by position statistics."""
    contents, _ = _structured(data_dir, "OpenSSH")
    lines = [
        f"{1_700_000_000 + 3 * i} worker-{i % 5} {'INFO' if i % 3 else 'WARN'} {c}" for i, c in enumerate(contents)
    ]
    fmt = detect_format(lines[:200])
    assert fmt == "columns:3"
    parser = LineParser(ParserConfig(log_format=fmt), lines[:200])
    first = parser.parse(Record(lines[0]))
    assert (first.timestamp, first.level, first.message) == (1_700_000_000.0, Level.WARN, contents[0])
    assert detect_format(contents[:200]) == "raw"  # bare messages: nothing taken as header


def test_columns_format_names() -> None:
    """`columns:N[+format]` names are valid formats; malformed ones are ConfigErrors."""
    assert ParserConfig(log_format="columns:2+syslog").log_format == "columns:2+syslog"
    assert ParserConfig(log_format="columns:4").log_format == "columns:4"
    for bad in ("columns:0", "columns:2+nope", "columns:x"):
        with pytest.raises(ConfigError, match="unknown log format"):
            ParserConfig(log_format=bad)
