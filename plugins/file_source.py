"""`file` source: follow a file like `tail -F`, resuming from the saved offset after a restart.

- Rotation by rename (`app.log` → `app.log.1`, new `app.log`): the old file is read to its end,
  then the new file is opened and read from its start.
- Truncation (`: > app.log`, copytruncate): the size drops below our offset → read from 0.
- Offsets: the offset saved is the end of the last line whose batch was processed and written
  to the sinks (the batch's `on_done`), together with the file's device and inode, in
  `<state_dir>/offsets/<source id>.json`, written atomically (temp file, fsync, rename). After a
  restart reading resumes there when the inode still matches; a rotated-away file is read from
  the start of the current one.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from agent.atomic import write_atomic
from agent.components import BatchQueue, Source, now, option, put_from_thread
from agent.types import Batch
from plugins.records import LineDecoder, LineSplitter, RecordFieldOptions
from plugins.stdin_source import LINE_FORMATS, take_lines

log = structlog.get_logger(__name__)

READ_BYTES = 256 * 1024
START_AT = ("beginning", "end")


@dataclass(frozen=True)
class FileSourceOptions(RecordFieldOptions):
    """Options of `[sources.<id>] type = "file"`."""

    path: str = option("", "the file to follow (required)")
    format: str = option("auto", "auto | plain | json: how each line is read (auto = JSON when it starts with '{')")
    read_from: str = option("end", "beginning | end: where to start a file never seen before (as Fluent Bit's tail)")
    poll_interval_secs: float = option(0.25, "how often the file is checked for new lines and rotation")
    message_field: list[str] = option(
        factory=lambda: ["log", "message", "msg"], doc="record field(s) holding the log line, first present wins"
    )
    level_field: str = option("", 'optional record field with the level (e.g. "level")')
    entity_field: str = option("", 'optional record field with the entity (e.g. "kubernetes.pod_name")')
    time_field: str = option("", "optional record field with the time (epoch seconds or RFC 3339)")
    max_line_bytes: int = option(64 * 1024, "longer lines are cut here (counted as line_truncated)")

    def problems(self) -> list[str]:
        """Every invalid option, as messages naming it (empty when valid)."""
        out: list[str] = []
        if not self.path:
            out.append("path is required (the file to follow)")
        if self.format not in LINE_FORMATS:
            out.append(f"format = {self.format!r}: use one of {', '.join(LINE_FORMATS)}")
        if self.read_from not in START_AT:
            out.append(f"read_from = {self.read_from!r}: use one of {', '.join(START_AT)}")
        if self.poll_interval_secs <= 0 or self.max_line_bytes < 16:
            out.append("poll_interval_secs must be > 0 and max_line_bytes >= 16")
        return out


@dataclass(frozen=True, slots=True)
class Offset:
    """Where reading stopped in which file (device and inode), so restarts resume there."""

    dev: int
    ino: int
    offset: int




class FileSource(Source):
    """Follows a file like `tail -F` (rotation, truncation), resuming from its saved offset."""

    type_name = "file"

    def __init__(self, source_id: str, options: FileSourceOptions, state_dir: Path | None = None) -> None:
        super().__init__(source_id)
        self.options = options
        self.path = Path(options.path)
        self.offset_path = state_dir / "offsets" / f"{source_id}.json" if state_dir is not None else None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._committed: Offset | None = None
        self._saved: Offset | None = None
        self._lock = threading.Lock()

    # --- offsets ---

    def load_offset(self) -> Offset | None:
        """The saved offset, or None when there is none or it cannot be read."""
        if self.offset_path is None or not self.offset_path.is_file():
            return None
        try:
            raw = json.loads(self.offset_path.read_text(encoding="utf-8"))
            return Offset(int(raw["dev"]), int(raw["ino"]), int(raw["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable offset file", source=self.id, path=str(self.offset_path))
            return None

    def save_offset(self) -> None:
        """Durably save the offset of the last processed batch, if it moved."""
        with self._lock:
            committed = self._committed
        if self.offset_path is None or committed is None or committed == self._saved:
            return
        payload = {
            "path": str(self.path),
            "dev": committed.dev,
            "ino": committed.ino,
            "offset": committed.offset,
        }
        write_atomic(self.offset_path, json.dumps(payload).encode())
        self._saved = committed

    def _commit(self, offset: Offset) -> None:
        with self._lock:
            self._committed = offset

    # --- lifecycle ---

    async def start(self, queue: BatchQueue) -> None:
        """Follow the file from a reader thread that hands batches to `queue`."""
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._follow, args=(loop, queue), name=f"source-{self.id}", daemon=True
        )
        self._thread.start()
        log.info("source following", source=self.id, type=self.type_name, path=str(self.path))

    async def stop(self) -> None:
        """Stop the reader thread and save the offset reached."""
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
        self.save_offset()

    # --- the follower thread ---

    def _open(self, first: bool) -> tuple[BinaryIO, os.stat_result] | None:
        try:
            fh = self.path.open("rb")
        except OSError:
            return None
        st = os.fstat(fh.fileno())
        if first:
            saved = self.load_offset()
            if (
                saved is not None
                and (saved.dev, saved.ino) == (st.st_dev, st.st_ino)
                and saved.offset <= st.st_size
            ):
                fh.seek(saved.offset)
                log.info("resuming file", source=self.id, offset=saved.offset)
            elif saved is None and self.options.read_from == "end":
                fh.seek(0, os.SEEK_END)
        return fh, st

    def _follow(self, loop: asyncio.AbstractEventLoop, queue: BatchQueue) -> None:
        decoder = self.options.line_decoder(self.id)
        splitter = LineSplitter(self.options.max_line_bytes)
        opened = None
        first = True
        last_save = now()
        try:
            while not self._stopping.is_set():
                if opened is None:
                    opened = self._open(first)
                    if opened is None:
                        self._stopping.wait(self.options.poll_interval_secs)
                        continue
                    first = False
                fh, st = opened
                data = fh.read(READ_BYTES)
                if data:
                    lines = splitter.feed(data)
                    end = fh.tell() - splitter.pending
                    if not self._hand_over(
                        loop, queue, decoder, lines, splitter, Offset(st.st_dev, st.st_ino, end)
                    ):
                        break
                    continue
                # At the end of the file: rotated, truncated, or just nothing new yet?
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    current = None
                if current is not None and (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                    # Rotated: the old file was read to its end; a last line without newline counts.
                    tail = splitter.finish()
                    self._hand_over(
                        loop, queue, decoder, tail, splitter, Offset(st.st_dev, st.st_ino, fh.tell())
                    )
                    fh.close()
                    opened = None
                    log.info("file rotated", source=self.id, path=str(self.path))
                    continue
                if current is not None and current.st_size < fh.tell():
                    log.info("file truncated", source=self.id, path=str(self.path))
                    splitter.finish()
                    fh.seek(0)
                    continue
                if now() - last_save >= 1.0:
                    self.save_offset()
                    last_save = now()
                self._stopping.wait(self.options.poll_interval_secs)
        finally:
            if opened is not None:
                opened[0].close()

    def _hand_over(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: BatchQueue,
        decoder: LineDecoder,
        lines: list[bytes],
        splitter: LineSplitter,
        offset: Offset,
    ) -> bool:
        records = take_lines(decoder, self.id, splitter, lines)
        if not records:
            self._commit(offset)
            return True

        def committed(processed: bool) -> None:
            if processed:
                self._commit(offset)

        # Not handed over on shutdown: the offset stays uncommitted, so a restart reads it again.
        return put_from_thread(loop, queue, Batch(source=self.id, records=records, on_done=committed), self._stopping)
