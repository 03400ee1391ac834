"""File follow (rotation, truncation, resume after restart), stdin and socket JSON lines, and the
file and forward sinks — each on real files, pipes and sockets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from agent import metrics
from agent.components import BatchQueue
from agent.types import Batch
from plugins.file_sink import FileSink, FileSinkOptions
from plugins.file_source import FileSource, FileSourceOptions
from plugins.forward_sink import ForwardSink, ForwardSinkOptions
from plugins.forward_source import ForwardSource, ForwardSourceOptions
from plugins.socket_source import SocketSource, SocketSourceOptions
from plugins.stdin_source import StdinSource, StdinSourceOptions


def dropped(component: str, reason: str) -> float:
    """The drop counter of one component and reason."""
    return (
        metrics.REGISTRY.get_sample_value(
            "logdetect_records_dropped_total", {"component": component, "reason": reason}
        )
        or 0.0
    )


async def drain(queue: BatchQueue, until: int, timeout: float = 10.0, finish: bool = True) -> list[str]:
    """Lines from the queue until `until` arrived (finishing each batch), or fail after `timeout`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < until:
        if time.monotonic() > deadline:
            raise AssertionError(f"got {lines}, wanted {until} lines")
        for batch in await queue.get_many(10_000, 0.05):
            lines.extend(r.line for r in batch.records)
            if finish:
                batch.finish(True)
    return lines


def append(path: Path, text: str) -> None:
    """Append text to a file, as a logging application would."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)


def test_file_follow_rotation_truncation_and_resume(tmp_path: Path) -> None:
    """tail -F semantics, and after a restart reading resumes after the last processed line."""
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    log.write_text("old 1\nold 2\n")
    options = FileSourceOptions(path=str(log), read_from="beginning", poll_interval_secs=0.05)

    async def first_run() -> list[str]:
        source = FileSource("tail", options, state)
        queue = BatchQueue(1000)
        await source.start(queue)
        got = await drain(queue, 2)
        append(log, "new 3\npartial")
        got += await drain(queue, 1)
        append(log, " line 4\n")
        got += await drain(queue, 1)
        # Rotation by rename: the rest of the old file, then the new file from its start.
        append(log, "last of old\n")
        log.rename(tmp_path / "app.log.1")
        log.write_text("rotated 1\n")
        got += await drain(queue, 2)
        # Truncation (copytruncate): start again from offset 0.
        log.write_text("")
        await asyncio.sleep(0.2)
        append(log, "after truncate\n")
        got += await drain(queue, 1)
        await source.stop()
        await source.finish(0.5)
        return got

    got = asyncio.run(asyncio.wait_for(first_run(), 30))
    assert got == [
        "old 1",
        "old 2",
        "new 3",
        "partial line 4",
        "last of old",
        "rotated 1",
        "after truncate",
    ]
    saved = json.loads((state / "offsets" / "tail.json").read_text())
    assert saved["offset"] == log.stat().st_size and saved["ino"] == log.stat().st_ino

    # Lines written while the agent was down are read after the restart, nothing twice.
    append(log, "while down 1\nwhile down 2\n")

    async def second_run() -> list[str]:
        source = FileSource("tail", options, state)
        queue = BatchQueue(1000)
        await source.start(queue)
        got = await drain(queue, 2)
        await asyncio.sleep(0.2)
        extra = await queue.get_many(1000, 0.1)
        await source.stop()
        await source.finish(0.5)
        return got + [r.line for b in extra for r in b.records]

    assert asyncio.run(asyncio.wait_for(second_run(), 30)) == ["while down 1", "while down 2"]


def test_file_offset_only_covers_processed_batches(tmp_path: Path) -> None:
    """An unfinished batch (pipeline killed before processing) is read again after a restart."""
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    log.write_text("a\nb\n")
    options = FileSourceOptions(path=str(log), read_from="beginning", poll_interval_secs=0.05)

    async def run(finish: bool) -> list[str]:
        source = FileSource("tail2", options, state)
        queue = BatchQueue(1000)
        await source.start(queue)
        got = await drain(queue, 2, finish=finish)
        await source.stop()
        await source.finish(0.5)
        return got

    assert asyncio.run(run(finish=False)) == ["a", "b"]
    assert asyncio.run(run(finish=True)) == ["a", "b"]  # read again: never processed
    append(log, "c\n")

    async def third() -> list[str]:
        source = FileSource("tail2", options, state)
        queue = BatchQueue(1000)
        await source.start(queue)
        got = await drain(queue, 1)
        await source.stop()
        await source.finish(0.5)
        return got

    assert asyncio.run(third()) == ["c"]


def test_stdin_json_lines_from_fluent_bit_and_vector_then_eof() -> None:
    """Fluent Bit `json_lines` (message in `log`) and Vector console JSON (`message`), plain lines,
    invalid JSON and over-long lines, from a real pipe; EOF finishes the source."""
    read_fd, write_fd = os.pipe()
    lines = [
        b'{"date": "2026-11-23T10:00:00.000Z", "log": "fluent bit line", "level": "info"}',
        b'{"timestamp": "2026-11-23T10:00:01Z", "message": "vector line", "host": "h1"}',
        b"plain text line",
        b'{"log": "bad json',
        b"x" * 200,
        b"[1, 2]",
        b"",
        b'{"log": "last line, no newline"}',
    ]
    os.write(write_fd, b"\n".join(lines))
    os.close(write_fd)

    async def scenario() -> tuple[list[Any], bool]:
        sid = f"stdin-{uuid.uuid4().hex[:6]}"
        options = StdinSourceOptions(format="auto", max_line_bytes=100, time_field="timestamp")
        with open(read_fd, "rb", buffering=0) as stream:
            source = StdinSource(sid, options, stream=stream)  # type: ignore[arg-type]
            queue = BatchQueue(100)
            await source.start(queue)
            await asyncio.wait_for(source.finished.wait(), 10)
            records = [r for b in queue.drain_nowait() for r in b.records]
            await source.stop()
        await source.finish(0.5)
        return [(r.line, r.fields, r.time) for r in records] + [sid], source.finished.is_set()

    result, finished = asyncio.run(scenario())
    sid = result.pop()
    assert finished
    assert [line for line, _, _ in result] == [
        "fluent bit line",
        "vector line",
        "plain text line",
        '{"log": "bad json',
        "x" * 100,
        "[1, 2]",
        "last line, no newline",
    ]
    assert ("level", "info") in result[0][1]
    assert result[1][2] == 1_795_428_001.0  # time from the configured field
    assert dropped(sid, "line_truncated") == 1


def test_socket_source_vector_ndjson() -> None:
    """Vector's `socket` sink: newline-delimited JSON over TCP."""

    async def scenario() -> list[str]:
        source = SocketSource("vector", SocketSourceOptions(listen="tcp:127.0.0.1:0"))
        queue = BatchQueue(1000)
        await source.start(queue)
        port = source.address.port  # type: ignore[union-attr]

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as s:
                for i in range(100):
                    s.sendall(orjson.dumps({"message": f"vector {i}", "source_type": "file"}) + b"\n")

        await asyncio.to_thread(send)
        got = await drain(queue, 100)
        await source.stop()
        await source.finish(0.5)
        return got

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == [f"vector {i}" for i in range(100)]


