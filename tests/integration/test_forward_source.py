"""The `forward` source against real clients and bad input, on real sockets.

Clients nobody here wrote: PyPI `fluent-logger` (Message mode, int time and EventTime, TCP and
Unix socket) and npm `@fluent-org/logger` (all four modes, acks, shared-key handshake), driven
through `node`. Raw sockets play Fluent Bit / Fluentd where a quirk is about bytes, and play the
bad clients. A consumer stands in for the pipeline: it finishes batches, which releases acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import struct
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import REPO, TEST_DEPS_HINT, need

from agent import metrics
from agent.components import BatchQueue
from agent.types import Batch
from plugins.forward_source import ForwardSource, ForwardSourceOptions

NODE_DIR = REPO / "tests" / "node"
SEND_JS = NODE_DIR / "send.js"


def dropped(component: str, reason: str) -> float:
    """The drop counter of one component and reason."""
    value = metrics.REGISTRY.get_sample_value(
        "logdetect_records_dropped_total", {"component": component, "reason": reason}
    )
    return value or 0.0


def node_available() -> bool:
    """Whether node and the Fluent logger client are installed for the real-client tests."""
    return (
        shutil.which("node") is not None and (NODE_DIR / "node_modules" / "@fluent-org" / "logger").is_dir()
    )


class Harness:
    """A forward source plus a stand-in consumer that records what it was handed."""

    def __init__(self, queue_records: int = 10_000, **options: Any) -> None:
        self.id = f"fw-{uuid.uuid4().hex[:8]}"
        options.setdefault("listen", "tcp:127.0.0.1:0")
        self.source = ForwardSource(self.id, ForwardSourceOptions(**options))
        self.queue = BatchQueue(queue_records)
        self.records: list[Any] = []
        self.held: list[Batch] = []
        self.hold = False
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.source.address.port  # type: ignore[union-attr]

    async def __aenter__(self) -> Harness:
        await self.source.start(self.queue)
        self._task = asyncio.get_running_loop().create_task(self._consume())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.source.stop()
        await self.source.finish(0.5)

    async def _consume(self) -> None:
        while True:
            for batch in await self.queue.get_many(10_000, 0.05):
                self.records.extend(batch.records)
                if self.hold:
                    self.held.append(batch)
                else:
                    batch.finish(True)

    def release(self) -> None:
        self.hold = False
        for batch in self.held:
            batch.finish(True)
        self.held.clear()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.02)


async def run_node(options: dict[str, Any], timeout: float = 40.0) -> dict[str, Any]:
    """Run the node client with these options and return its JSON result."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(SEND_JS),
        json.dumps(options),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    lines = out.decode().strip().splitlines()
    assert lines, f"node printed nothing; stderr: {err.decode()[:500]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run(coro: Awaitable[None]) -> None:
    """Run a scenario coroutine with a 60 s bound."""
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


# --- real clients ---


def test_fluent_logger_message_mode_tcp_and_unix_with_event_time(tmp_path: Path) -> None:
    """PyPI fluent-logger: int seconds over TCP, EventTime over a Unix socket; all records arrive."""
    from fluent import sender

    async def scenario() -> None:
        async with Harness() as tcp, Harness(listen=f"unix:{tmp_path / 'fw.sock'}") as unix:

            def send() -> None:
                s1 = sender.FluentSender("py", host="127.0.0.1", port=tcp.port)
                s2 = sender.FluentSender(
                    "py", host=f"unix://{tmp_path / 'fw.sock'}", nanosecond_precision=True
                )
                for i in range(50):
                    assert s1.emit("int", {"log": f"tcp {i}", "level": "WARN"})
                    assert s2.emit("ns", {"log": f"unix {i}"})
                s1.close()
                s2.close()

            started = time.time()
            await asyncio.to_thread(send)
            await tcp.wait_for(lambda: len(tcp.records) == 50)
            await unix.wait_for(lambda: len(unix.records) == 50)
            assert [r.line for r in tcp.records] == [f"tcp {i}" for i in range(50)]
            assert all(r.field("level") == "WARN" and r.time == int(r.time) for r in tcp.records)
            assert [r.line for r in unix.records] == [f"unix {i}" for i in range(50)]
            # EventTime carries sub-second precision.
            assert any(r.time != int(r.time) for r in unix.records)
            assert all(started - 2 < r.time < time.time() + 2 for r in unix.records)

    run(scenario())


