"""`logdetect scan --report report.html`: one self-contained HTML page for the operator.

The page needs no network: its charts are inline SVG drawn by a small inline script from a JSON
blob embedded in the page; the incident list is plain HTML, readable even with scripts off.
It shows

- a timeline of the line rate and the anomaly scores, with the incidents marked;
- each incident with its explanations and sample lines;
- the template histogram, templates never seen in training highlighted;
- the score distribution of the training data against the scanned file;
- the incidents `train` found in the model's own training history (the bundle's history.json).

The collector is bounded whatever the input: the timeline keeps at most `MAX_BUCKETS` buckets
(one minute wide to start with, widened when a scan spans longer), score samples are reservoirs,
templates, incidents and anomaly markers are capped. Time is drawn on a compressed axis: long
silences (a timestamp jumping years, a weekend with no logs) become a marked break instead of a
giant empty stretch, and timestamps that run backwards simply land in their own bucket.
"""

from __future__ import annotations

import html
import json
import math
import random
from bisect import bisect_left
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.render import session_reason
from agent.types import Anomaly, Explanation, Incident, SessionVerdict, TemplatedLine
from agent.wording import burst_more, clip, plural

MAX_BUCKETS = 2000
MAX_SCORE_SAMPLES = 20_000
MAX_TEMPLATES = 5000
MAX_INCIDENTS = 2000
MAX_MARKERS = 5000
MAX_EXPLANATIONS = 10
MAX_SESSIONS = 200  # session verdicts listed (the rest counted)
HISTOGRAM_BINS = 40
TEMPLATES_SHOWN = 40
DETAILED_INCIDENTS = 50  # the most severe incidents get a full section; the rest a table row
# A silence longer than this many buckets is drawn as a break, not as empty buckets.
MAX_GAP_BUCKETS = 30