def test_file_sink_rotates_by_size(tmp_path: Path) -> None:
    """The file sink rotates at max_bytes, keeps keep_files old files and loses no event."""
    sink = FileSink("ev", FileSinkOptions(path=str(tmp_path / "events.jsonl"), max_bytes=1024, keep_files=2))
    sink.open()
    events = [orjson.dumps({"n": i, "pad": "y" * 90}) for i in range(40)]
    for i in range(0, 40, 5):
        sink.write(events[i : i + 5])
        sink.flush()
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(p.stat().st_size <= 1024 for p in tmp_path.iterdir())
    kept = []
    for name in ["events.jsonl.2", "events.jsonl.1", "events.jsonl"]:
        kept += [json.loads(line)["n"] for line in (tmp_path / name).read_text().splitlines()]
    assert kept == list(range(40 - len(kept), 40))  # the newest events, in order, none torn


def test_forward_sink_acks_and_retries_into_a_forward_source() -> None:
    """The forward sink waits for acks; when the receiver is down it retries with the same chunk
    and delivers once the receiver is back."""

    async def scenario() -> list[Any]:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        sink = ForwardSink(
            "fwd-out",
            ForwardSinkOptions(
                address=f"tcp:127.0.0.1:{port}", max_retries=20, retry_backoff_secs=0.05, ack_timeout_secs=2.0
            ),
        )
        events = [orjson.dumps({"event_name": "logdetect.anomaly", "n": i}) for i in range(10)]
        writer = asyncio.create_task(asyncio.to_thread(sink.write, events))
        await asyncio.sleep(0.3)  # the sink is retrying against a closed port
        assert not writer.done()
        source = ForwardSource(
            "fwd-in", ForwardSourceOptions(listen=f"tcp:127.0.0.1:{port}", message_field=["event_name"])
        )
        queue = BatchQueue(1000)
        await source.start(queue)
        got: list[Batch] = []
        while not got:
            got = await queue.get_many(1000, 0.1)
        for batch in got:
            batch.finish(True)
        await asyncio.wait_for(writer, 10)
        await asyncio.to_thread(sink.close)
        await source.stop()
        await source.finish(0.5)
        return [dict(r.fields)["n"] for b in got for r in b.records]

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == [str(i) for i in range(10)]
    assert dropped("fwd-out", "forward_failed") == 0