@pytest.mark.parametrize("mode", ["Message", "Forward", "PackedForward", "CompressedPackedForward"])
def test_node_client_every_mode_with_acks(mode: str) -> None:
    """@fluent-org/logger in each mode with acks: every emit resolves (acked) and arrives once."""
    need(node_available(), f"node and tests/node/node_modules are missing: {TEST_DEPS_HINT}")

    async def scenario() -> None:
        async with Harness() as h:
            result = await run_node({"port": h.port, "mode": mode, "ack": True, "count": 300, "prefix": mode})
            assert result.get("acked") == 300, result
            assert sorted(r.line for r in h.records) == sorted(f"{mode} {i}" for i in range(300))

    run(scenario())


def test_node_client_shared_key_handshake_and_wrong_key(tmp_path: Path) -> None:
    """Shared key: the right key is accepted (digests verified by the client), a wrong one is
    refused, counted, and nothing from it is processed; a Unix socket works the same."""
    need(node_available(), f"node and tests/node/node_modules are missing: {TEST_DEPS_HINT}")

    async def scenario() -> None:
        path = tmp_path / "secure.sock"
        async with Harness(listen=f"unix:{path}", shared_key="s3cr3t", handshake_timeout_secs=2.0) as h:
            ok = await run_node(
                {"path": str(path), "mode": "PackedForward", "ack": True, "count": 20, "sharedKey": "s3cr3t"}
            )
            assert ok.get("acked") == 20, ok
            bad = await run_node(
                {
                    "path": str(path),
                    "mode": "Forward",
                    "ack": True,
                    "count": 5,
                    "sharedKey": "wrong",
                    "ackTimeout": 1000,
                    "timeout": 2000,
                    "eventRetry": {"attempts": 0},
                },
                timeout=40,
            )
            assert bad.get("acked") == 0, bad
            assert len(h.records) == 20
            assert dropped(h.id, "handshake_failed") >= 1

    run(scenario())


# --- acks, duplicates, backpressure (raw sockets playing Fluent Bit) ---


def packed_request(lines: list[str], chunk: bytes, tag: str = "fb") -> bytes:
    """A PackedForward request of these lines with a chunk id, as Fluent Bit sends."""
    entries = b"".join(msgpack.packb([int(time.time()), {"log": line}]) for line in lines)
    return msgpack.packb([tag, entries, {"chunk": chunk.decode(), "size": len(lines)}], use_bin_type=True)


_UNPACKERS: weakref.WeakKeyDictionary[socket.socket, msgpack.Unpacker] = weakref.WeakKeyDictionary()


def recv_ack(sock: socket.socket, timeout: float) -> Any:
    """The next reply on `sock`. One recv can carry several acks: the unpacker is kept per
    socket so the ones after the first are returned by the next calls, not dropped."""
    unpacker = _UNPACKERS.setdefault(sock, msgpack.Unpacker(raw=True))
    for obj in unpacker:
        return obj
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return "closed"
            unpacker.feed(data)
            for obj in unpacker:
                return obj
    except TimeoutError:
        return None


def test_ack_only_after_processing_and_duplicates_processed_once() -> None:
    """The ack waits until the consumer finished the batch; a retried chunk id is acked again
    but its records are not handed over a second time."""

    async def scenario() -> None:
        async with Harness() as h:
            h.hold = True
            sock = socket.create_connection(("127.0.0.1", h.port), timeout=5)
            chunk = b"p8n9gmxTQVC8/nh2wlKKeQ=="
            sock.sendall(packed_request(["a", "b", "c"], chunk))
            await h.wait_for(lambda: len(h.held) == 1)
            assert await asyncio.to_thread(recv_ack, sock, 0.3) is None  # processed? not yet: no ack
            h.release()
            ack = await asyncio.to_thread(recv_ack, sock, 5)
            assert ack == {b"ack": chunk}
            # Fluent Bit retries a chunk it thinks failed with the same id (sha512 of the payload).
            sock2 = socket.create_connection(("127.0.0.1", h.port), timeout=5)
            sock2.sendall(packed_request(["a", "b", "c"], chunk))
            assert await asyncio.to_thread(recv_ack, sock2, 5) == {b"ack": chunk}
            assert [r.line for r in h.records] == ["a", "b", "c"]
            assert dropped(h.id, "duplicate_chunk") == 3
            sock.close()
            sock2.close()
        # The chunk resent to another agent: its records have the same origins (event ids).
        async with Harness() as other:
            sock3 = socket.create_connection(("127.0.0.1", other.port), timeout=5)
            sock3.sendall(packed_request(["a", "b", "c"], chunk))
            assert await asyncio.to_thread(recv_ack, sock3, 5) == {b"ack": chunk}
            sock3.close()
        origins = [f"forward:{chunk.decode()}:{i}" for i in range(3)]
        assert [r.origin for r in h.records] == [r.origin for r in other.records] == origins

    run(scenario())


