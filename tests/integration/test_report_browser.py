"""The HTML report: bounded collection, bad times, and a real headless Chromium rendering it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_TIMEOUT, REPO, TEST_DEPS_HINT, DemoRun, need
from log_fixtures import bgl_lines

from agent.explain import Explainer
from agent.incidents import IncidentGrouper
from agent.report import MAX_BUCKETS, ReportCollector
from agent.types import Anomaly, Level, LineContext, ParsedLine, TemplatedLine, Verdict
from trainer.profile import build_profile

T0 = 1_762_054_935.0
CHROMIUM_TIMEOUT = 60
# Where the layout test copies its screenshots, when set (to look at them; CI need not).
SCREENSHOTS = os.environ.get("LOGDETECT_SCREENSHOTS")


def line_at(t: float, template_id: int = 1, **kw: object) -> TemplatedLine:
    """A templated web-1 line at time `t`."""
    parsed = ParsedLine("web-1: GET /api/orders/1", "GET /api/orders/1", t, Level.INFO, "web-1")
    return TemplatedLine(parsed, template_id, "GET /api/orders/<*>", ("1",), 1, False, t, **kw)  # type: ignore[arg-type]


def bgl_report(data_dir: Path) -> ReportCollector:
    """Train a profile on BGL_4k's normal lines; scan BGL_8k flagging what the facts call notable."""
    vocab: dict[str, int] = {}
    train = [tl for lab, tl in bgl_lines(data_dir / "bgl" / "BGL_4k.log", vocab, None) if lab == "-"]
    profile = build_profile(train)
    known = {int(k) for k in profile["templates"]}
    explainer = Explainer(profile, {v: k for k, v in vocab.items()})
    grouper = IncidentGrouper()
    # Stand-in training scores: the fraction of each normal line's template among training lines.
    freq = {int(k): v["frequency"] for k, v in profile["templates"].items()}
    collector = ReportCollector([1.0 - freq.get(tl.template_id, 0.0) for tl in train])
    for _, tl in bgl_lines(data_dir / "bgl" / "BGL_8k.log", vocab, known):
        explainer.observe(tl)
        ctx = LineContext(tl, np.zeros(1, dtype=np.float32), (tl.token,), (int(tl.line.level),))
        notable = explainer.is_notable(ctx)
        score = 1.0 - freq.get(tl.template_id, 0.0)
        collector.observe(tl, score)
        if notable:
            a = Anomaly(tl, score, Verdict.WATCH, (), explainer.explain(ctx, []))
            iid, events = grouper.add(a)
            collector.add_anomaly(replace(a, incident_id=iid))
            for e in events:
                collector.add_incident(e)
    for e in grouper.close():
        collector.add_incident(e)
    return collector


