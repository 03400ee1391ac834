"""ServiceNotifier against real AF_UNIX datagram sockets, as systemd would receive them."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.service import ServiceNotifier


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _receive_all(sock: socket.socket) -> list[str]:
    """Every datagram waiting on `sock` (bounded wait for the first one)."""
    messages: list[str] = []
    sock.settimeout(2.0)
    try:
        messages.append(sock.recv(4096).decode())
        sock.settimeout(0.05)
        while True:
            messages.append(sock.recv(4096).decode())
    except TimeoutError:
        pass
    return messages


@pytest.fixture()
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield str(path), sock
    sock.close()


def test_lifecycle_messages_reach_a_path_socket(notify_socket: tuple[str, socket.socket]) -> None:
    """READY (with STATUS), STATUS, RELOADING+MONOTONIC_USEC, STOPPING arrive as separate datagrams."""
    path, sock = notify_socket
    notifier = ServiceNotifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready("bundle v1 loaded")
    notifier.reloading()
    notifier.stopping()
    messages = _receive_all(sock)
    assert messages[0] == "READY=1\nSTATUS=bundle v1 loaded"
    assert messages[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    usec = int(messages[1].split("MONOTONIC_USEC=")[1])
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now_usec - usec < 5_000_000
    assert messages[2] == "STOPPING=1"
    notifier.close()


def test_abstract_namespace_socket() -> None:
    """A leading @ in $NOTIFY_SOCKET is the Linux abstract namespace (what systemd uses in containers)."""
    name = f"logdetect-test-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        notifier = ServiceNotifier.from_env({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.stopping()
        assert _receive_all(sock) == ["READY=1", "STOPPING=1"]
        notifier.close()
    finally:
        sock.close()


def test_watchdog_is_sent_at_most_every_half_timeout(notify_socket: tuple[str, socket.socket]) -> None:
    """WATCHDOG_USEC=2 s: pings are spaced at least 1 s apart however often the loop calls."""
    path, sock = notify_socket
    clock = FakeClock()
    notifier = ServiceNotifier(path, watchdog_usec=2_000_000, clock=clock)
    sent_at: list[float] = []
    for _ in range(40):  # a loop turning every 0.1 s for 4 s
        notifier.watchdog()
        received = _drain_nowait(sock)
        if received:
            assert received == ["WATCHDOG=1"]
            sent_at.append(clock.now)
        clock.now += 0.1
    assert len(sent_at) == 4
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(g >= 1.0 - 1e-9 for g in gaps)
    notifier.close()


def _drain_nowait(sock: socket.socket) -> list[str]:
    out: list[str] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return out


def test_watchdog_pid_of_another_process_disables_pings(notify_socket: tuple[str, socket.socket]) -> None:
    """$WATCHDOG_PID names the pinging process; an inheriting child must stay silent."""
    path, sock = notify_socket
    other = ServiceNotifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    other.watchdog()
    assert not other.watchdog_enabled
    mine = ServiceNotifier.from_env(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    )
    mine.watchdog()
    assert _receive_all(sock) == ["WATCHDOG=1"]
    other.close()
    mine.close()


def test_status_is_rate_limited(notify_socket: tuple[str, socket.socket]) -> None:
    """STATUS= messages go out at most once a second."""
    path, sock = notify_socket
    clock = FakeClock()
    notifier = ServiceNotifier(path, clock=clock)
    notifier.status("10 rec/s")
    notifier.status("11 rec/s")  # same second: swallowed
    clock.now += 1.5
    notifier.status("12 rec/s")
    assert _receive_all(sock) == ["STATUS=10 rec/s", "STATUS=12 rec/s"]
    notifier.close()


def test_unset_socket_is_a_noop_and_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    """Not under systemd: nothing happens. Socket gone (systemd re-exec): a warning, no exception."""
    quiet = ServiceNotifier.from_env({})
    assert not quiet.enabled and not quiet.watchdog_enabled
    quiet.ready()
    quiet.watchdog()
    gone = ServiceNotifier(str(tmp_path / "missing.sock"))
    gone.ready()
    gone.stopping()
    assert gone._sock is None


def test_a_separate_process_notifies_through_env(notify_socket: tuple[str, socket.socket]) -> None:
    """The way systemd runs us: the variables are in the child's environment."""
    path, sock = notify_socket
    code = (
        "from agent.service import ServiceNotifier as S; n = S.from_env(); "
        "n.ready('up'); n.watchdog(); n.stopping()"
    )
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "500000"}
    env.pop("WATCHDOG_PID", None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    assert _receive_all(sock) == ["READY=1\nSTATUS=up", "WATCHDOG=1", "STOPPING=1"]
