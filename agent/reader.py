"""Reading log files for `train` and `scan`: checks that fail fast with a clear message, then
lines as `Record`s. Invalid UTF-8 is replaced (U+FFFD), never fatal; a line is never lost
because the one before it was bad. `-` stands for standard input.

`TextCheck` counts lines that are not text (random bytes, a binary file passed by mistake), so
that `scan` can warn and `train` can refuse to learn "normal" from them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent.errors import InputError
from agent.types import Record

STDIN = Path("-")
# A line is binary when it has a NUL or when this share of its characters are control
# characters or U+FFFD (bytes that were not UTF-8).
BINARY_CHAR_SHARE = 0.1
# Shares of binary lines in an input: above WARN a warning, above REFUSE `train` stops.
BINARY_WARN_SHARE = 0.05
BINARY_REFUSE_SHARE = 0.5


def check_inputs(
    paths: Sequence[str | os.PathLike[str]], allow_empty: bool = False, allow_stdin: bool = False
) -> list[Path]:
    """The input paths, checked up front: each must exist and be a readable file, non-empty unless
    allow_empty; `-` (standard input) only with allow_stdin, and once."""
    checked: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p == STDIN:
            if not allow_stdin:
                raise InputError("this command reads files, not standard input (-)")
            checked.append(STDIN)
            continue
        if not p.exists():
            raise InputError(f"input {p} does not exist")
        if p.is_dir():
            raise InputError(f"input {p} is a directory: pass the log files in it (e.g. {p}/*.log)")
        if not os.access(p, os.R_OK):
            raise InputError(f"input {p} is not readable (permissions)")
        if not allow_empty and p.stat().st_size == 0:
            raise InputError(f"input {p} is empty")
        checked.append(p)
    if not checked:
        raise InputError("no input files given")
    if checked.count(STDIN) > 1:
        raise InputError("standard input (-) can be read only once")
    return checked


def input_name(path: Path) -> str:
    """How an input is named in records and messages: its file name, or "stdin" for `-`."""
    return "stdin" if path == STDIN else path.name


def iter_records(path: Path, source: str | None = None) -> Iterator[Record]:
    """Lines of a file, or of standard input for `-` (CRLF or LF, last line with or without
    newline), as Records."""
    src = source or input_name(path)
    if path == STDIN:
        yield from _records(sys.stdin.buffer, src)
        return
    with path.open("rb") as fh:
        yield from _records(fh, src)


def _records(fh: BinaryIO | Iterable[bytes], src: str) -> Iterator[Record]:
    for raw in fh:
        yield Record(decode_line(raw), src)


def decode_line(raw: bytes) -> str:
    """One raw line as text: CRLF or LF removed, invalid UTF-8 replaced."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")


def is_binary(line: str) -> bool:
    """Whether a decoded line looks like binary data rather than text."""
    if not line:
        return False
    if "\x00" in line:
        return True
    if line.isprintable():
        return False
    bad = sum(1 for c in line if c == "\ufffd" or (not c.isprintable() and c != "\t"))
    return bad >= BINARY_CHAR_SHARE * len(line)


@dataclass
class TextCheck:
    """How many of the lines read from one input look like binary data."""

    name: str
    lines: int = 0
    binary: int = 0

    def add(self, line: str) -> None:
        """Count one decoded line (the common, clean case costs one `isprintable`)."""
        self.lines += 1
        if "\ufffd" in line or "\x00" in line or not line.isprintable():
            self.binary += is_binary(line)

    @property
    def share(self) -> float:
        """The share of the lines read so far that look binary."""
        return self.binary / self.lines if self.lines else 0.0

    def problem(self) -> str | None:
        """A one-line description when a notable share of lines is not text, else None."""
        if self.binary < 3 or self.share <= BINARY_WARN_SHARE:
            return None
        return (
            f"{self.binary:,} of {self.lines:,} lines ({self.share:.0%}) in {self.name} do not look like text "
            "(binary data?)"
        )
