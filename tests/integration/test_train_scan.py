"""End to end through the CLI: simulate → train → scan, on the project's simulator and on
real Loghub logs; events validate against `logdetect schema`; bad input gives one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from agent.events import MAX_FIELD_CHARS, json_schema, rfc3339

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """Run `logdetect` in a subprocess with this checkout on the path."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], input=stdin, capture_output=True,
                          timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small normal days and one incident day, and an Isolation-Forest-only bundle."""
    from trainer.simulator import simulate

    d = tmp_path_factory.mktemp("sim")
    start = datetime(2026, 11, 2, tzinfo=UTC)
    simulate(d / "normal.log", days=2, seed=3, incidents=(), start=start, lines_per_day=8_000)
    simulate(d / "incident.log", days=1, seed=4, incidents=("db_failover", "new_error"),
             start=datetime(2026, 11, 4, tzinfo=UTC), lines_per_day=8_000)
    r = cli("train", "--input", str(d / "normal.log"), "--output", str(d / "model"), "--entity", "component",
            "--models", "isolation_forest", "--quiet")
    assert r.returncode == 0, r.stderr.decode()
    return {"dir": d, "model": d / "model", "incident": d / "incident.log", "normal": d / "normal.log"}


def test_scan_json_events_validate(sim: dict[str, Path]) -> None:
    """Every event of `scan --format json` validates against the published schema, and the
    injected incident lines are among the anomalies."""
    r = cli("scan", "--model", str(sim["model"]), "--input", str(sim["incident"]), "--format", "json")
    assert r.returncode == 0, r.stderr.decode()
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events, "the incident day produced no events"
    validator = jsonschema.Draft202012Validator(json_schema())
    for e in events:
        validator.validate(e)
    names = {e["event_name"] for e in events}
    assert "logdetect.anomaly" in names and "logdetect.incident" in names
    truth = json.loads((sim["dir"] / "incident.log.truth.json").read_text())
    lines = {e["attributes"]["log.line_no"] for e in events if e["event_name"] == "logdetect.anomaly"}
    resolved = [e["attributes"] for e in events
                if e["event_name"] == "logdetect.incident" and e["attributes"]["incident.state"] == "resolved"]
    for inc in truth["incidents"]:
        # Identical repeats are counted in the incident, not re-emitted: some of the lines as
        # events, and one resolved incident spanning the injected period with most of them.
        assert lines & set(inc["line_numbers"]), f"{inc['kind']}: no anomaly event"
        start, end = rfc3339(inc["start"]), rfc3339(inc["end"])  # RFC 3339 UTC strings sort as times
        covering = [r for r in resolved if r["incident.first_seen"] <= end and r["incident.last_seen"] >= start]
        assert covering, f"{inc['kind']}: no incident covers {inc['start']} - {inc['end']}"
        assert max(r["incident.anomaly_count"] for r in covering) >= len(inc["line_numbers"]) // 2


def test_scan_text_summary(sim: dict[str, Path]) -> None:
    """`scan` prints the text summary with an incident, without colour codes when piped."""
    r = cli("scan", "--model", str(sim["model"]), "--input", str(sim["incident"]))
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "Scanned" in out and "Incident 1" in out
    assert "\x1b[" not in out, "no colour codes when piped"


def test_watch_stdin(sim: dict[str, Path]) -> None:
    """`watch --input -` reads a pipe to EOF and emits the same anomalies as a JSON stream."""
    data = sim["incident"].read_bytes()
    r = cli("watch", "--model", str(sim["model"]), "--input", "-", stdin=data)
    assert r.returncode == 0, r.stderr.decode()
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert any(e["event_name"] == "logdetect.anomaly" for e in events)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "--model", "{model}", "--input", "{dir}/missing.log"], "does not exist"),
        (["scan", "--model", "{model}", "--input", "{dir}"], "is a directory"),
        (["scan", "--model", "{dir}/no-model", "--input", "{incident}"], "does not exist"),
        (["train", "--input", "{dir}/empty.log", "--output", "{dir}/m2"], "is empty"),
    ],
)
def test_bad_input_one_line_error(sim: dict[str, Path], args: list[str], message: str) -> None:
    """User errors: exit code 2 and one line naming the problem, never a traceback."""
    (sim["dir"] / "empty.log").write_bytes(b"")
    fmt = {k: str(v) for k, v in sim.items()}
    r = cli(*[a.format(**fmt) for a in args])
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_bytes_never_lose_the_next_line(sim: dict[str, Path], tmp_path: Path) -> None:
    """Invalid UTF-8, NUL bytes and a 10 MB line inside a file: scanned, counted, and the normal
    line after them is still processed."""
    good = sim["incident"].read_bytes().splitlines()[:50]
    bad = [b"\xff\xfe\xfa broken utf8", b"nul \x00 inside", b"x" * (10 << 20)]
    path = tmp_path / "bad.log"
    path.write_bytes(b"\n".join(good[:25] + bad + good[25:]) + b"\n")
    r = cli("scan", "--model", str(sim["model"]), "--input", str(path), "--format", "json")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    # The 10 MB record is an event like any other, its fields cut as the daemon's sinks cut them.
    long = [json.loads(line) for line in r.stdout.splitlines() if b"xxxxxxxx" in line]
    assert long and all(len(json.dumps(e)) < 4 * MAX_FIELD_CHARS for e in long)
    anomalies = [e for e in long if e["event_name"] == "logdetect.anomaly"]
    assert anomalies and all("log.raw" in e["attributes"]["truncated"] for e in anomalies)
    r2 = cli("scan", "--model", str(sim["model"]), "--input", str(path))
    assert f"Scanned {len(good) + len(bad)}" in r2.stdout.decode().replace(",", "")


def test_each_file_ends_its_last_record(sim: dict[str, Path], tmp_path: Path) -> None:
    """Scanning two files: the first file's last line (held back by the multi-line stitcher until
    the next line shows it complete) is scored before the second file's lines, not after them."""
    lines = sim["incident"].read_text().splitlines()
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    ts = lines[40].split(" ")[0]
    first.write_text("\n".join([*lines[:40], f"{ts} ERROR api: quux reactor melted down beyond repair"]) + "\n")
    second.write_text("\n".join([*lines[41:80], f"{ts} ERROR db: zorg table vanished without trace", *lines[80:200]])
                      + "\n")
    r = cli("scan", "--model", str(sim["model"]), "--input", str(first), str(second), "--format", "json")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    sources = [e["resource"]["log.source"] for e in map(json.loads, r.stdout.splitlines())
               if e["event_name"] == "logdetect.anomaly"]
    assert "first.log" in sources and "second.log" in sources
    assert sources == sorted(sources, key=lambda s: s != "first.log"), sources