def chromium(report: Path, tmp: Path) -> tuple[str, str, Path]:
    """Load the page in headless Chromium: (DOM after scripts ran, console log, screenshot)."""
    exe = shutil.which("chromium")
    need(exe is not None, f"chromium is not installed: {TEST_DEPS_HINT}")
    assert exe is not None
    flags = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}", "--window-size=1400,2000", "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT
    )
    png = tmp / f"{report.stem}.png"
    shot = subprocess.run(
        [*flags, f"--screenshot={png}", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT,
    )
    assert dom.returncode == 0 and shot.returncode == 0, dom.stderr[-2000:] + shot.stderr[-2000:]
    return dom.stdout, dom.stderr + shot.stderr, png


def console_errors(log: str) -> list[str]:
    """Console messages of the page: Chromium logs them all as INFO:CONSOLE (console.error and
    uncaught exceptions alike), and the report's script writes none, so any one is an error."""
    return [row for row in log.splitlines() if ":CONSOLE" in row or "Uncaught" in row]


def test_bgl_report_renders_in_chromium(data_dir: Path, tmp_path: Path):
    """The report for a BGL file draws its three charts with no console errors and no network."""
    collector = bgl_report(data_dir)
    report = tmp_path / "bgl_report.html"
    collector.write_html(report, title="logdetect scan BGL_8k.log")
    page = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must not load anything"
    dom, log, png = chromium(report, tmp_path)
    assert 'id="charts-ready"' in dom
    assert dom.count('class="incident-span"') >= 1
    assert dom.count('class="bar-new"') >= 1  # BGL_8k has templates BGL_4k never had
    assert dom.count("<svg") == 3
    assert not console_errors(log), console_errors(log)
    assert png.stat().st_size > 20_000
    data = collector.data()
    assert data["timeline"]["incidents"] and data["histogram"]["train"] and data["histogram"]["scan"]


def test_empty_scan_report_renders(tmp_path: Path):
    """A report of a scan without incidents renders in Chromium without console errors."""
    report = tmp_path / "empty.html"
    ReportCollector().write_html(report)
    assert "No incidents" in report.read_text()
    dom, log, png = chromium(report, tmp_path)
    assert 'id="charts-ready"' in dom and "No timed lines in this scan." in dom
    assert not console_errors(log)
    assert png.stat().st_size > 5_000


def test_jumping_and_backwards_times_keep_small_buckets():
    """A day of lines, then one line 30 years later, then lines going backwards: the buckets stay
    one minute wide, the jump is a break, and nothing is lost."""
    collector = ReportCollector()
    for k in range(1440 * 4):  # one line every 15 s for a day
        collector.observe(line_at(T0 + k * 15), 0.1)
    collector.observe(line_at(T0 + 30 * 365 * 86400), 0.9)
    for k in range(100):
        collector.observe(line_at(T0 - k * 30), 0.2)
    timeline = collector.data()["timeline"]
    assert timeline["bucket_secs"] == 60.0
    assert len(timeline["breaks"]) == 1
    assert sum(p["lines"] for p in timeline["points"]) == 1440 * 4 + 1 + 100
    xs = [p["x"] for p in timeline["points"]]
    assert xs == sorted(xs)


def test_collection_is_bounded():
    """A month of lines at one per 10 s and 20k templates: buckets, templates and samples capped."""
    collector = ReportCollector(training_scores=[float(i) for i in range(100_000)])
    for k in range(260_000):
        collector.observe(line_at(T0 + k * 10, template_id=k % 20_000), float(k % 97))
    data = collector.data()
    assert len(data["timeline"]["points"]) <= MAX_BUCKETS
    assert sum(p["lines"] for p in data["timeline"]["points"]) == 260_000
    assert len(data["templates"]) <= 80
    assert len(collector._scores.values) <= 20_000 and len(collector._training) <= 20_000
    assert json.loads(json.dumps(data))["histogram"]["scan_n"] == 260_000


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores_and_times_are_skipped(bad: float, tmp_path: Path):
    """NaN or infinite scores and times are left out of the report instead of breaking it."""
    collector = ReportCollector(training_scores=[bad, 0.5])
    collector.observe(line_at(T0), bad)
    collector.observe(replace(line_at(T0), time=bad), 0.3)
    collector.write_html(tmp_path / "r.html")
    assert collector.untimed == 1 and collector.lines == 2


# Appended to a copy of a report: after the charts are drawn, every text box of every chart and
# every anomaly marker, measured by the browser, written into the page for --dump-dom to return.
LAYOUT_PROBE = """<script>
(function () {
  var charts = [];
  document.querySelectorAll(".chart svg").forEach(function (svg) {
    var frame = svg.getBoundingClientRect(), boxes = [];
    svg.querySelectorAll("text, circle.marker").forEach(function (n) {
      var r = n.getBoundingClientRect();
      if (r.width > 0 && r.height > 0) {
        boxes.push({tag: n.tagName, cls: n.getAttribute("class") || "", text: n.textContent,
                    x0: r.left, y0: r.top, x1: r.right, y1: r.bottom});
      }
    });
    charts.push({id: svg.parentNode.id, frame: [frame.left, frame.top, frame.right, frame.bottom],
                 boxes: boxes});
  });
  var out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify(charts);
  document.body.appendChild(out);
})();
</script>"""
SLACK = 0.5  # px: boxes that merely touch do not overlap


def measured_layout(report: Path, tmp: Path) -> tuple[list[dict[str, object]], Path]:
    """The text and marker boxes of each chart as Chromium lays them out, and a screenshot."""
    probe = tmp / f"{report.stem}-probe.html"
    probe.write_text(report.read_text().replace("</body>", LAYOUT_PROBE + "</body>"))
    dom, log, png = chromium(probe, tmp)
    assert not console_errors(log), console_errors(log)
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert found is not None, "the layout probe did not run"
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1))), png


