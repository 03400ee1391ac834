"""`logdetect agent` run as a real process: systemd notifications, the status endpoint, SIGHUP
reloads (new bundle, corrupt bundle) and SIGKILL mid-stream under acked Forward traffic."""

from __future__ import annotations

import importlib.util
import itertools
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.agent_harness import (
    AgentProcess,
    ForwardClient,
    NotifyListener,
    line_events,
    streaming_sender,
    wait_until,
    write_config,
)
from ops.conftest import SYSTEMS, lines_of

_HAVE_DAEMON = all(importlib.util.find_spec(m) is not None for m in ("agent.daemon", "agent.commands.daemon"))
pytestmark = pytest.mark.skipif(
    not _HAVE_DAEMON,
    reason="needs agent/daemon.py and the `logdetect agent` command (issue 5)",
)


@pytest.fixture()
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    """A systemd notify socket listener, closed after the test."""
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


def _model_info(agent: AgentProcess) -> dict[str, str]:
    status, body = agent.get("/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body):
        if family.name == "logdetect_model_info":
            return dict(family.samples[0].labels)
    raise AssertionError("no logdetect_model_info in /metrics")


def _chunks(lines: list[str], size: int) -> list[list[str]]:
    return [lines[i : i + size] for i in range(0, len(lines), size)]


def _missing(acked: list[list[str]], processed: list[dict[str, object]]) -> Counter[str]:
    """Acked lines that no logdetect.line event shows (a multiset difference)."""
    want = Counter(itertools.chain.from_iterable(acked))
    got = Counter(str(e["log.raw"]) for e in processed)
    return want - got


def _sandbox_prefix(tmp_path: Path) -> list[str]:
    """hardened_exec.py with the unit's SystemCallFilter (see test_systemd_unit.py)."""
    from ops.test_systemd_unit import HARDENED_EXEC, UNIT, _systemd_analyze, expand_syscall_groups, parse_unit

    allowed = expand_syscall_groups(_systemd_analyze(), parse_unit(UNIT.read_text())["Service"]["SystemCallFilter"])
    allowed_file = tmp_path / "allowed.txt"
    allowed_file.write_text("\n".join(sorted(allowed)) + "\n")
    return [sys.executable, str(HARDENED_EXEC), str(allowed_file), "--"]


@pytest.mark.parametrize("sandboxed", [False, True], ids=["plain", "unit-sandbox"])
def test_notify_lifecycle_and_status_endpoint(
    bundles: dict[str, Path], notify: NotifyListener, tmp_path: Path, data_dir: Path, sandboxed: bool
) -> None:
    """READY after load, WATCHDOG from the loop, /readyz 200, metrics parse, SIGTERM → STOPPING,
    exit 0 - also under the unit's sandbox pieces (NoNewPrivileges, W^X, SystemCallFilter)."""
    config = tmp_path / "agent.toml"
    sock, events = tmp_path / "fwd.sock", tmp_path / "events.jsonl"
    write_config(config, bundles["a"], tmp_path / "state", sock, events)
    prefix = _sandbox_prefix(tmp_path) if sandboxed else None
    agent = AgentProcess(config, notify, watchdog_usec=400_000, prefix=prefix)
    try:
        wait_until(lambda: notify.count("READY=1"), 60, "READY=1")
        assert agent.get("/livez")[0] == 200 and agent.get("/readyz")[0] == 200
        client = ForwardClient(sock)
        lines = lines_of(data_dir, SYSTEMS[0])[:50]
        client.send(lines)
        client.close()
        wait_until(lambda: notify.count("WATCHDOG=1") >= 3, 10, "three WATCHDOG=1")
        status, body = agent.get("/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body)}
        fwd = [s for s in families["logdetect_records_in"].samples if s.labels["component"] == "fwd"]
        received = sum(s.value for s in fwd)
        assert received >= 50
        assert _model_info(agent)["provider"] == "CPUExecutionProvider"
        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
        assert time.monotonic() - started < 6  # the 5 s shutdown budget
        wait_until(lambda: notify.count("STOPPING=1"), 5, "STOPPING=1")
        assert not _missing([lines], line_events(events))
    finally:
        agent.kill()
    order = [m.split("\n")[0] for m in notify.messages if not m.startswith(("WATCHDOG", "STATUS"))]
    assert order == ["READY=1", "STOPPING=1"]


def test_sighup_reload_new_and_corrupt_bundle(
    bundles: dict[str, Path], notify: NotifyListener, tmp_path: Path, data_dir: Path
) -> None:
    """A corrupt bundle is refused and the old one keeps serving; a good one is swapped in while
    acked traffic flows, and no acked record is lost across either reload."""
    config = tmp_path / "agent.toml"
    sock, events, state = tmp_path / "fwd.sock", tmp_path / "events.jsonl", tmp_path / "state"
    write_config(config, bundles["a"], state, sock, events)
    agent = AgentProcess(config, notify)
    traffic = _chunks(lines_of(data_dir, SYSTEMS[0])[:600] + lines_of(data_dir, SYSTEMS[1])[:600], 20)
    acked: list[list[str]] = []
    try:
        wait_until(lambda: notify.count("READY=1"), 60, "READY=1")
        assert _model_info(agent)["bundle"] == str(bundles["a"])

        # 1. Corrupt bundle: refused, old model serving.
        write_config(config, bundles["corrupt"], state, sock, events)
        started = threading.Event()
        sender = streaming_sender(sock, traffic[:30], acked, started, pause=0.01)
        wait_until(started.is_set, 30, "first ack")
        agent.signal(signal.SIGHUP)
        wait_until(lambda: notify.count("READY=1") >= 2, 60, "READY=1 after the refused reload")
        assert notify.count("RELOADING=1") == 1
        assert any("refused" in m or "failed" in m for m in notify.messages if m.startswith("READY=1"))
        assert _model_info(agent)["bundle"] == str(bundles["a"])
        sender.join(timeout=120)

        # 2. Good bundle: swapped in while traffic flows.
        write_config(config, bundles["b"], state, sock, events)
        started = threading.Event()
        sender = streaming_sender(sock, traffic[30:], acked, started, pause=0.01)
        wait_until(started.is_set, 30, "first ack")
        agent.signal(signal.SIGHUP)
        wait_until(lambda: notify.count("READY=1") >= 3, 60, "READY=1 after the reload")
        sender.join(timeout=120)
        assert not sender.is_alive()
        assert _model_info(agent)["bundle"] == str(bundles["b"])
        assert agent.get("/readyz")[0] == 200

        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
    finally:
        agent.kill()
    assert sum(len(c) for c in acked) == sum(len(c) for c in traffic)
    assert not _missing(acked, line_events(events)), "acked records missing after the reloads"


@dataclass
class KillRun:
    acked: list[list[str]]
    last_lines: set[str]  # the last line of every chunk acked before the kill
    processed: list[dict[str, object]]
    before: dict[str, int]  # raw line -> template id, before the kill
    after: dict[str, int]  # ... after the restart
    replayed: set[str]
    merged: dict[int, int]  # online id merged into another since -> the surviving id


@pytest.fixture(scope="module")
def kill_run(bundles: dict[str, Path], data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> KillRun:
    """Acked Forward traffic, a snapshot, more traffic, `kill -9` mid-stream, restart; the client
    retries every chunk it holds no ack for, then replays the first phase to compare template ids."""
    tmp_path = tmp_path_factory.mktemp("kill")
    notify = NotifyListener(tmp_path / "notify.sock")
    config = tmp_path / "agent.toml"
    sock, state = tmp_path / "fwd.sock", tmp_path / "state"
    run1, run2 = tmp_path / "events1.jsonl", tmp_path / "events2.jsonl"
    # Linux lines are unknown to the OpenSSH bundle: they create online templates.
    phase_a = _chunks(lines_of(data_dir, SYSTEMS[0])[:200] + lines_of(data_dir, SYSTEMS[1])[:400], 50)
    phase_b = _chunks(lines_of(data_dir, SYSTEMS[1])[400:800] + lines_of(data_dir, SYSTEMS[0])[200:600], 20)
    write_config(config, bundles["a"], state, sock, run1)
    agent = AgentProcess(config, notify)
    acked: list[list[str]] = []
    try:
        wait_until(lambda: notify.count("READY=1"), 60, "READY=1")
        client = ForwardClient(sock)
        for chunk in phase_a:
            client.send(chunk)
            acked.append(chunk)
        client.close()
        # The snapshot written after the last phase-A batch was processed (its events written):
        # the next periodic save, since the online miner's revision moved.
        processed_at = run1.stat().st_mtime
        snapshot = state / "templates_online.json"
        wait_until(lambda: snapshot.exists() and snapshot.stat().st_mtime >= processed_at, 30, "a snapshot")
        started = threading.Event()
        sender = streaming_sender(sock, phase_b, acked, started)
        wait_until(lambda: len(acked) >= len(phase_a) + 5, 30, "mid-stream")
        agent.proc.kill()  # SIGKILL: no drain, no final snapshot
        agent.wait(timeout=10)
        sender.join(timeout=30)
    finally:
        agent.kill()
    assert len(acked) < len(phase_a) + len(phase_b), "the stream finished before the kill"
    last_lines = {chunk[-1] for chunk in acked}
    before = {str(e["log.raw"]): int(str(e["template.id"])) for e in line_events(run1)}

    write_config(config, bundles["a"], state, sock, run2)
    unacked = phase_b[len(acked) - len(phase_a) :]
    agent = AgentProcess(config, notify)
    try:
        wait_until(lambda: notify.count("READY=1") >= 2, 60, "READY=1 after restart")
        client = ForwardClient(sock)
        for chunk in [*unacked, *phase_a]:
            client.send(chunk)
            acked.append(chunk)
        client.close()
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
    finally:
        agent.kill()
        notify.close()
    after = {str(e["log.raw"]): int(str(e["template.id"])) for e in line_events(run2)}
    from agent.pipeline import ONLINE_ID_BASE
    from agent.templates import TemplateMiner

    online = TemplateMiner.load(state / "templates_online.json")
    merged = {ONLINE_ID_BASE + old: ONLINE_ID_BASE + new for old, new in online.aliases().items()}
    return KillRun(
        acked=acked,
        last_lines=last_lines,
        processed=line_events(run1) + line_events(run2),
        before=before,
        after=after,
        replayed=set(itertools.chain.from_iterable(phase_a)),
        merged=merged,
    )


def test_sigkill_mid_stream_keeps_template_ids(kill_run: KillRun) -> None:
    """Lines seen before the last snapshot get the same template ids after a restart from
    `kill -9`, online templates (ids >= 1,000,000, unknown to the bundle) included; an online
    template merged into another since answers to the survivor (the snapshot's aliases)."""
    def now(tid: int | None) -> int | None:
        return None if tid is None else kill_run.merged.get(tid, tid)

    changed = {
        line: (kill_run.before.get(line), kill_run.after.get(line))
        for line in kill_run.replayed
        if now(kill_run.before.get(line)) != kill_run.after.get(line)
    }
    assert not changed, f"{len(changed)} lines changed template id, e.g. {next(iter(changed.items()))}"
    online = [tid for line, tid in kill_run.after.items() if line in kill_run.replayed and tid >= 1_000_000]
    assert online, "the replay saw no online template: the check above proved nothing about them"


def test_sigkill_mid_stream_loses_no_acked_record(kill_run: KillRun) -> None:
    """Every record the agent acked before `kill -9` (or after the restart) was processed."""
    missing = _missing(kill_run.acked, kill_run.processed)
    assert not missing, f"acked records lost across kill -9: {list(missing)[:3]}"
