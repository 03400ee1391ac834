"""Exactly-once delivery across restarts: which keyed batches (Forward chunks) reached the sinks.

A Forward client resends every chunk it holds no ack for. After `kill -9` the agent must
recognise the chunks it had already written (ack them again, emit nothing) and the chunks it
had written only a prefix of (multi-line stitching holds a source's last record back): emit
only the rest. The daemon keeps this journal in `<state_dir>/delivered.jsonl`, one JSON line
per entry, every entry fsynced before the step after it:

    {"intent": {"<sink id>": [inode, size]}}     before a write: where each file sink ended
    … the sinks write and fsync the events …
    {"commit": [["<source>", "<key hex>", emitted, total], …]}   after it: progress per key

An intent with no commit after it is a write cut short by a crash: on start the file sinks are
cut back to where they ended (`Sink.recover`), so a batch's events are in the sink exactly when
its commit is in the journal. Within a window of the last `window` keys, a resent chunk is thus
never emitted twice and never lost. The journal is compacted (atomically) when it grows past
twice the window.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog

from agent.atomic import write_atomic

log = structlog.get_logger(__name__)

JOURNAL_FILE = "delivered.jsonl"
DEFAULT_WINDOW = 16_384

SinkPosition = tuple[int, int]  # (inode, size) of a file sink's file


@dataclass(frozen=True, slots=True)
class Progress:
    """How many records of a keyed batch were emitted (all when `emitted == total`)."""

    emitted: int
    total: int

    @property
    def complete(self) -> bool:
        """Whether every record of the batch was emitted."""
        return self.emitted >= self.total


@dataclass(frozen=True, slots=True)
class Recovered:
    """What the journal says after a restart."""

    delivered: dict[str, dict[bytes, Progress]]  # source id -> key -> progress
    unfinished: dict[str, SinkPosition]  # sink id -> where it ended before the cut-short write


class DeliveryJournal:
    """Append-only journal of sink positions and emitted batches: exactly once across a kill -9."""

    def __init__(self, path: Path, window: int = DEFAULT_WINDOW) -> None:
        self.path = path
        self.window = max(1, window)
        self._keys: OrderedDict[tuple[str, bytes], Progress] = OrderedDict()
        self._lines = 0
        self._fd: int | None = None

    # -- start ------------------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Read the journal (a torn last line is ignored) and open it for appending."""
        unfinished: dict[str, SinkPosition] = {}
        if self.path.exists():
            for raw in self.path.read_bytes().splitlines():
                try:
                    entry = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue  # torn by a crash mid-write: nothing after it was acted on
                if "intent" in entry:
                    unfinished = {str(k): (int(v[0]), int(v[1])) for k, v in entry["intent"].items()}
                elif "commit" in entry:
                    unfinished = {}
                    for source, key, emitted, total in entry["commit"]:
                        self._remember(str(source), bytes.fromhex(key), Progress(int(emitted), int(total)))
                self._lines += 1
        delivered: dict[str, dict[bytes, Progress]] = {}
        for (source, key), progress in self._keys.items():
            delivered.setdefault(source, {})[key] = progress
        return Recovered(delivered, unfinished)

    def start(self) -> None:
        """After the sinks were cut back (`recover`): start a fresh, compacted journal."""
        self._compact()

    # -- each write -------------------------------------------------------------------------

    def intent(self, positions: dict[str, SinkPosition]) -> None:
        """Record where each sink stands before a write, so a write cut short can be cut back."""
        self._append({"intent": {k: list(v) for k, v in positions.items()}})

    def commit(self, progress: list[tuple[str, bytes, Progress]]) -> None:
        """Record the batches a finished write emitted; compact once the journal doubles its window."""
        for source, key, p in progress:
            self._remember(source, key, p)
        self._append({"commit": [[s, k.hex(), p.emitted, p.total] for s, k, p in progress]})
        if self._lines > 2 * self.window:
            self._compact()

    def close(self) -> None:
        """Close the journal file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- internals --------------------------------------------------------------------------

    def _remember(self, source: str, key: bytes, progress: Progress) -> None:
        self._keys[(source, key)] = progress
        self._keys.move_to_end((source, key))
        while len(self._keys) > self.window:
            self._keys.popitem(last=False)

    def _append(self, entry: object) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(self._fd, orjson.dumps(entry) + b"\n")
        os.fsync(self._fd)
        self._lines += 1

    def _compact(self) -> None:
        """Rewrite the journal as one commit of the keys in the window (atomic replace)."""
        self.close()
        entry = {"commit": [[s, k.hex(), p.emitted, p.total] for (s, k), p in self._keys.items()]}
        write_atomic(self.path, orjson.dumps(entry) + b"\n")
        self._lines = 1