def test_full_queue_withholds_acks_and_stops_reading() -> None:
    """With the queue full, further requests are not taken in and not acked; once the
    consumer drains, every chunk is acked and every record arrives exactly once."""

    async def scenario() -> None:
        async with Harness(queue_records=10) as h:
            h.hold = True
            # Stop the consumer entirely (and wait until it has stopped, holding nothing) so
            # the queue itself fills.
            assert h._task is not None
            h._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await h._task
            sock = socket.create_connection(("127.0.0.1", h.port), timeout=5)
            chunks = [f"chunk-{i:02d}".encode() for i in range(6)]
            for i, chunk in enumerate(chunks):
                sock.sendall(packed_request([f"r{i}-{j}" for j in range(10)], chunk))
            await asyncio.sleep(0.5)
            assert h.queue.records == 10  # one batch fits; the connection waits on the next
            assert await asyncio.to_thread(recv_ack, sock, 0.3) is None
            h._task = asyncio.get_running_loop().create_task(h._consume())
            h.release()
            h.hold = False
            acks = []
            for _ in chunks:
                acks.append(await asyncio.to_thread(recv_ack, sock, 5))
            assert sorted(a[b"ack"] for a in acks) == chunks
            await h.wait_for(lambda: len(h.records) == 60)
            assert len({r.line for r in h.records}) == 60
            sock.close()

    run(scenario())


# --- bad input: each counted, the bad connection closed, a good client keeps flowing ---


def bin32_header(length: int) -> bytes:
    """The msgpack bin32 header of a payload of `length` bytes."""
    return b"\xc6" + struct.pack(">I", length)


