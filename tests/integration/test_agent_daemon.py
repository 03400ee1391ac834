"""`logdetect agent --config` as a real process: what the product must show.

- Forward source + file sink: `@fluent-org/logger` sends with acks in every mode; every acked
  record is found processed — after a clean SIGTERM and after `kill -9` alike (acks are sent
  only once the events are written).
- The same over ZeroMQ (with a sequence gap reported as a data-gap event) and over stdin JSON
  lines (the agent exits 0 by itself at EOF).
- SIGHUP with a corrupt bundle is refused and the agent keeps serving; `validate` agrees.
- A real `tail -F FILE | logdetect watch --model B --input -` pipe emits an anomaly for a
  never-seen line.

"Processed" is observable with `emit_all = true`: every processed line yields a
`logdetect.line` event whose body is the raw line. The bundle is trained once per session
from `logdetect simulate` output (Isolation Forest only: no torch needed, ~20 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import msgpack
import pytest
import zmq
from conftest import REPO, TEST_DEPS_HINT, need

from agent.events import json_schema

NODE_DIR = REPO / "tests" / "node"
CLI = [sys.executable, "-m", "agent.cli"]


def node_available() -> bool:
    """Whether node and the Fluent logger client are installed for the real-client tests."""
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "@fluent-org" / "logger").is_dir()


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle trained from simulated normal logs."""
    work = tmp_path_factory.mktemp("bundle")
    log = work / "train.log"
    sim = subprocess.run(
        [*CLI, "simulate", "--days", "1", "--seed", "3", "--lines-per-day", "2000", "--output", str(log)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    need(sim.returncode == 0, f"logdetect simulate failed: {sim.stderr[-500:]}")
    model = work / "model"
    train = subprocess.run(
        [
            *CLI,
            "train",
            "--input",
            str(log),
            "--output",
            str(model),
            "--models",
            "isolation_forest",
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    need(train.returncode == 0, f"logdetect train failed: {train.stderr[-800:]}")
    return model


class Agent:
    """`logdetect agent --config FILE` in a subprocess, its stderr log lines collected."""

    def __init__(self, config: Path, stdin: Any = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "agent", "--config", str(config)],
            cwd=REPO,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.logs: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"event": raw.decode(errors="replace").rstrip()}
            with self._lock:
                self.logs.append(entry)

    def wait_log(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for entry in self.logs:
                    if entry.get("event") == event:
                        return entry
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} log line; logs: {self.logs[-10:]}")

    def address(self, source: str) -> str:
        self.wait_log("agent ready")
        with self._lock:
            for entry in self.logs:
                if entry.get("event") == "source listening" and entry.get("source") == source:
                    return str(entry["address"])
        raise AssertionError(f"source {source} never listened")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)


def write_config(path: Path, bundle: Path, sources: str, extra: str = "", metrics_listen: str = "") -> Path:
    """An agent config with the given sources, emitting every line to a file sink."""
    path.write_text(
        f"""
model = "{bundle}"
state_dir = "{path.parent / "state"}"
[pipeline]
emit_all = true
[agent]
metrics_listen = "{metrics_listen}"
tick_interval_secs = 0.2
shutdown_budget_secs = 5.0
{extra}
{sources}
[sinks.events]
type = "file"
path = "{path.parent / "events.jsonl"}"
"""
    )
    return path


def processed_lines(events_file: Path) -> list[str]:
    """The raw lines the agent reported processing, in order."""
    if not events_file.exists():
        return []
    out = []
    for raw in events_file.read_text().splitlines():
        event = json.loads(raw)
        if event["event_name"] == "logdetect.line":
            out.append(event["body"])
    return out


def node_send(options: dict[str, Any]) -> dict[str, Any]:
    """Run the node client with these options and return its JSON result."""
    proc = subprocess.run(
        ["node", str(NODE_DIR / "send.js"), json.dumps(options)], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip(), proc.stderr[-500:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


LINE = "2026-11-23T10:{minute:02d}:00.000Z INFO web-1: GET /api/items 200 in 12ms"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_forward_every_acked_record_is_processed(bundle: Path, tmp_path: Path, stop_signal: int) -> None:
    """Every mode of @fluent-org/logger with acks, over TCP and a Unix socket; then the agent is
    stopped (SIGTERM: exit 0) or killed (-9): every acked record has its event in the sink."""
    need(node_available(), f"node and tests/node/node_modules are missing: {TEST_DEPS_HINT}")
    sock_path = tmp_path / "forward.sock"
    config = write_config(
        tmp_path / "agent.toml",
        bundle,
        f"""
[sources.fb]
type = "forward"
listen = "tcp:127.0.0.1:0"
[sources.fb_unix]
type = "forward"
listen = "unix:{sock_path}"
""",
    )
    agent = Agent(config)
    try:
        port = int(agent.address("fb").rsplit(":", 1)[1])
        agent.address("fb_unix")
        acked: list[str] = []
        modes = ["Message", "Forward", "PackedForward", "CompressedPackedForward"]
        for i, mode in enumerate(modes):
            target: dict[str, Any] = {"port": port} if i % 2 == 0 else {"path": str(sock_path)}
            prefix = LINE.format(minute=i) + f" {mode}"
            result = node_send({**target, "mode": mode, "ack": True, "count": 150, "prefix": prefix})
            assert result.get("acked") == 150, result
            acked += [f"{prefix} {n}" for n in range(150)]
        code = agent.stop(stop_signal)
    finally:
        if agent.proc.poll() is None:
            agent.proc.kill()
    if stop_signal == signal.SIGTERM:
        assert code == 0
        agent.wait_log("stopped", 5)
    lines = processed_lines(tmp_path / "events.jsonl")
    assert set(acked) <= set(lines)
    assert len(lines) == len(set(lines))  # nothing processed twice


def test_zmq_source_end_to_end_with_gap_event(bundle: Path, tmp_path: Path) -> None:
    """A pyzmq PUSH producer with sequence headers; a skipped seq becomes a data-gap event."""
    config = write_config(
        tmp_path / "agent.toml",
        bundle,
        """
[sources.bus]
type = "zmq"
listen = "tcp://127.0.0.1:*"
""",
        metrics_listen="127.0.0.1:0",
    )
    agent = Agent(config)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        endpoint = agent.address("bus")
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(endpoint)
        sent = []
        for seq in range(20):
            if seq == 10:
                continue  # lost on the way
            lines = [LINE.format(minute=seq) + f" zmq {seq}-{k}" for k in range(10)]
            sent += lines
            header = msgpack.packb({"producer": "shipper-1", "epoch": 7, "seq": seq})
            push.send_multipart([b"logs.v1", header, "\n".join(lines).encode()])
        push.close()
        deadline = time.monotonic() + 20
        while len(processed_lines(tmp_path / "events.jsonl")) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        # The loss is visible to Prometheus too, and the agent reports itself ready.
        url = agent.wait_log("status endpoint listening")["url"]
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            exposition = resp.read().decode()
        assert 'logdetect_input_lost_messages_total{component="bus"} 1.0' in exposition
        assert f'logdetect_records_in_total{{component="bus"}} {float(len(sent))}' in exposition
        assert agent.stop() == 0
    finally:
        ctx.term()
        if agent.proc.poll() is None:
            agent.proc.kill()
    assert sorted(processed_lines(tmp_path / "events.jsonl")) == sorted(sent)
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    gaps = [e for e in events if e["event_name"] == "logdetect.data_gap"]
    assert len(gaps) == 1 and gaps[0]["attributes"]["gap.lost_messages"] == 1
    validator = jsonschema.Draft202012Validator(json_schema())
    for event in events:
        validator.validate(event)


def test_stdin_json_lines_end_to_end_exits_at_eof(bundle: Path, tmp_path: Path) -> None:
    """Fluent Bit json_lines piped into the agent: every line processed, exit 0 at EOF."""
    config = write_config(
        tmp_path / "agent.toml",
        bundle,
        """
[sources.pipe]
type = "stdin"
format = "json"
""",
    )
    lines = [LINE.format(minute=i % 60) + f" stdin {i}" for i in range(500)]
    payload = "".join(json.dumps({"date": 1795000000.5, "log": line, "stream": "stdout"}) + "\n" for line in lines)
    agent = Agent(config, stdin=subprocess.PIPE)
    assert agent.proc.stdin is not None
    agent.proc.stdin.write(payload.encode())
    agent.proc.stdin.close()
    assert agent.proc.wait(60) == 0
    assert processed_lines(tmp_path / "events.jsonl") == lines


def test_print_config_output_passes_validate(bundle: Path, tmp_path: Path) -> None:
    """`logdetect print-config` writes a config `logdetect validate` accepts as it is."""
    printed = subprocess.run(
        [*CLI, "print-config", "--model", str(bundle), "--state-dir", str(tmp_path / "state")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0
    config = tmp_path / "agent.toml"
    config.write_text(printed.stdout)
    check = subprocess.run(
        [*CLI, "validate", "--config", str(config)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert "OK" in check.stdout


def test_sighup_refuses_a_corrupt_bundle_and_keeps_serving(bundle: Path, tmp_path: Path) -> None:
    """Reload with an edited bundle: refused with a log line, the old model keeps serving; a
    reload with a good bundle then swaps it in while serving; `logdetect validate` reports the
    edited bundle as broken."""
    need(node_available(), f"node and tests/node/node_modules are missing: {TEST_DEPS_HINT}")
    broken = tmp_path / "broken-model"
    shutil.copytree(bundle, broken)
    vocab = broken / "vocab.json"
    vocab.write_text(vocab.read_text() + " ")
    forward = """
[sources.fb]
type = "forward"
listen = "tcp:127.0.0.1:0"
"""
    config = write_config(tmp_path / "agent.toml", bundle, forward)
    agent = Agent(config)
    try:
        port = int(agent.address("fb").rsplit(":", 1)[1])
        write_config(tmp_path / "agent.toml", broken, forward)
        agent.proc.send_signal(signal.SIGHUP)
        refused = agent.wait_log("reload refused; the running model keeps serving", 30)
        assert "vocab.json" in refused["error"]
        result = node_send(
            {"port": port, "mode": "PackedForward", "ack": True, "count": 50, "prefix": LINE.format(minute=1)}
        )
        assert result.get("acked") == 50
        # A good bundle again: reloaded, and serving continues with it.
        write_config(tmp_path / "agent.toml", bundle, forward)
        agent.proc.send_signal(signal.SIGHUP)
        agent.wait_log("reloaded", 30)
        result = node_send({"port": port, "mode": "Forward", "ack": True, "count": 50, "prefix": LINE.format(minute=2)})
        assert result.get("acked") == 50
        assert agent.stop() == 0
    finally:
        if agent.proc.poll() is None:
            agent.proc.kill()
    assert len(processed_lines(tmp_path / "events.jsonl")) == 100
    write_config(tmp_path / "agent.toml", broken, forward)
    check = subprocess.run(
        [*CLI, "validate", "--config", str(config)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 1 and "vocab.json" in check.stderr


def test_tail_pipe_into_watch(bundle: Path, tmp_path: Path) -> None:
    """`tail -F FILE | logdetect watch --model B --input -`: a never-seen error line appended to
    the followed file comes out as an anomaly event, even as the last line so far (no later
    line has to push it out of the multi-line stitcher)."""
    need(shutil.which("tail") is not None, "tail not found")
    log = tmp_path / "app.log"
    log.write_text("")
    cmd = f"tail -n 0 -F {log} | {sys.executable} -m agent.cli watch --model {bundle} --input -"
    proc = subprocess.Popen(
        cmd, shell=True, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    found: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            event = json.loads(raw)
            if "NullPointerException" in event.get("body", ""):
                found.append(event)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        time.sleep(2.0)  # let tail open the file and watch load the model
        with log.open("a") as fh:
            for i in range(5):
                fh.write(LINE.format(minute=i) + "\n")
            fh.write("2026-11-23T10:09:00.000Z ERROR payment-3: NullPointerException in PaymentHandler.charge\n")
        reader.join(20)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    assert found, "no anomaly event for the never-seen error line"
    assert found[0]["event_name"] == "logdetect.anomaly"
