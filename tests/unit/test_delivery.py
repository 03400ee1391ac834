"""The delivery journal and the file sink's recovery: what makes a resent Forward chunk land in
the sink exactly once after a crash (the end-to-end proof is tests/ops/test_fault_injection.py)."""

from __future__ import annotations

from pathlib import Path

from agent.delivery import DeliveryJournal, Progress
from plugins.file_sink import FileSink, FileSinkOptions


def test_a_write_without_its_commit_is_cut_from_the_sink_and_its_keys_stay_open(tmp_path: Path) -> None:
    """A write cut short by a crash is cut from the sink and its batches count as not emitted."""
    sink = FileSink("events", FileSinkOptions(path=str(tmp_path / "events.jsonl")))
    journal = DeliveryJournal(tmp_path / "delivered.jsonl")
    journal.recover()
    journal.start()
    journal.intent({"events": pos} if (pos := sink.position()) else {})
    sink.write([b'{"n":1}', b'{"n":2}'])
    sink.flush()
    journal.commit([("fwd", b"chunk-1", Progress(2, 2)), ("fwd", b"chunk-2", Progress(1, 3))])
    # The next write is cut short by a crash: intent written, events half written, no commit.
    position = sink.position()
    assert position is not None
    journal.intent({"events": position})
    sink.write([b'{"n":3}', b'{"n":4}'])
    sink.flush()
    sink.close()
    journal.close()
    with (tmp_path / "events.jsonl").open("ab") as f:
        f.write(b'{"n":5')  # a torn line

    again = DeliveryJournal(tmp_path / "delivered.jsonl")
    recovered = again.recover()
    assert recovered.delivered == {"fwd": {b"chunk-1": Progress(2, 2), b"chunk-2": Progress(1, 3)}}
    assert recovered.unfinished == {"events": position}
    restarted = FileSink("events", FileSinkOptions(path=str(tmp_path / "events.jsonl")))
    restarted.recover(recovered.unfinished["events"])
    restarted.open()
    assert (tmp_path / "events.jsonl").read_bytes() == b'{"n":1}\n{"n":2}\n'
    again.start()
    assert again.recover().unfinished == {}


def test_the_journal_keeps_a_bounded_window_of_keys(tmp_path: Path) -> None:
    """The journal keeps only the last `window` keys, compacted on disk."""
    journal = DeliveryJournal(tmp_path / "delivered.jsonl", window=10)
    journal.recover()
    journal.start()
    for n in range(100):
        journal.commit([("fwd", n.to_bytes(2, "big"), Progress(1, 1))])
    journal.close()
    lines = (tmp_path / "delivered.jsonl").read_bytes().splitlines()
    assert len(lines) <= 21
    delivered = DeliveryJournal(tmp_path / "delivered.jsonl", window=10).recover().delivered["fwd"]
    assert sorted(int.from_bytes(k, "big") for k in delivered) == list(range(90, 100))


def test_a_torn_last_journal_line_is_ignored(tmp_path: Path) -> None:
    """A half-written last journal line is ignored on recovery."""
    path = tmp_path / "delivered.jsonl"
    path.write_bytes(b'{"commit": [["fwd", "6162", 3, 3]]}\n{"intent": {"ev')
    recovered = DeliveryJournal(path).recover()
    assert recovered.delivered == {"fwd": {b"ab": Progress(3, 3)}}
    assert recovered.unfinished == {}