def test_bad_input_suite_while_a_good_client_keeps_flowing() -> None:
    """Garbage, oversized and stalled clients are cut off while a good client keeps its acks."""
    async def scenario() -> None:
        async with Harness(max_frame_bytes=1024 * 1024, idle_timeout_secs=1.0) as h:
            good = socket.create_connection(("127.0.0.1", h.port), timeout=5)
            good_acks = 0

            def good_round(n: int) -> None:
                nonlocal good_acks
                chunk = f"good-{n}".encode()
                good.sendall(packed_request([f"good {n}"], chunk))
                if recv_ack(good, 5) == {b"ack": chunk}:
                    good_acks += 1

            def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
                sock.settimeout(timeout)
                try:
                    while True:
                        if not sock.recv(65536):
                            return True
                except (ConnectionResetError, BrokenPipeError):
                    return True
                except TimeoutError:
                    return False

            def bad_client(payload: bytes, *, close_after: bool = False) -> socket.socket:
                s = socket.create_connection(("127.0.0.1", h.port), timeout=5)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    s.sendall(payload)
                if close_after:
                    s.close()
                return s

            def scenario_sync() -> dict[str, bool]:
                results: dict[str, bool] = {}
                good_round(0)
                # 1. Malformed msgpack (0xc1 is never used).
                results["malformed"] = closed_by_server(bad_client(b"\xc1\x00\x01"))
                good_round(1)
                # 2. A 100 MB frame: a bin32 header announcing 100 MB, then data streaming in.
                big = socket.create_connection(("127.0.0.1", h.port), timeout=5)
                sent = 0
                try:  # [tag, bin32 announcing 100 MB, ...]
                    big.sendall(b"\x93" + msgpack.packb("big") + bin32_header(100_000_000))
                    block = b"x" * (1 << 20)
                    while sent < 100_000_000:
                        big.sendall(block)
                        sent += len(block)
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    pass
                results["big_frame_cut_early"] = sent < 50_000_000
                results["big_frame"] = closed_by_server(big)
                good_round(2)
                # 3. Truncated frame, then disconnect mid-frame.
                full = packed_request(["never complete"], b"trunc")
                bad_client(full[: len(full) // 2], close_after=True)
                good_round(3)
                # 4. Non-map records, wrong types, invalid UTF-8 — in otherwise valid requests.
                weird = msgpack.packb(
                    [
                        "t",
                        [
                            [1, "not a map"],
                            ["x", {"log": "bad time"}],
                            [1, {"nolog": 1}],
                            [1, {"log": b"\xff\xfe invalid utf-8"}],
                        ],
                        {"chunk": "weird"},
                    ],
                    use_bin_type=True,
                )
                w = bad_client(weird)
                results["weird_acked"] = recv_ack(w, 5) == {b"ack": b"weird"}
                w.close()
                # 5. A non-request value (a map) is ignored and the connection stays usable.
                odd = bad_client(msgpack.packb({"not": "a request"}) + packed_request(["after odd"], b"odd"))
                results["odd_then_ok"] = recv_ack(odd, 5) == {b"ack": b"odd"}
                odd.close()
                # 6. An idle client is closed after idle_timeout_secs.
                # The good connection sends `nil` heartbeats meanwhile (as Fluentd does), so it
                # is not idle and stays open.
                idle = socket.create_connection(("127.0.0.1", h.port), timeout=5)
                results["idle_closed"] = False
                for _ in range(25):
                    good.sendall(b"\xc0")
                    if closed_by_server(idle, 0.2):
                        results["idle_closed"] = True
                        break
                good_round(4)
                good.close()
                return results

            results = await asyncio.to_thread(scenario_sync)
            assert results == {
                "malformed": True,
                "big_frame_cut_early": True,
                "big_frame": True,
                "weird_acked": True,
                "odd_then_ok": True,
                "idle_closed": True,
            }
            assert good_acks == 5
            await h.wait_for(lambda: sum(r.line.startswith("good") for r in h.records) == 5)
            lines = [r.line for r in h.records]
            assert "\ufffd\ufffd invalid utf-8" in lines and "after odd" in lines
            assert "never complete" not in lines
            assert dropped(h.id, "malformed_msgpack") == 1
            assert dropped(h.id, "frame_too_large") == 1
            assert dropped(h.id, "disconnect_mid_frame") == 1
            assert dropped(h.id, "non_map_record") == 1
            assert dropped(h.id, "bad_time") == 1
            assert dropped(h.id, "missing_message_field") == 1
            assert dropped(h.id, "bad_request") == 1
            assert dropped(h.id, "idle_timeout") >= 1

    run(scenario())


def test_failed_handshake_raw_and_silent_client() -> None:
    """A PING with a wrong digest gets PONG false and is closed; one that never answers HELO is
    closed at the handshake timeout. Both counted."""

    async def scenario() -> None:
        async with Harness(shared_key="k", handshake_timeout_secs=0.5) as h:

            def bad_ping() -> list[Any]:
                s = socket.create_connection(("127.0.0.1", h.port), timeout=5)
                helo = recv_ack(s, 5)
                s.sendall(msgpack.packb(["PING", "client", "salt", "0" * 128, "", ""]))
                pong = recv_ack(s, 5)
                rest = recv_ack(s, 5)
                s.close()
                return [helo, pong, rest]

            helo, pong, rest = await asyncio.to_thread(bad_ping)
            assert helo[0] == b"HELO" and len(helo[1][b"nonce"]) == 16
            assert pong[:2] == [b"PONG", False]
            assert rest == "closed"

            def silent() -> Any:
                s = socket.create_connection(("127.0.0.1", h.port), timeout=5)
                recv_ack(s, 5)  # HELO
                result = recv_ack(s, 5)
                s.close()
                return result

            assert await asyncio.to_thread(silent) == "closed"
            assert dropped(h.id, "handshake_failed") == 1
            assert dropped(h.id, "idle_timeout") == 1

    run(scenario())


def test_a_request_pipelined_behind_the_ping_is_processed_and_acked() -> None:
    """A client that writes its PING and first request in one `send` (issue 14, defect 5):
    the request is neither lost nor left unacked."""
    from plugins.forward_codec import sha512_hex

    async def scenario() -> None:
        async with Harness(shared_key="k") as h:

            def client() -> list[Any]:
                s = socket.create_connection(("127.0.0.1", h.port), timeout=5)
                helo = recv_ack(s, 5)
                nonce = helo[1][b"nonce"]
                ping = msgpack.packb(["PING", "client", "salt", sha512_hex(b"salt", b"client", nonce, b"k"), "", ""])
                s.sendall(ping + packed_request(["first line", "second line"], b"c1"))
                replies = [recv_ack(s, 5), recv_ack(s, 5)]
                s.close()
                return replies

            pong, ack = await asyncio.to_thread(client)
            assert pong[:2] == [b"PONG", True]
            assert ack == {b"ack": b"c1"}
            assert [r.line for r in h.records] == ["first line", "second line"]

    run(scenario())
