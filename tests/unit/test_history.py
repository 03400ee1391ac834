"""Training on a history that holds incidents (issue 13): real BGL lines, alerts included."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest

from agent.parsing import ParserConfig
from agent.parsing.records import parse_records
from agent.templates import MinerConfig, learn_templates
from agent.types import Level
from tests.conftest import need
from trainer.eval.bgl_data import read_labelled
from trainer.history import HistoryOptions, HistoryReport, find_suspects

PARSER = ParserConfig(log_format="bgl", entity="stream", multiline=False)


@functools.cache
def _history(data_dir: Path, names: tuple[str, ...]) -> tuple[HistoryReport, list[bool], list[int]]:
    paths = [data_dir / "bgl" / n for n in names]
    need(all(p.is_file() for p in paths), f"BGL files {names} not found")
    labelled = read_labelled(paths)
    parsed, _ = parse_records(labelled.records, PARSER)
    miner = learn_templates((p.message for p in parsed), MinerConfig())
    ids = [m.template_id if (m := miner.match(p.message)) is not None else -1 for p in parsed]
    texts = {t: miner.template(t) or "" for t in set(ids) if t >= 0}
    return find_suspects(parsed, ids, texts, HistoryOptions()), list(labelled.labels), ids


def test_incident_templates_are_set_aside_and_routine_ones_kept(data_dir: Path) -> None:
    """BGL alert templates are held back; templates recurring on many days are not."""
    report, labels, ids = _history(data_dir, ("BGL_4k.log", "BGL_6k.log"))
    assert report.judged and report.bucket == "day"
    texts = {s.template for s in report.suspects}
    assert any("data TLB error interrupt" in t for t in texts)  # the largest alert category in the files
    # Routine templates that recur on many days stay normal, however many lines they have.
    assert not any("generating core" in t or t.startswith("CE sym") for t in texts)
    # Most alert lines of the history are held back; every suspect is severe and says why.
    held = report.suspect_ids
    alert_ids = [t for t, a in zip(ids, labels, strict=True) if a]
    assert sum(t in held for t in alert_ids) / len(alert_ids) > 0.9
    for s in report.suspects:
        assert s.level in (Level.FATAL.name, Level.ERROR.name) and s.reasons and s.bursts
        assert sum(b.lines for b in s.bursts) == s.lines
    lines = report.summary_lines()
    assert lines[0].startswith("incidents found in your history") and lines[1].startswith("  suspect period ")
    assert any(line.startswith("  held back as suspect: ") for line in lines)


def test_a_crash_dump_is_one_incident_with_its_detail_learned(data_dir: Path) -> None:
    """A crash's register dump (dozens of severe templates, one line each per node, right after
    `data storage interrupt`) is one incident: the opening template is held back, the dump's
    templates are listed as its detail and learned; BGL labels every dump line normal."""
    report, labels, ids = _history(data_dir, ("BGL_4k.log", "BGL_6k.log"))
    assert len(report.details) >= 10
    held = {s.template for s in report.suspects}
    assert all(d.opener in held and d.following >= 0.8 * d.lines for d in report.details)
    assert any("data storage interrupt" in t for t in held)
    detail_ids = {d.template_id for d in report.details}
    assert detail_ids.isdisjoint(report.suspect_ids)
    # Labels only to check: no alert line is among the learned detail, and every alert line is held back.
    assert not any(a for t, a in zip(ids, labels, strict=True) if t in detail_ids)
    assert all(t in report.suspect_ids for t, a in zip(ids, labels, strict=True) if a)
    assert any("detail of those incidents" in line for line in report.summary_lines())
    stored = report.to_json()
    assert {d["template_id"] for d in stored["details"]} == detail_ids  # type: ignore[index,union-attr]


def test_suspect_periods_are_listed_and_cover_the_real_alert_spans(data_dir: Path, tmp_path: Path) -> None:
    """The suspect periods partition the held-back lines; against the labels they cover every alert
    span of BGL 4k+6k. The HTML report lists them as "incidents found in your history"."""
    import json

    import numpy as np

    from agent.report import ReportCollector
    from trainer.eval.history_check import compare

    report, labels, _ = _history(data_dir, ("BGL_4k.log", "BGL_6k.log"))
    periods = report.periods
    assert sum(p.lines for p in periods) == report.held_lines
    assert all(a.end < b.start for a, b in itertools.pairwise(periods))
    tlb = max(periods, key=lambda p: p.lines)
    assert "data TLB error interrupt" in tlb.templates[0][0] and "data TLB error interrupt" in tlb.describe()
    assert any(line.startswith("  suspect period ") for line in report.summary_lines())
    parsed, _ = parse_records(read_labelled([data_dir / "bgl" / n for n in ("BGL_4k.log", "BGL_6k.log")]).records,
                              PARSER)
    check = compare(report, np.array([p.timestamp or 0.0 for p in parsed]), np.array(labels))
    assert check.listed_periods == len(periods) and check.alert_spans_found == check.alert_spans
    assert check.listed_periods_normal < check.listed_periods / 2
    page = tmp_path / "r.html"
    ReportCollector(history=json.loads(json.dumps(report.to_json()))).write_html(page)
    text = page.read_text()
    assert "Incidents found in your history" in text and "data TLB error interrupt" in text
    assert f"{len(periods)} suspect periods" in text


def test_a_short_history_is_not_judged(data_dir: Path) -> None:
    """Eight hours of history cannot show what recurs: nothing is set aside, and the note says why."""
    path = data_dir / "bgl" / "BGL_4k.log"
    need(path.is_file(), "BGL_4k.log not found")
    labelled = read_labelled([path])
    parsed, _ = parse_records(labelled.records, PARSER)
    first = parsed[0].timestamp or 0.0
    parsed = [p for p in parsed if (p.timestamp or 0.0) < first + 8 * 3600]  # eight hours of history
    assert len(parsed) > 5
    ids = [0] * len(parsed)
    report = find_suspects(parsed, ids, {0: "x"}, HistoryOptions())
    assert not report.judged and not report.suspects and "needed" in report.note


def test_train_leaves_suspects_out_of_the_vocabulary(data_dir: Path, tmp_path: Path) -> None:
    """The bundle's vocabulary leaves suspects out; history.json and the manifest record them."""
    from agent.bundle import load_bundle
    from trainer.train import TrainOptions, train

    path = data_dir / "bgl" / "BGL_4k.log"
    need(path.is_file(), "BGL_4k.log not found")
    labelled = read_labelled([path])
    result = train(labelled.records, TrainOptions(output=tmp_path / "b", parser=PARSER,
                                                  models=("isolation_forest",), progress=False))
    assert result.history is not None and result.history.suspects
    bundle = load_bundle(result.bundle)
    history = bundle.read_json("history.json")
    known = {int(t) for t in bundle.read_json("vocab.json")["template_to_token"]}
    assert {s["template_id"] for s in history["suspects"]}.isdisjoint(known)
    assert bundle.manifest["training"]["held_back_as_suspect"]["lines"] == result.history.held_lines


