"""Records the pipeline could not process: counted, logged once per cause, and kept.

A record that makes a pipeline stage raise is dropped alone (the rest of its batch goes on).
`Rejected` says which record and why; the daemon hands each to a `DeadLetters` file in the
state directory (JSON lines: time, source, reason, cause, the raw line cut at
`MAX_LINE_CHARS`), bounded in bytes: when it would grow past `max_bytes` it is renamed to
`<name>.1` (the previous `.1` is deleted) and a new file is started, so at most twice
`max_bytes` is ever kept. `cause_of` names an exception by type and the innermost frame that
raised it: logs are throttled per cause, so every distinct cause is logged at least once.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog

log = structlog.get_logger(__name__)

DEAD_LETTER_FILE = "dead_letter.jsonl"
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
MAX_LINE_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class Rejected:
    """One record dropped because a pipeline stage raised on it."""

    source: str
    line: str
    stage: str
    cause: str
    error: str


def cause_of(exc: BaseException) -> str:
    """`ValueError@features.py:133`: the exception type and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__}@{Path(last.filename).name}:{last.lineno}"


def rejected(source: str, line: str, stage: str, exc: BaseException) -> Rejected:
    """A Rejected record for a line a stage raised on (the error text cut at 500 characters)."""
    return Rejected(source, line, stage, cause_of(exc), f"{type(exc).__name__}: {exc}"[:500])


class DeadLetters:
    """The bounded dead-letter file (or nothing, without a state directory)."""

    def __init__(self, path: Path | None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max(1024, max_bytes)
        self.kept = 0

    def add(self, items: list[Rejected], now: float) -> None:
        """Append rejected records as JSON lines, rotating to `.1` before the file outgrows max_bytes."""
        if self.path is None or not items:
            return
        data = b"".join(
            orjson.dumps(
                {
                    "time": now,
                    "source": r.source,
                    "stage": r.stage,
                    "cause": r.cause,
                    "error": r.error,
                    "line": r.line[:MAX_LINE_CHARS],
                    "line_truncated": len(r.line) > MAX_LINE_CHARS,
                }
            )
            + b"\n"
            for r in items
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = self.path.stat().st_size if self.path.exists() else 0
            if size and size + len(data) > self.max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data[: self.max_bytes])
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("dead-letter file write failed", path=str(self.path), error=str(exc), throttle=True)
            return
        self.kept += len(items)
