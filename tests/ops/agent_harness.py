"""Test harness: `logdetect agent` as a real subprocess with a fake systemd notify socket, a
Forward client with `chunk` acks (msgpack over a Unix socket), and the status endpoint."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgpack

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """The first truthy value of `predicate`, polled until `timeout` (TimeoutError naming `what`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def write_config(
    path: Path, model: Path, state_dir: Path, sock: Path, events: Path, source_options: str = ""
) -> None:
    """An agent config: a Forward source on a Unix socket, every line to an events file."""
    path.write_text(
        f"""
model = "{model}"
state_dir = "{state_dir}"

[pipeline]
emit_all = true                  # one logdetect.line event per processed record: countable
snapshot_interval_secs = 0.5

[agent]
tick_interval_secs = 0.2
shutdown_budget_secs = 5.0
metrics_listen = "127.0.0.1:0"

[sources.fwd]
type = "forward"
listen = "unix:{sock}"
{source_options}

[sinks.events]
type = "file"
path = "{events}"
"""
    )


class NotifyListener:
    """A bound AF_UNIX datagram socket standing in for systemd; collects every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def count(self, prefix: str) -> int:
        return sum(1 for m in list(self.messages) if m.startswith(prefix))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class AgentProcess:
    """`python -m agent.cli agent --config FILE` (or another daemon command: `fleet`) with stderr
    (JSON logs) collected."""

    def __init__(
        self,
        config: Path,
        notify: NotifyListener | None,
        watchdog_usec: int = 0,
        prefix: list[str] | None = None,
        command: str = "agent",
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify.path)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.proc = subprocess.Popen(
            [
                *(prefix or []),
                sys.executable,
                "-m",
                "agent.cli",
                command,
                "--config",
                str(config),
                "--log-format",
                "json",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=config.parent,
        )
        self.logs: list[dict[str, Any]] = []
        self.raw_stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.raw_stderr.append(line)
            with contextlib.suppress(ValueError):
                self.logs.append(json.loads(line))

    def log_events(self) -> list[str]:
        return [str(e.get("event")) for e in list(self.logs)]

    def status_url(self, timeout: float = 60) -> str:
        def find() -> str | None:
            for e in list(self.logs):
                if e.get("event") == "status endpoint listening":
                    return str(e["url"])
            if self.proc.poll() is not None:
                raise AssertionError("agent exited:\n" + "\n".join(self.raw_stderr[-30:]))
            return None

        url: str = wait_until(find, timeout, "the status endpoint")
        return url

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.status_url() + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


class ForwardClient:
    """Forward mode `[tag, [[time, record], ...], {"chunk": id}]`, waiting for `{"ack": id}`."""

    def __init__(self, path: Path, timeout: float = 15.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.unpacker = msgpack.Unpacker(raw=False)

    def send(self, lines: Iterable[str], tag: str = "app") -> str:
        now = int(time.time())
        return self.send_entries([[now, {"log": line}] for line in lines], uuid.uuid4().hex, tag)

    def send_entries(self, entries: list[list[Any]], chunk: str, tag: str = "app") -> str:
        """Send `[tag, entries, {"chunk": chunk}]` (a resend reuses its chunk id); wait for the ack."""
        self.sock.sendall(msgpack.packb([tag, entries, {"chunk": chunk}]))
        while True:
            for obj in self.unpacker:
                if isinstance(obj, dict) and obj.get("ack") == chunk:
                    return chunk
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("agent closed the connection before acking")
            self.unpacker.feed(data)

    def close(self) -> None:
        self.sock.close()


def line_events(path: Path) -> list[dict[str, Any]]:
    """The attributes of every line event in an events file."""
    if not path.exists():
        return []
    out = []
    for raw in path.read_bytes().splitlines():
        event = json.loads(raw)
        if event["event_name"] == "logdetect.line":
            out.append(event["attributes"])
    return out


def streaming_sender(
    sock: Path, chunks: list[list[str]], acked: list[list[str]], started: threading.Event, pause: float = 0.0
) -> threading.Thread:
    """Send chunks one after another from a thread; record the lines of each acked chunk."""
    errors: queue.Queue[BaseException] = queue.Queue()

    def run() -> None:
        try:
            client = ForwardClient(sock)
        except OSError as exc:
            errors.put(exc)
            return
        try:
            for i, chunk in enumerate(chunks):
                client.send(chunk)
                acked.append(chunk)
                if i == 0:
                    started.set()
                if pause:
                    time.sleep(pause)
        except (OSError, ConnectionError) as exc:
            errors.put(exc)
        finally:
            started.set()
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