@pytest.mark.parametrize("enabled", [False])
def test_cleaning_can_be_turned_off(data_dir: Path, enabled: bool) -> None:
    """With the check turned off nothing is judged or held back."""
    path = data_dir / "bgl" / "BGL_4k.log"
    need(path.is_file(), "BGL_4k.log not found")
    parsed, _ = parse_records(read_labelled([path]).records, PARSER)
    report = find_suspects(parsed, [0] * len(parsed), {0: "x"}, HistoryOptions(enabled=enabled))
    assert not report.judged and report.suspects == ()


def test_train_prints_the_incidents_found_in_the_history(data_dir: Path, tmp_path: Path) -> None:
    """`logdetect train` on a history with alerts says what it held back, before any live traffic."""
    import subprocess
    import sys

    path = data_dir / "bgl" / "BGL_4k.log"
    need(path.is_file(), "BGL_4k.log not found")
    r = subprocess.run([sys.executable, "-m", "agent.cli", "train", "--input", str(path), "--output",
                        str(tmp_path / "m"), "--log-format", "bgl", "--models", "isolation_forest"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "incidents found in your history" in r.stderr
    assert "held back as suspect: 'data TLB error interrupt'" in r.stderr
    assert "  suspect period " in r.stderr
    # `scan --report` shows them in the HTML report, from the bundle's history.json.
    sample = tmp_path / "few.log"
    sample.write_text("".join(path.read_text().splitlines(keepends=True)[:50]))
    page = tmp_path / "r.html"
    r = subprocess.run([sys.executable, "-m", "agent.cli", "scan", "--model", str(tmp_path / "m"), "--input",
                        str(sample), "--report", str(page)], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    text = page.read_text()
    assert "Incidents found in your history" in text and "data TLB error interrupt" in text

