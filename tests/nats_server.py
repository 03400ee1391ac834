"""A real `nats-server` with JetStream on 127.0.0.1 (a free port), and a blocking nats-py client
for tests that feed or read it from plain threads.

The server is Debian's `nats-server` package, installed by `make test-deps`
(tests/setup/nats.sh); without it (or without nats-py) the tests skip, and fail under CI=true.
One server serves the whole test session (`shared_server`); every test uses its own stream and
subject names, so tests do not see each other's messages.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from conftest import TEST_DEPS_HINT, need

STARTUP_SECS = 10.0
# Debian installs it in /usr/sbin, which a non-login PATH may lack.
NATS_SERVER = shutil.which("nats-server") or next(
    (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None
)
T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process with JetStream, its store in a temp dir; `kill()` stops it."""

    def __init__(self) -> None:
        self.store = Path(tempfile.mkdtemp(prefix="ld-nats-"))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_SECS
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """Stop the server and remove its store."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        shutil.rmtree(self.store, ignore_errors=True)


_SHARED: list[NatsServer] = []


def need_nats() -> None:
    """Skip (fail under CI=true) without the nats-server binary or the nats-py client."""
    need(NATS_SERVER is not None, f"nats-server is not installed: {TEST_DEPS_HINT}")
    need(importlib.util.find_spec("nats") is not None, "nats-py is not installed (pip install '.[fleet]')")


def shared_server() -> NatsServer:
    """The test session's one NATS server, started on first use and stopped at exit."""
    need_nats()
    if not _SHARED:
        _SHARED.append(NatsServer())
        atexit.register(_SHARED[0].kill)
    return _SHARED[0]


def unique_name(prefix: str) -> str:
    """A stream / consumer / subject token unique to one test."""
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


class SyncClient:
    """A nats-py client on its own event loop thread, with blocking calls for test threads."""

    def __init__(self, url: str) -> None:
        import nats

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc: Any = self.call(nats.connect(url, connect_timeout=STARTUP_SECS, allow_reconnect=False))
        self.js: Any = self.nc.jetstream()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = STARTUP_SECS) -> T:
        """Run a coroutine on the client's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def publish(self, subject: str, payload: bytes) -> None:
        """A JetStream publish, waiting for the stream's ack."""
        self.call(self.js.publish(subject, payload))

    def stream_messages(self, stream: str) -> int:
        """Messages the stream holds now (a work-queue stream: not yet acked)."""
        return int(self.call(self.js.stream_info(stream)).state.messages)

    def read_all(self, subject: str, expected: int, timeout: float = 10.0) -> list[bytes]:
        """The payloads of a stream capturing `subject`, until `expected` arrived or time ran out."""

        async def read() -> list[bytes]:
            sub = await self.js.subscribe(subject, ordered_consumer=True)
            out: list[bytes] = []
            deadline = time.monotonic() + timeout
            while len(out) < expected and time.monotonic() < deadline:
                try:
                    msg = await sub.next_msg(timeout=0.2)
                except Exception:
                    continue
                out.append(msg.data)
            await sub.unsubscribe()
            return out

        return self.call(read(), timeout + 5.0)

    def close(self) -> None:
        """Close the connection and stop the loop."""
        try:
            self.call(self.nc.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5.0)


def _shut_both(*sockets: socket.socket) -> None:
    """End both directions of a proxied connection, whichever side closed first."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class AckCutProxy:
    """A TCP proxy in front of the NATS server that can lose a client's JetStream acks.

    Clients connect to `url`; the bytes go both ways unchanged until `drop_acks` is set: from then
    on every publish from a client to a `$JS.ACK.` subject (ack, nak, in-progress) is dropped and
    counted in `dropped`, and everything else still passes. This is the fault "the agent wrote
    the events, but its ack never reached the server", made on purpose instead of by a lucky
    kill -9 timing."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.drop_acks = threading.Event()
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"nats://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=STARTUP_SECS)
            upstream.settimeout(None)
            threading.Thread(target=self._copy, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._client_to_server, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut_both(src, dst)

    def _client_to_server(self, src: socket.socket, dst: socket.socket) -> None:
        """Forward protocol operations one by one (`PUB subject [reply] size`, `HPUB subject
        [reply] header_size total_size`, each followed by its payload), dropping acks when asked."""
        buf = b""
        try:
            while data := src.recv(65536):
                buf += data
                out = bytearray()
                while (end := buf.find(b"\r\n")) >= 0:
                    head = buf[:end].split()
                    op = head[0].upper() if head else b""
                    size = int(head[-1]) + 2 if op in (b"PUB", b"HPUB") else 0
                    if len(buf) < end + 2 + size:
                        break  # the payload is still on its way
                    frame, buf = buf[: end + 2 + size], buf[end + 2 + size :]
                    if size and self.drop_acks.is_set() and head[1].startswith(b"$JS.ACK."):
                        self.dropped += 1
                        continue
                    out += frame
                if out:
                    dst.sendall(out)
        except OSError:
            pass
        finally:
            _shut_both(src, dst)

    def close(self) -> None:
        """Stop accepting (open connections end when their ends close)."""
        self._closed = True
        self._listener.close()
