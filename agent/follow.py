"""Follow a file like `tail -F`: by name, surviving rotation (rename + new file) and truncation.

Yields batches of complete lines (bytes, without the newline), and an empty batch whenever
nothing arrived for `poll_secs`, so the caller's timers keep running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


def follow_batches(
    path: str, from_start: bool = False, poll_secs: float = 0.2, max_batch: int = 1024,
    max_line_bytes: int = 16 << 20,
) -> Iterator[list[bytes]]:
    fh = None
    ident: tuple[int, int] | None = None
    pending = b""
    first = True
    while True:
        if fh is None:
            try:
                fh = open(path, "rb")  # noqa: SIM115 - kept open across iterations on purpose
            except FileNotFoundError:
                yield []
                time.sleep(poll_secs)
                continue
            st = os.fstat(fh.fileno())
            ident = (st.st_dev, st.st_ino)
            if first and not from_start:
                fh.seek(0, os.SEEK_END)
            first = False
        chunk = fh.read(1 << 16)
        if chunk:
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            if len(pending) > max_line_bytes:  # a runaway line: hand it on in pieces, lose nothing
                lines.append(pending)
                pending = b""
            for start in range(0, len(lines), max_batch):
                yield lines[start : start + max_batch]
            continue
        # At EOF: has the file been truncated, or replaced by a new one (rotation)?
        now_st: os.stat_result | None
        try:
            now_st = os.stat(path)
        except FileNotFoundError:
            now_st = None
        position = fh.tell()
        if now_st is not None and (now_st.st_dev, now_st.st_ino) != ident:
            # Rotated: the old file is finished (its tail was read above); start the new one at 0.
            if pending:
                yield [pending]
                pending = b""
            fh.close()
            fh = None
            from_start = True
            continue
        if now_st is not None and now_st.st_size < position:
            fh.seek(0)  # truncated (copytruncate): start again from the top
            pending = b""
            continue
        yield []
        time.sleep(poll_secs)
