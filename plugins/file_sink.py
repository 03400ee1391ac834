"""`file` sink: event JSON lines appended to a file, rotated by size.

When the file would grow past `max_bytes`, it is renamed to `<path>.1` (older ones shift to
`.2` … `.<keep_files>`, the oldest is deleted) and a new file is started, as logrotate would.
With `fsync = true` (the default) every batch is durable before its records are acked: the
daemon writes a batch's events and calls `flush` once (one fsync per batch, a group commit),
and only then may a Forward source ack. A write or fsync that fails raises, so the batch is not
acked and the client resends it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from agent import metrics
from agent.components import Sink, count_drop, option
from agent.delivery import SinkPosition

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FileSinkOptions:
    """Options of `[sinks.<id>] type = "file"`."""

    path: str = option("", "the file events are appended to (required)")
    max_bytes: int = option(100 * 1024 * 1024, "rotate to <path>.1 ... beyond this size")
    keep_files: int = option(5, "rotated files kept")
    fsync: bool = option(True, "fsync every batch before its records are acked (false: faster, not durable)")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out: list[str] = []
        if not self.path:
            out.append("path is required (the file to write events to)")
        if self.max_bytes < 1024:
            out.append("max_bytes must be at least 1024")
        if self.keep_files < 0:
            out.append("keep_files must be >= 0")
        return out


class FileSink(Sink):
    """Appends event JSON lines to a file, rotating it by size."""

    type_name = "file"

    def __init__(self, sink_id: str, options: FileSinkOptions) -> None:
        super().__init__(sink_id)
        self.options = options
        self.path = Path(options.path)
        self._fh: BinaryIO | None = None
        self._size = 0

    def open(self) -> None:
        """Open (or create) the file for appending, creating its directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_line(self.path)
        self._fh = self.path.open("ab")
        self._size = self._fh.tell()

    def position(self) -> SinkPosition | None:
        """Where the next write goes: the file's inode and size (opening it first)."""
        if self._fh is None:
            self.open()
        if self._fh is None:
            return None
        st = os.fstat(self._fh.fileno())
        return st.st_ino, st.st_size

    def recover(self, position: SinkPosition) -> None:
        """Cut the file back to `position` (a write a crash cut short). When the file was rotated
        during that write, the rotated one is cut back and the new one emptied."""
        inode, size = position
        rotated = self.path.with_name(f"{self.path.name}.1")
        for candidate in (self.path, rotated):
            try:
                st = candidate.stat()
            except FileNotFoundError:
                continue
            if st.st_ino != inode:
                continue
            if st.st_size > size:
                os.truncate(candidate, size)
                log.warning("event file cut back to the last complete write", sink=self.id,
                            path=str(candidate), removed_bytes=st.st_size - size)
            if candidate is rotated and self.path.exists():
                os.truncate(self.path, 0)
            return

    def _rotate(self) -> None:
        if self._fh is not None:
            self._fh.close()
        keep = self.options.keep_files
        if keep == 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self.path.with_name(f"{self.path.name}.{keep}")
            oldest.unlink(missing_ok=True)
            for n in range(keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
            if self.path.exists():
                self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._fh = self.path.open("ab")
        self._size = 0
        log.info("event file rotated", sink=self.id, path=str(self.path))

    def write(self, events: Sequence[bytes]) -> None:
        """Append the events, one per line, rotating first when the file is full."""
        if not events:
            return
        if self._fh is None:
            self.open()
        try:
            for event in events:
                data = event + b"\n"
                if self._size and self._size + len(data) > self.options.max_bytes:
                    self._rotate()
                if self._fh is None:
                    raise OSError("event file is not open")
                self._fh.write(data)
                self._size += len(data)
        except OSError as exc:
            count_drop(self.id, "write_failed", len(events))
            log.error("event file write failed", sink=self.id, error=str(exc), throttle=True)
            raise
        metrics.records_out.labels(component=self.id).inc(len(events))

    def flush(self) -> None:
        """Flush to the OS, and to disk when `fsync` is set."""
        if self._fh is None:
            return
        self._fh.flush()
        if self.options.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush and close the file."""
        if self._fh is not None:
            self.flush()
            self._fh.close()
            self._fh = None


def _cut_torn_line(path: Path) -> None:
    """A crash mid-write may leave a last line without its newline: cut it off."""
    try:
        with path.open("r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            start = max(0, size - 1024 * 1024)
            while True:
                f.seek(start)
                tail = f.read(size - start)
                cut = tail.rfind(b"\n")
                if cut >= 0 or start == 0:
                    f.truncate(start + cut + 1)
                    return
                start = max(0, start - 1024 * 1024)
    except FileNotFoundError:
        return