def overlaps(boxes: list[dict[str, object]]) -> list[str]:
    """Pairs of boxes that overlap: text on text, and text on an anomaly marker."""
    bad = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if a["tag"] != "text" and b["tag"] != "text":
                continue  # markers may overlap one another
            w = min(a["x1"], b["x1"]) - max(a["x0"], b["x0"])  # type: ignore[operator]
            h = min(a["y1"], b["y1"]) - max(a["y0"], b["y0"])  # type: ignore[operator]
            if w > SLACK and h > SLACK:
                bad.append(f"{a['tag']} {a['text']!r} overlaps {b['tag']} {b['text']!r}")
    return bad


def scan_report(data_dir: Path, system: str, tmp: Path) -> Path:
    """Train on the first half of a Loghub 2k file (no torch), scan the whole file with --report."""
    lines = (data_dir / "loghub_2k" / system / f"{system}_2k.log").read_bytes().splitlines(keepends=True)
    train, whole = tmp / f"{system}-train.log", tmp / f"{system}.log"
    train.write_bytes(b"".join(lines[:1000]))
    whole.write_bytes(b"".join(lines))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "agent.cli"]
    model = tmp / f"{system}-model"
    subprocess.run([*cli, "train", "--input", str(train), "--output", str(model), "--models",
                    "isolation_forest,novel_set", "--quiet"], check=True, env=env, capture_output=True, timeout=300)
    report = tmp / f"{system.lower()}_report.html"
    subprocess.run([*cli, "scan", "--model", str(model), "--input", str(whole), "--report", str(report)],
                   check=True, env=env, capture_output=True, timeout=300)  # fmt: skip
    return report


def check_layout(report: Path, tmp: Path) -> None:
    """No label overlaps another or a marker; timeline labels stay in the chart and spread."""
    charts, png = measured_layout(report, tmp)
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(SCREENSHOTS) / f"{report.stem}.png")
    assert [c["id"] for c in charts] == ["timeline", "templates", "scores"]
    for chart in charts:
        assert not overlaps(chart["boxes"]), (chart["id"], overlaps(chart["boxes"]))  # type: ignore[arg-type]
    timeline = charts[0]
    left, top, right, bottom = timeline["frame"]  # type: ignore[misc]
    texts = [b for b in timeline["boxes"] if b["tag"] == "text"]  # type: ignore[union-attr]
    for b in texts:  # nothing drawn outside the chart
        assert left - SLACK <= b["x0"] and b["x1"] <= right + SLACK and top - SLACK <= b["y0"], b
        assert b["y1"] <= bottom + SLACK, b
    ticks = [b for b in texts if b["cls"] == "tick"]
    if len(ticks) > 1:  # the time axis is labelled across its width, not piled up at one end
        assert max(b["x1"] for b in ticks) - min(b["x0"] for b in ticks) > 0.6 * (right - left), ticks


@pytest.mark.parametrize("system", ["Zookeeper", "Linux"])
def test_timeline_labels_never_overlap_on_real_logs(system: str, data_dir: Path, tmp_path: Path):
    """Zookeeper (days of lines with long silences) and Linux (syslog, weeks, bursts): the browser
    measures every label of the charts; none overlaps another label or an anomaly marker."""
    check_layout(scan_report(data_dir, system, tmp_path), tmp_path)


@pytest.mark.timeout(DEMO_TIMEOUT + 120)
def test_timeline_labels_never_overlap_on_the_demo(demo_run: DemoRun, tmp_path: Path):
    """The demo's incident day: one dense day, four incidents close to the markers."""
    report = tmp_path / "demo_report.html"
    shutil.copy(demo_run.workdir / "report.html", report)
    check_layout(report, tmp_path)
