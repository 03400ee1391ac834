"""`file` sink: event JSON lines appended to a file, rotated by size.

When the file would grow past `max_bytes`, it is renamed to `<path>.1` (older ones shift to
`.2` … `.<keep_files>`, the oldest is deleted) and a new file is started, as logrotate would.
`fsync = true` makes every batch durable before the source acks it (slower).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from agent import metrics
from plugins.base import Sink, count_drop

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FileSinkOptions:
    """Options of `[sinks.<id>] type = "file"`."""

    path: str = ""
    max_bytes: int = 100 * 1024 * 1024
    keep_files: int = 5
    fsync: bool = False

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.path:
            out.append("path is required (the file to write events to)")
        if self.max_bytes < 1024:
            out.append("max_bytes must be at least 1024")
        if self.keep_files < 0:
            out.append("keep_files must be >= 0")
        return out


class FileSink(Sink):
    type_name = "file"

    def __init__(self, sink_id: str, options: FileSinkOptions) -> None:
        super().__init__(sink_id)
        self.options = options
        self.path = Path(options.path)
        self._fh: BinaryIO | None = None
        self._size = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")
        self._size = self._fh.tell()

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
            log.error("event file write failed", sink=self.id, error=str(exc))
            return
        metrics.records_out.labels(component=self.id).inc(len(events))

    def flush(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        if self.options.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self.flush()
            self._fh.close()
            self._fh = None
