"""Operator feedback (issue 13, item 4): real BGL lines, an incident marked as expected through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent import metrics
from agent.feedback import Label, Labelled, read_labels
from agent.parsing import ParserConfig
from agent.parsing.records import parse_records
from agent.pipeline import Pipeline, PipelineConfig
from agent.types import Anomaly, Incident, LineResult, Output, Record
from tests.conftest import need
from trainer.eval.bgl_data import read_labelled
from trainer.train import TrainOptions, train

PARSER = ParserConfig(log_format="bgl", entity="stream", multiline=False)
TLB = "data TLB error interrupt"  # the largest alert category of BGL_4k/6k: held back as suspect


@pytest.fixture(scope="module")
def history(data_dir: Path) -> list[Record]:
    """BGL_4k + BGL_6k with their alerts: ten thousand lines over many days."""
    paths = [data_dir / "bgl" / n for n in ("BGL_4k.log", "BGL_6k.log")]
    need(all(p.is_file() for p in paths), "BGL_4k.log/BGL_6k.log not found")
    return list(read_labelled(paths).records)


@pytest.fixture(scope="module")
def bundle(history: list[Record], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Isolation Forest bundle trained on the contaminated history (TLB lines set aside)."""
    out = tmp_path_factory.mktemp("feedback") / "model"
    result = train(history, TrainOptions(output=out, parser=PARSER, models=("isolation_forest",), progress=False))
    assert result.history is not None and any(TLB in s.template for s in result.history.suspects)
    return out


def _run(pipe: Pipeline, records: list[Record]) -> list[Output]:
    out: list[Output] = []
    for r in records:
        out += pipe.process([r], 0.0)
    return out


def _tlb_anomalies(out: list[Output]) -> list[Anomaly]:
    return [o for o in out if isinstance(o, Anomaly) and TLB in o.line.template]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def _master_restart(data_dir: Path) -> Record:
    """A real BGL line whose template BGL_4k/6k never show (it is in BGL_8k)."""
    path = data_dir / "bgl" / "BGL_8k.log"
    need(path.is_file(), "BGL_8k.log not found")
    return next(r for r in read_labelled([path]).records if r.line.endswith("--autorestart y")
                and "BGLMaster has been started" in r.line)


def test_an_incident_marked_normal_stops_alerting_at_once_after_restart_and_in_the_next_train(
    history: list[Record], bundle: Path, tmp_path: Path, data_dir: Path
) -> None:
    """Alerts → `feedback --incident ID --normal` → quiet in the running pipeline and after a
    restart; `train --feedback` then learns the template instead of holding it back. Labelled a
    problem instead, its lines are held out and check every operating point of the next bundle."""
    state = tmp_path / "state"
    tlb_lines = [r for r in history if TLB in r.line][:40]
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(state_dir=state))
    out = _run(pipe, tlb_lines)
    alerts = _tlb_anomalies(out)
    assert alerts, "the TLB lines held back at training must alert"
    pipe.tick(1.0)  # the agent's tick writes the incidents' signatures
    incident_id = alerts[0].incident_id or next(o.incident_id for o in out if isinstance(o, Incident))
    r = _cli("feedback", "--state", str(state), "--incident", incident_id, "--normal")
    assert r.returncode == 0, r.stderr
    assert TLB in r.stdout
    labels = read_labels(state)
    assert labels and all(v.label is Label.NORMAL and v.source == f"incident {incident_id}" for v in labels.values())

    pipe.tick(2.0)  # the running pipeline picks the label up without a restart
    again = _run(pipe, tlb_lines)
    assert not _tlb_anomalies(again) and not any(isinstance(o, Incident) for o in again)
    assert pipe.feedback.suppressed >= len(tlb_lines) // 2
    served = metrics.REGISTRY.get_sample_value("logdetect_feedback_suppressed_total")  # what /metrics serves
    assert served is not None and served >= pipe.feedback.suppressed
    pipe.close(3.0)

    restarted = Pipeline.from_bundle(bundle, PipelineConfig(state_dir=state))
    assert not _tlb_anomalies(_run(restarted, tlb_lines))
    restarted.close(4.0)

    listed = _cli("feedback", "--state", str(state))
    assert listed.returncode == 0 and "normal: template" in listed.stdout and TLB in listed.stdout
    assert f"  {incident_id}: " in listed.stdout  # the incidents an operator can label are listed

    # The next train uses the label: the TLB template is no longer held back, it joins the vocabulary.
    result = train(history, TrainOptions(output=tmp_path / "retrained", parser=PARSER, models=("isolation_forest",),
                                         progress=False, feedback=tuple(labels.values())))
    assert result.history is not None and not any(TLB in s.template for s in result.history.suspects)
    retrained = Pipeline.from_bundle(tmp_path / "retrained", PipelineConfig())
    assert not any(r.line.is_new for r in _results(retrained, tlb_lines))
    problem = {k: Labelled(v.template_id, v.template, v.sample, Label.PROBLEM, v.source, v.at)
               for k, v in labels.items()}
    # With them, a normal label for a template this history lacks (a BGLMaster restart, from BGL_8k):
    # its sample line joins the training data.
    restart = _master_restart(data_dir)
    expected = Labelled(7, "BGLMaster has been started: <*>", parse_records([restart], PARSER)[0][0].message,
                        Label.NORMAL, "template", 0.0)
    held = train(history, TrainOptions(output=tmp_path / "held", parser=PARSER, models=("isolation_forest",),
                                       progress=False, feedback=(*problem.values(), expected)))
    assert held.history is not None
    kept_out = Pipeline.from_bundle(tmp_path / "held", PipelineConfig())
    assert all(r.line.is_new for r in _results(kept_out, tlb_lines))
    assert not any(r.line.is_new for r in _results(kept_out, [restart]))
    assert kept_out.bundle.manifest["training"]["feedback"]["normal_templates"] == 1
    # The problem-labelled lines, held out of training, check every operating point of the new bundle.
    checked = kept_out.bundle.manifest["training"]["feedback"]["problem_check"]
    assert checked["lines"] == sum(TLB in r.line for r in history) and checked["templates"] == 1
    assert checked["caught"] == {"low": checked["lines"], "medium": checked["lines"], "high": checked["lines"]}
    assert not checked["missed_templates"]


