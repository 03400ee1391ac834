"""Lines whose format has no year: the views show their dates without one, and the list of such
formats (clock.YEARLESS_FORMATS) matches what the parsers actually do."""

from __future__ import annotations

from pathlib import Path

from agent.parsing import LineParser, ParserConfig
from agent.parsing.clock import YEARLESS_FORMATS, year_is_known
from agent.types import Record


def test_yearless_formats_are_the_ones_whose_year_is_assumed(data_dir: Path):
    """Every Loghub system's lines, parsed twice with two assumed years: the timestamps move
    exactly for the formats listed as yearless."""
    moved: dict[str, bool] = {}
    for log in sorted((data_dir / "loghub_2k").glob("*/*_2k.log")):
        lines = log.read_text(errors="replace").splitlines()[:50]
        fmt = LineParser(ParserConfig(), lines).format
        times = []
        for year in (1999, 2001):
            parser = LineParser(ParserConfig(log_format=fmt, assume_year=year))
            times.append([parser.parse(Record(line, log.name), n).timestamp for n, line in enumerate(lines, 1)])
        if any(t is not None for t in times[0]):
            moved[fmt] = moved.get(fmt, False) or times[0] != times[1]
    assert {f for f, m in moved.items() if m} == YEARLESS_FORMATS & set(moved)
    assert {"syslog", "android", "proxifier"} <= set(moved)  # Linux/OpenSSH/Mac, Android, Proxifier


def test_year_is_known_unless_guessed():
    """Syslog's year is a guess unless one is configured; ISO and HDFS lines carry theirs."""
    assert not year_is_known("syslog")
    assert year_is_known("syslog", assume_year=2005)
    assert year_is_known("iso") and year_is_known("hdfs")


def test_a_syslog_line_is_shown_without_a_guessed_year():
    """The text view shows a syslog line's date as the line writes it, and its file as entity."""
    import numpy as np

    from agent.explain import Explainer
    from agent.render import render_anomaly
    from agent.types import Anomaly, LineContext, TemplatedLine, Verdict

    raw = "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0"
    parser = LineParser(ParserConfig(log_format="syslog"))
    parsed = parser.parse(Record(raw, "Linux_2k.log"), 1)
    assert parsed.timestamp is not None and not year_is_known(parser.format)
    line = TemplatedLine(parsed, 1, parsed.message, (), 0, True, parsed.timestamp)
    explainer = Explainer({"templates": {}, "totals": {"lines": 0}}, {})
    ctx = LineContext(line, np.zeros(1, dtype=np.float32), (0,), (int(parsed.level),))
    block = render_anomaly(Anomaly(line, 1.0, Verdict.WATCH, (), explainer.explain(ctx, [])), False, (), False)
    assert "Timestamp: Jun 14 15:16:01" in block
    assert "Entity:    Linux_2k.log" in block and "Component: sshd" in block