def test_edited_bundle_refused(sim: dict[str, Path], tmp_path: Path) -> None:
    """A bundle file edited after training fails its sha256 check: exit 2."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(sim["model"], copy)
    (copy / "features.json").write_text("{}")
    r = cli("scan", "--model", str(copy), "--input", str(sim["incident"]))
    assert r.returncode == 2 and "sha256" in r.stderr.decode()


def test_train_and_scan_real_logs(data_dir: Path, tmp_path: Path) -> None:
    """A real Loghub system (OpenSSH, syslog format) trains and scans through the same commands."""
    log = data_dir / "loghub_2k/OpenSSH/OpenSSH_2k.log"
    r = cli("train", "--input", str(log), "--output", str(tmp_path / "m"), "--models", "isolation_forest",
            "--quiet")
    assert r.returncode == 0, r.stderr.decode()
    r = cli("scan", "--model", str(tmp_path / "m"), "--input", str(log), "--format", "json")
    assert r.returncode == 0, r.stderr.decode()
    manifest = json.loads((tmp_path / "m/manifest.json").read_text())
    assert manifest["parser"]["log_format"] != "raw"
    assert manifest["training"]["templates"] > 5


def test_tail_pipe_into_watch(sim: dict[str, Path], tmp_path: Path) -> None:
    """A real `tail -F FILE | logdetect watch --input -` pipe: lines appended to the file come out
    as events while the pipe stays open; when tail goes away, watch drains and exits 0."""
    import shutil
    import time

    if shutil.which("tail") is None:
        pytest.skip("no tail on this machine")
    log = tmp_path / "live.log"
    log.write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tail = subprocess.Popen(["tail", "-n", "+1", "-F", str(log)], stdout=subprocess.PIPE)
    watch = subprocess.Popen([sys.executable, "-m", "agent.cli", "watch", "--model", str(sim["model"]),
                              "--input", "-"], stdin=tail.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, cwd=REPO)
    assert tail.stdout is not None
    tail.stdout.close()  # watch owns the read end now
    try:
        with log.open("ab") as fh:
            fh.write(sim["incident"].read_bytes())
        time.sleep(3.0)
    finally:
        tail.terminate()
        tail.wait(timeout=10)
    out, err = watch.communicate(timeout=120)
    assert watch.returncode == 0, err.decode()[-2000:]
    events = [json.loads(line) for line in out.splitlines()]
    assert any(e["event_name"] == "logdetect.anomaly" for e in events)
    assert any(e["event_name"] == "logdetect.incident" for e in events)


def test_wrong_log_format_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    """Forcing a format the file is not in fails with a one-line hint, not a useless model."""
    r = cli("train", "--input", str(data_dir / "loghub_2k/OpenSSH/OpenSSH_2k.log"), "--log-format", "hdfs",
            "--output", str(tmp_path / "m"), "--models", "isolation_forest", "--quiet")
    err = r.stderr.decode()
    assert r.returncode == 2 and "do not look like that format" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_dynamic_thresholds_scale_by_hour(sim: dict[str, Path]) -> None:
    """The bundle carries 24 hour-of-day multipliers learned on held-back normal lines; with
    dynamic thresholds on, each detector's threshold is scaled by the line's hour."""
    from agent.pipeline import Pipeline, PipelineConfig, _at_hour
    from agent.types import DetectorScore

    manifest = json.loads((sim["model"] / "manifest.json").read_text())
    mult = manifest["ensemble"]["hour_multipliers"]
    assert len(mult) == 24 and all(0.5 <= m <= 2.0 for m in mult)
    pipe = Pipeline.from_bundle(sim["model"], PipelineConfig(dynamic_thresholds=True))
    assert pipe.hour_multipliers == mult
    s = DetectorScore("isolation_forest", 0.30, 0.25, True)
    (raised,) = _at_hour([s], 1.5)
    assert raised.threshold == pytest.approx(0.375) and not raised.fired
    (lowered,) = _at_hour([s], 0.5)
    assert lowered.fired and lowered.threshold == pytest.approx(0.125)
    novel = DetectorScore("novelty", 1.0, 0.5, True)  # a fixed rule keeps its threshold at every hour
    assert _at_hour([novel], 3.0, pipe.kinds) == [novel]
    assert Pipeline.from_bundle(sim["model"], PipelineConfig()).hour_multipliers is None