def _results(pipe: Pipeline, records: list[Record]) -> list[LineResult]:
    results: list[LineResult] = []
    pipe.observers.append(results.append)
    _run(pipe, records)
    pipe.observers.remove(results.append)
    return results


def test_the_train_command_reads_the_labels(tmp_path: Path) -> None:
    """`train --feedback DIR` refuses a missing state dir with a clear message."""
    r = _cli("train", "--input", str(tmp_path / "x.log"), "--output", str(tmp_path / "m"),
             "--feedback", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "no such state directory" in r.stderr


def test_a_running_watch_picks_the_label_up_without_restart(
    history: list[Record], bundle: Path, tmp_path: Path
) -> None:
    """`logdetect watch --state-dir` follows a file: TLB lines alert; after `feedback --normal`
    the same lines appended again raise nothing, with the process never restarted."""
    import json
    import threading
    import time

    state, log_file = tmp_path / "state", tmp_path / "bgl.log"
    log_file.write_text("")
    tlb = [r.line for r in history if TLB in r.line][:60]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "watch", "--model", str(bundle), "--input", str(log_file),
         "--state-dir", str(state), "--from-start"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: events.extend(json.loads(x) for x in proc.stdout or () if x.strip()),
                              daemon=True)
    reader.start()

    def tlb_anomalies() -> list[dict[str, Any]]:
        return [e["attributes"] for e in list(events) if e.get("event_name") == "logdetect.anomaly"
                and TLB in str(e["attributes"].get("template.text", ""))]

    def wait(check: object, secs: float = 60.0) -> bool:
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if callable(check) and check():
                return True
            time.sleep(0.2)
        return False

    try:
        # --from-start: lines written before the watcher has opened the file are still read,
        # however long its start takes on a loaded machine.
        with log_file.open("a") as f:
            f.write("\n".join(tlb[:20]) + "\n")
        assert wait(lambda: tlb_anomalies()), "TLB lines must alert"
        assert wait(lambda: any(a.get("incident.id") for a in tlb_anomalies()))
        incident_id = next(str(a["incident.id"]) for a in tlb_anomalies() if a.get("incident.id"))
        assert wait(lambda: _cli("feedback", "--state", str(state), "--incident", incident_id,
                                 "--normal").returncode == 0, 30.0)
        time.sleep(5.0)  # several ticks: the pipeline reloads feedback.json on its tick
        before = len(events)
        # Without the label these 40 lines raise ~40 events (anomalies and incident updates).
        with log_file.open("a") as f:
            f.write("\n".join(tlb[20:]) + "\n")
        time.sleep(8.0)
        # The incident opened by the first lines may resolve now (the log clock moved on); nothing new opens.
        new = [e for e in events[before:]
               if TLB in json.dumps(e) and e["attributes"].get("incident.state") != "resolved"]
        assert not new, [(e["event_name"], e["attributes"].get("incident.state")) for e in new]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