def _stamp(t: float, with_year: bool = True) -> str:
    if not math.isfinite(t):
        return "?"
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S" if with_year else "%b %d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "?"


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class _Reservoir:
    """A uniform sample of at most `size` values (deterministic: a fixed seed)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seen = 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        j = self._rng.randrange(self.seen)
        if j < self.size:
            self.values[j] = value


class ReportCollector:
    """Collects what the HTML report shows while a scan runs."""

    def __init__(
        self, training_scores: Sequence[float] = (), year_known: bool = True, history: dict[str, Any] | None = None
    ) -> None:
        """`year_known` False: the log's lines carry no year (syslog), so dates show none.
        `history`: the bundle's history.json (the suspect periods found at training), if any."""
        self.year_known = year_known
        self.history = history
        train = [float(s) for s in training_scores if _finite(s)]
        stride = max(1, math.ceil(len(train) / MAX_SCORE_SAMPLES))
        self._training = train[::stride]
        self._scores = _Reservoir(MAX_SCORE_SAMPLES, seed=1)
        self._width = 60.0  # seconds per timeline bucket
        self._buckets: dict[int, list[float]] = {}  # key -> [lines, anomalies, max score]
        self._templates: dict[int, list[Any]] = {}  # tid -> [count, text, is_new]
        self._other_templates = 0
        self._incidents: dict[str, Incident] = {}
        self._dropped_incidents = 0
        self._sessions: list[SessionVerdict] = []
        self.sessions = 0  # session verdicts, listed or not
        self._explanations: dict[str, dict[str, Explanation]] = {}
        self._leading: dict[str, Anomaly] = {}
        self._markers: list[tuple[float, float, str]] = []
        self.lines = 0
        self.anomalies = 0  # anomaly events
        # Anomalous lines, as the summary's headline counts them: each incident's anomaly_count
        # (its events and the identical repeats it counted, not emitted) and the isolated events.
        self._incident_lines: dict[str, int] = {}
        self._isolated = 0
        self.untimed = 0
        self.time_from_arrival = 0
        self.new_template_lines = 0

    # ---- collecting

    def observe(self, line: TemplatedLine, score: float) -> None:
        """Count one scanned line and its ensemble score."""
        self.lines += 1
        if _finite(score):
            self._scores.add(float(score))
        if line.time_from_arrival:
            self.time_from_arrival += 1
        if line.is_new:
            self.new_template_lines += 1
        entry = self._templates.get(line.template_id)
        if entry is not None:
            entry[0] += 1
        elif len(self._templates) < MAX_TEMPLATES:
            self._templates[line.template_id] = [1, line.template[:200], line.is_new]
        else:
            self._other_templates += 1
        t = line.time
        if not _finite(t):
            self.untimed += 1
            return
        bucket = self._bucket(t)
        bucket[0] += 1
        if _finite(score):
            bucket[2] = max(bucket[2], float(score))

    def _bucket(self, t: float) -> list[float]:
        key = math.floor(t / self._width)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._coarsen()
                key = math.floor(t / self._width)
                bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [0.0, 0.0, -math.inf]
        return bucket

    def _coarsen(self) -> None:
        """Double the bucket width (merging pairs) until the buckets fit in half the cap."""
        while len(self._buckets) >= MAX_BUCKETS // 2:
            self._width *= 2
            merged: dict[int, list[float]] = {}
            for key, (lines, anomalies, top) in self._buckets.items():
                into = merged.setdefault(key // 2, [0.0, 0.0, -math.inf])
                into[0] += lines
                into[1] += anomalies
                into[2] = max(into[2], top)
            self._buckets = merged

    def add_anomaly(self, anomaly: Anomaly) -> None:
        """Count an anomaly in its time bucket and keep a timeline marker (bounded)."""
        self.anomalies += 1
        t = anomaly.line.time
        if _finite(t):
            self._bucket(t)[1] += 1
            if len(self._markers) < MAX_MARKERS:
                self._markers.append((t, float(anomaly.score), anomaly.incident_id or ""))
        iid = anomaly.incident_id
        if iid is None:
            self._isolated += 1
            return
        if iid not in self._explanations and len(self._explanations) >= MAX_INCIDENTS:
            return
        kinds = self._explanations.setdefault(iid, {})
        for e in anomaly.explanations:
            # One per kind and model: the Isolation Forest's MODEL_OUTLIER must not hide LogBERT's.
            key = f"{e.kind.value}/{dict(e.facts).get('detector', '')}"
            if key not in kinds and len(kinds) < MAX_EXPLANATIONS:
                kinds[key] = e
        leading = self._leading.get(iid)
        if leading is None or anomaly.score > leading.score:
            self._leading[iid] = anomaly

    def add_session(self, verdict: SessionVerdict) -> None:
        """Record a session judged anomalous as a whole (the text summary names them too)."""
        self.sessions += 1
        if len(self._sessions) < MAX_SESSIONS:
            self._sessions.append(verdict)

    def add_incident(self, incident: Incident) -> None:
        """Record an incident event; the latest state of each incident is shown."""
        self._incident_lines[incident.incident_id] = incident.anomaly_count
        if incident.incident_id not in self._incidents and len(self._incidents) >= MAX_INCIDENTS:
            self._dropped_incidents += 1
            return
        self._incidents[incident.incident_id] = incident

    @property
    def anomalous_lines(self) -> int:
        """Every anomalous line, as the text summary's headline and the incidents count them."""
        return sum(self._incident_lines.values()) + self._isolated

    # ---- the page

    def _timeline(self) -> dict[str, Any]:
        keys = sorted(self._buckets)
        points: list[dict[str, Any]] = []
        breaks: list[float] = []
        x = 0.0
        previous: int | None = None
        for key in keys:
            if previous is not None:
                gap = key - previous
                if gap > MAX_GAP_BUCKETS:
                    x += 3
                    breaks.append(x - 1.5)
                else:
                    x += gap
            lines, anomalies, top = self._buckets[key]
            points.append(
                {
                    "x": x,
                    "t": _stamp(key * self._width, self.year_known),
                    "lines": lines,
                    "anomalies": anomalies,
                    "score": top if math.isfinite(top) else None,
                }
            )
            previous = key
        xs = [p["x"] for p in points]

        def x_of(t: float) -> float | None:
            if not keys or not _finite(t):
                return None
            i = min(max(bisect_left(keys, math.floor(t / self._width)), 0), len(keys) - 1)
            return float(xs[i])

        spans = []
        for n, inc in enumerate(self._ordered_incidents(), 1):
            a, b = x_of(inc.first_seen), x_of(inc.last_seen)
            if a is not None and b is not None:
                spans.append({"n": n, "x0": min(a, b), "x1": max(a, b), "severity": inc.severity.name})
        markers = [{"x": x_of(t), "score": s} for t, s, _ in self._markers if _finite(s)]
        return {
            "bucket_secs": self._width,
            "points": points,
            "breaks": breaks,
            "incidents": spans,
            "markers": [m for m in markers if m["x"] is not None],
        }

    def _histograms(self) -> dict[str, Any]:
        train = self._training
        scan = self._scores.values
        both = sorted(train + scan)
        if not both:
            return {"edges": [], "train": [], "scan": []}
        low = both[0]
        high = both[min(len(both) - 1, math.ceil(0.999 * len(both)))]
        if not high > low:
            high = low + 1.0
        width = (high - low) / HISTOGRAM_BINS

        def density(values: Sequence[float]) -> list[float]:
            counts = [0] * HISTOGRAM_BINS
            for v in values:
                i = int((v - low) / width)
                counts[min(max(i, 0), HISTOGRAM_BINS - 1)] += 1
            total = max(1, len(values))
            return [c / total for c in counts]

        return {
            "edges": [low + i * width for i in range(HISTOGRAM_BINS + 1)],
            "train": density(train) if train else [],
            "scan": density(scan) if scan else [],
            "train_n": len(train),
            "scan_n": self._scores.seen,
        }

    def _template_rows(self) -> list[dict[str, Any]]:
        ranked = sorted(self._templates.items(), key=lambda kv: -kv[1][0])
        top = ranked[:TEMPLATES_SHOWN]
        shown = {tid for tid, _ in top}
        new = [(tid, e) for tid, e in ranked if e[2] and tid not in shown][:TEMPLATES_SHOWN]
        return [{"id": tid, "count": e[0], "text": e[1], "new": bool(e[2])} for tid, e in top + new]

    def _ordered_incidents(self) -> list[Incident]:
        return sorted(
            self._incidents.values(),
            key=lambda i: (i.first_seen if _finite(i.first_seen) else 0.0, i.incident_id),
        )

    def _incident_html(self) -> str:
        incidents = self._ordered_incidents()
        if not incidents:
            if self._sessions:
                return '<p class="empty">No incidents.</p>' + self._sessions_html()
            return '<p class="empty">No incidents: nothing anomalous was found in this scan.</p>'
        parts: list[str] = []
        ranked = sorted(incidents, key=lambda i: (-int(i.severity), -i.anomaly_count))
        detailed = {i.incident_id for i in ranked[:DETAILED_INCIDENTS]}
        rows: list[str] = []
        for n, inc in enumerate(incidents, 1):
            if inc.incident_id not in detailed:
                rows.append(
                    f"<tr><td>{n}</td><td><span class='badge sev-{inc.severity.name.lower()}'>"
                    f"{inc.severity.name}</span></td><td>{html.escape(_stamp(inc.first_seen, self.year_known))}</td>"
                    f"<td>{inc.anomaly_count:,}{html.escape(burst_more(inc.anomaly_count, inc.line_count))}</td>"
                    f"<td>{html.escape(inc.title)}</td></tr>"
                )
                continue
            span = _stamp(inc.first_seen, self.year_known)
            if inc.last_seen - inc.first_seen >= 1:
                span += f" – {_stamp(inc.last_seen, self.year_known)}"
            sev = inc.severity.name
            explanations = self._explanations.get(inc.incident_id, {})
            items = "".join(_explanation_li(e) for e in explanations.values())
            if not items and inc.explanation_kinds:
                items = "".join(f"<li><b>{html.escape(k.value)}</b></li>" for k in inc.explanation_kinds)
            samples = "\n".join(html.escape(s) for s in inc.samples) or html.escape(inc.first_line)
            leading = ", ".join(
                f"{html.escape(clip(text, 80))} <span class='muted'>×{count:,}</span>"
                for _, text, count in inc.leading_templates[:3]
            )
            listed = [e for e in inc.entities if not (e.startswith("+") and e.endswith(" more"))]
            entities = ", ".join(html.escape(e) for e in listed[:8])
            if inc.entity_count > 8:
                entities += f" … (+{inc.entity_count - 8:,})"
            parts.append(
                f'<section class="incident sev-{sev.lower()}" id="incident-{n}">'
                f'<h3><span class="badge sev-{sev.lower()}">{sev}</span> '
                f"Incident {n}: {html.escape(inc.title)}</h3>"
                f'<p class="meta">{html.escape(span)} · {plural(inc.anomaly_count, "anomalous line")}'
                f"{html.escape(burst_more(inc.anomaly_count, inc.line_count))} · {html.escape(inc.state.value)} · "
                f"<code>{html.escape(inc.incident_id)}</code></p>"
                f'<p class="meta">Entities: {entities or "–"}</p>'
                f'<p class="meta">Leading templates: {leading or "–"}</p>'
                f"<ul class='why'>{items or '<li>flagged by the model scores</li>'}</ul>"
                f"<details open><summary>Sample lines</summary><pre>{samples}</pre></details>"
                "</section>"
            )
        if rows:
            parts.append(
                f"<h3>{len(rows):,} less severe incidents</h3><table class='compact'><tr><th>#</th>"
                "<th>severity</th><th>first seen (UTC)</th><th>lines</th><th>title</th></tr>"
                + "".join(rows)
                + "</table>"
            )
        if self._dropped_incidents:
            parts.append(f'<p class="muted">… and {self._dropped_incidents:,} more incidents not kept.</p>')
        parts.append(self._sessions_html())
        return "\n".join(parts)

    def _sessions_html(self) -> str:
        """The sessions judged anomalous as a whole, as the text summary names them."""
        if not self._sessions:
            return ""
        rows = "".join(
            f"<tr><td>{html.escape(v.entity)}</td><td>{len(v.tokens):,}</td>"
            f"<td>{html.escape(_stamp(v.last_seen, self.year_known))}</td>"
            f"<td>{html.escape(clip(session_reason(v), 300))}</td></tr>"
            for v in self._sessions
        )
        more = self.sessions - len(self._sessions)
        return (f"<h3>{plural(self.sessions, 'session')} judged anomalous as a whole</h3><table class='compact'>"
                "<tr><th>entity</th><th>lines</th><th>ended (UTC)</th><th>what raised it</th></tr>" + rows
                + "</table>" + (f'<p class="muted">… and {more:,} more.</p>' if more > 0 else ""))

    def _history_html(self) -> str:
        """The incidents `train` found in the training history, largest periods first."""
        h = self.history
        if not h:
            return '<p class="empty">The model records no check of its training history.</p>'
        if not h.get("judged"):
            return f'<p class="empty">History not checked for incidents: {html.escape(str(h.get("note", "")))}</p>'
        periods = [p for p in h.get("periods", []) if isinstance(p, dict)]
        suspects = h.get("suspects", [])
        if not periods and not suspects:
            return '<p class="empty">No incidents found in the training history.</p>'
        head = (f"<p>{plural(len(periods), 'suspect period')}, {plural(len(suspects), 'template')} and "
                f"{int(h.get('held_lines', 0)):,} of {int(h.get('lines', 0)):,} lines held back as suspect "
                "(not learned as normal).</p>")
        rows = "".join(
            f"<tr><td>{html.escape(_stamp(float(p['start'])))}</td><td>{html.escape(_stamp(float(p['end'])))}</td>"
            f"<td>{int(p['lines']):,}</td><td>{int(p['entities']):,}</td><td>"
            + ", ".join(f"{html.escape(str(t)[:80])} <span class='muted'>×{int(n):,}</span>" for t, n in p["templates"])
            + (f" <span class='muted'>+{int(p['template_count']) - len(p['templates'])} more</span>"
               if int(p["template_count"]) > len(p["templates"]) else "")
            + "</td></tr>"
            for p in sorted(periods, key=lambda p: -int(p["lines"]))[:DETAILED_INCIDENTS])
        more = (f'<p class="muted">… and {len(periods) - DETAILED_INCIDENTS:,} smaller periods in history.json.</p>'
                if len(periods) > DETAILED_INCIDENTS else "")
        return (head + "<table class='compact' id='history'><tr><th>from (UTC)</th><th>to</th><th>lines</th>"
                "<th>entities</th><th>templates</th></tr>" + rows + "</table>" + more)

    def data(self) -> dict[str, Any]:
        """Everything the page's charts draw (JSON-safe)."""
        return {
            "timeline": self._timeline(),
            "histogram": self._histograms(),
            "templates": self._template_rows(),
            "other_templates": self._other_templates,
        }

    def write_html(self, path: Path, title: str = "logdetect scan") -> None:
        """Write the report page to `path` (atomically: a temp file, then rename)."""
        times = [k * self._width for k in self._buckets]
        year = self.year_known
        span = "no timed lines"
        if times:
            span = f"{_stamp(min(times), year)} – {_stamp(max(times) + self._width, year)} UTC"
        notes = []
        if self.time_from_arrival:
            notes.append(
                f"{plural(self.time_from_arrival, 'line')} carried no timestamp; their arrival time was used instead."
            )
        if self.untimed:
            notes.append(f"{plural(self.untimed, 'line')} had no usable time and are not on the timeline.")
        incidents = len(self._incidents) + self._dropped_incidents
        payload = json.dumps(self.data(), allow_nan=False, default=str).replace("<", "\\u003c")
        page = _PAGE.format(
            title=html.escape(title),
            lines=f"{self.lines:,}",
            anomalies=f"{self.anomalous_lines:,}",
            incidents=f"{incidents:,}",
            new_lines=f"{self.new_template_lines:,}",
            span=html.escape(span),
            generated=_stamp(datetime.now(UTC).timestamp()),
            notes="".join(f'<p class="note">{html.escape(n)}</p>' for n in notes),
            incident_html=self._incident_html(),
            history_html=self._history_html(),
            data=payload,
            script=_SCRIPT,
            style=_STYLE,
        )
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)


def _explanation_li(e: Explanation) -> str:
    head, sep, tail = e.text.partition(":")
    if not sep:
        return f"<li>{html.escape(e.text)}</li>"
    return f"<li><b>{html.escape(head)}:</b>{html.escape(tail)}</li>"


_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0 auto; max-width: 1300px; padding: 16px 24px; color: #1d2430; background: #f7f8fa; }
h1 { font-size: 22px; margin: 4px 0 8px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde6; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0 0 4px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { background: #fff; border: 1px solid #d8dde6; border-radius: 6px; padding: 8px 14px;
        min-width: 130px; }
.card b { display: block; font-size: 20px; }
.muted, .meta { color: #5b6575; }
.meta { margin: 2px 0; font-size: 13px; }
.note { background: #fff6db; border: 1px solid #e8d48a; padding: 6px 10px; border-radius: 4px; }
.chart { background: #fff; border: 1px solid #d8dde6; border-radius: 6px; padding: 8px; }
.chart svg { width: 100%; height: auto; display: block; }
.incident { background: #fff; border: 1px solid #d8dde6; border-left: 6px solid #8a94a6;
            border-radius: 6px; padding: 10px 14px; margin: 10px 0; }
.incident.sev-critical { border-left-color: #b3141b; } .incident.sev-high { border-left-color: #e0521b; }
.incident.sev-medium { border-left-color: #d9a400; } .incident.sev-low { border-left-color: #2f7fc1; }
.badge { color: #fff; border-radius: 3px; padding: 1px 6px; font-size: 12px; background: #8a94a6; }
.badge.sev-critical { background: #b3141b; } .badge.sev-high { background: #e0521b; }
.badge.sev-medium { background: #d9a400; } .badge.sev-low { background: #2f7fc1; }
.why { margin: 6px 0; padding-left: 20px; white-space: pre-wrap; }
pre { background: #f1f3f6; padding: 8px; font-size: 12px; margin: 4px 0; white-space: pre-wrap;
      overflow-wrap: anywhere; }
table.compact { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
table.compact td, table.compact th { border-bottom: 1px solid #e3e7ee; padding: 3px 6px; text-align: left; }
.legend span { margin-right: 14px; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: middle; }
.empty { color: #5b6575; font-style: italic; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var SEV = {CRITICAL: "#b3141b", HIGH: "#e0521b", MEDIUM: "#d9a400", LOW: "#2f7fc1"};

  function el(name, attrs, parent, text) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function svg(id, w, h) {
    var host = document.getElementById(id);
    var root = el("svg", {viewBox: "0 0 " + w + " " + h, role: "img"});
    host.appendChild(root);
    return root;
  }
  function empty(root, w, h, msg) {
    el("text", {x: w / 2, y: h / 2, "text-anchor": "middle", fill: "#5b6575"}, root, msg);
  }
  function fmt(v) {
    if (v === null || v === undefined) { return "–"; }
    var a = Math.abs(v);
    if (a >= 1000) { return v.toFixed(0); }
    if (a >= 10) { return v.toFixed(1); }
    return v.toFixed(2);
  }

  function count(v) { return Math.round(v).toLocaleString("en-US"); }
  // Places a text node unless it would overlap one already placed in the same row (measured).
  function Row() { this.spans = []; }
  Row.prototype.place = function (node, gap) {
    var box = node.getBBox(), a = box.x - gap, b = box.x + box.width + gap;
    for (var i = 0; i < this.spans.length; i++) {
      if (a < this.spans[i][1] && this.spans[i][0] < b) { node.remove(); return false; }
    }
    this.spans.push([a, b]);
    return true;
  };

  function timeline() {
    // Rows from the top: axis titles (y 14), incident numbers (just above the plot), the plot,
    // the time axis, the legend. Value labels sit in the side margins, never on the plot.
    var W = 1240, H = 340, L = 64, R = 64, T = 44, B = 50;
    var root = svg("timeline", W, H);
    var tl = data.timeline, pts = tl.points;
    if (!pts.length) { empty(root, W, H, "No timed lines in this scan."); return; }
    var xmax = pts[pts.length - 1].x + 1;
    var maxLines = Math.max.apply(null, pts.map(function (p) { return p.lines; })) || 1;
    var scores = pts.map(function (p) { return p.score; }).filter(function (s) { return s !== null; });
    var smin = scores.length ? Math.min.apply(null, scores) : 0;
    var smax = scores.length ? Math.max.apply(null, scores) : 1;
    if (!(smax > smin)) { smax = smin + 1; }
    var pw = W - L - R, ph = H - T - B;
    function X(x) { return L + (x / xmax) * pw; }
    function YL(v) { return T + ph - (v / maxLines) * ph; }
    function YS(v) { return T + ph - ((v - smin) / (smax - smin)) * ph; }
    var bw = Math.max(pw / xmax, 1);
    var labels = new Row();
    tl.incidents.forEach(function (s) {
      var x0 = X(s.x0), x1 = Math.max(X(s.x1 + 1), x0 + 3);
      var color = SEV[s.severity] || "#888";
      el("rect", {x: x0, y: T, width: x1 - x0, height: ph, fill: color, "fill-opacity": 0.16,
                  class: "incident-span"}, root);
      var label = el("text", {x: Math.min(x0, L + pw - 24), y: T - 8, "font-size": 11, fill: color,
                              class: "incident-label"}, root, "#" + s.n);
      labels.place(label, 3);  // a crowded stretch keeps its first number; the list below has all
    });
    pts.forEach(function (p) {
      el("rect", {x: X(p.x), y: YL(p.lines), width: bw, height: T + ph - YL(p.lines), fill: "#9fb3c8"}, root);
    });
    var d = "", prevX = null;
    pts.forEach(function (p) {
      if (p.score === null) { prevX = null; return; }
      // A new segment after any silence: never draw a score line across buckets with no lines.
      var joined = prevX !== null && p.x - prevX <= 1;
      d += (joined ? " L" : " M") + (X(p.x) + bw / 2).toFixed(1) + " " + YS(p.score).toFixed(1);
      prevX = p.x;
    });
    if (d) { el("path", {d: d, fill: "none", stroke: "#6a3d9a", "stroke-width": 1.2}, root); }
    tl.markers.forEach(function (m) {
      el("circle", {cx: X(m.x) + bw / 2, cy: YS(Math.min(Math.max(m.score, smin), smax)), r: 2.2,
                    fill: "#d62728", class: "marker"}, root);
    });
    var many = tl.breaks.length > 40;
    tl.breaks.forEach(function (b) {
      var gap = el("line", {x1: X(b), x2: X(b), y1: T, y2: T + ph, stroke: many ? "#c5ccd6" : "#333",
                            "stroke-dasharray": "4 3", class: "gap"}, root);
      el("title", {}, gap, "a silence cut out of the time axis");
    });
    el("line", {x1: L, x2: L + pw, y1: T + ph, y2: T + ph, stroke: "#333"}, root);
    // Axis titles above the plot, values in the margins beside it.
    el("text", {x: L, y: 14, "font-size": 11, fill: "#4a6481"}, root, "bars: lines per bucket");
    el("text", {x: L + pw, y: 14, "font-size": 11, fill: "#6a3d9a", "text-anchor": "end"}, root,
       "purple: highest anomaly score per bucket");
    el("text", {x: L - 6, y: T + 10, "font-size": 11, fill: "#4a6481", "text-anchor": "end"}, root, count(maxLines));
    el("text", {x: L - 6, y: T + ph, "font-size": 11, fill: "#4a6481", "text-anchor": "end"}, root, "0");
    el("text", {x: L + pw + 6, y: T + 10, "font-size": 11, fill: "#6a3d9a"}, root, fmt(smax));
    el("text", {x: L + pw + 6, y: T + ph, "font-size": 11, fill: "#6a3d9a"}, root, fmt(smin));
    // Time ticks spread evenly along the axis (not by bucket count, which crowds them where the
    // lines are dense), each at the nearest bucket; a tick that would overlap another is dropped.
    var ticks = new Row(), n = Math.min(6, pts.length), xs = pts.map(function (p) { return p.x; });
    for (var i = 0; i < n; i++) {
      var target = n > 1 ? i * (xmax - 1) / (n - 1) : 0, j = 0;
      while (j < xs.length - 1 && Math.abs(xs[j + 1] - target) <= Math.abs(xs[j] - target)) { j++; }
      var anchor = i === 0 ? "start" : (i === n - 1 ? "end" : "middle");
      var tx = i === n - 1 ? X(xs[j]) + bw : X(xs[j]);
      var tick = el("text", {x: tx, y: H - 26, "font-size": 11, "text-anchor": anchor, fill: "#333",
                             class: "tick"}, root, pts[j].t);
      if (ticks.place(tick, 6)) {
        el("line", {x1: X(xs[j]) + bw / 2, x2: X(xs[j]) + bw / 2, y1: T + ph, y2: T + ph + 4, stroke: "#333"}, root);
      }
    }
    el("text", {x: L, y: H - 6, "font-size": 11, fill: "#5b6575"}, root,
       "bucket = " + fmt(tl.bucket_secs) + " s; red dots: anomalies; shaded: incidents (numbered as below); " +
       "dashed: " + tl.breaks.length + " silence" + (tl.breaks.length === 1 ? "" : "s") +
       " longer than 30 buckets cut out");
  }

  function templates() {
    var rows = data.templates;
    var W = 1240, rowH = 18, L = 8, T = 8;
    var H = Math.max(60, T * 2 + rows.length * rowH);
    var root = svg("templates", W, H);
    if (!rows.length) { empty(root, W, H, "No lines scanned."); return; }
    var max = Math.max.apply(null, rows.map(function (r) { return r.count; })) || 1;
    var barW = 420, textX = L + barW + 70;
    rows.forEach(function (r, i) {
      var y = T + i * rowH;
      var w = Math.max(1, (Math.log(1 + r.count) / Math.log(1 + max)) * barW);
      el("rect", {x: L, y: y + 2, width: w, height: rowH - 5, fill: r.new ? "#d62728" : "#4e79a7",
                  class: r.new ? "bar-new" : "bar"}, root);
      el("text", {x: L + barW + 64, y: y + rowH - 5, "font-size": 11, "text-anchor": "end"}, root,
         r.count.toLocaleString());
      el("text", {x: textX, y: y + rowH - 5, "font-size": 11, fill: r.new ? "#b3141b" : "#1d2430"}, root,
         (r.new ? "NEW  " : "") + r.text.slice(0, 130));
    });
  }

  function histogram() {
    var h = data.histogram;
    var W = 1240, H = 260, L = 50, R = 20, T = 14, B = 36;
    var root = svg("scores", W, H);
    if (!h.edges.length) { empty(root, W, H, "No scores to compare."); return; }
    var n = h.edges.length - 1, pw = W - L - R, ph = H - T - B;
    var peak = Math.max.apply(null, [0.0001].concat(h.train, h.scan));
    var bw = pw / n;
    function draw(series, color, offset) {
      series.forEach(function (v, i) {
        var hh = Math.sqrt(v / peak) * ph;  // square-root scale: the tail stays visible
        el("rect", {x: L + i * bw + offset, y: T + ph - hh, width: bw / 2 - 1, height: hh,
                    fill: color}, root);
      });
    }
    draw(h.train, "#59a14f", 0);
    draw(h.scan, "#e15759", bw / 2);
    el("line", {x1: L, x2: L + pw, y1: T + ph, y2: T + ph, stroke: "#333"}, root);
    [0, Math.floor(n / 2), n].forEach(function (i) {
      el("text", {x: L + i * bw, y: H - 18, "font-size": 11, "text-anchor": "middle"}, root, fmt(h.edges[i]));
    });
    el("text", {x: L, y: H - 4, "font-size": 11, fill: "#5b6575"}, root,
       "share of lines per score bin, square-root scale (highest 0.1% clipped into the last bin)");
  }

  [timeline, templates, histogram].forEach(function (f) { f(); });
  var done = document.createElement("p");
  done.id = "charts-ready";
  done.className = "muted";
  done.textContent = "Charts drawn in this page (no network used).";
  document.getElementById("footer").appendChild(done);
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; \
style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
<p class="muted">{span} · generated {generated} UTC</p>
<div class="cards">
  <div class="card"><b>{lines}</b>lines scanned</div>
  <div class="card"><b>{anomalies}</b>anomalous lines</div>
  <div class="card"><b>{incidents}</b>incidents</div>
  <div class="card"><b>{new_lines}</b>lines of new templates</div>
</div>
{notes}
<h2>Timeline</h2>
<div class="chart" id="timeline"></div>
<h2>Incidents</h2>
{incident_html}
<h2>Templates</h2>
<p class="legend"><span><i class="swatch" style="background:#4e79a7"></i>seen in training</span>
<span><i class="swatch" style="background:#d62728"></i>new (never seen in training)</span>
<span class="muted">bar length: log of the line count; most frequent first, then the new ones</span></p>
<div class="chart" id="templates"></div>
<h2>Score distribution: training vs this scan</h2>
<p class="legend"><span><i class="swatch" style="background:#59a14f"></i>training (held-back normal)</span>
<span><i class="swatch" style="background:#e15759"></i>this scan</span></p>
<div class="chart" id="scores"></div>
<h2>Incidents found in your history</h2>
<p class="legend"><span class="muted">found by <code>train</code> in the model's training logs, without labels;
their templates were not learned as normal</span></p>
{history_html}
<div id="footer"></div>
<script type="application/json" id="report-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
