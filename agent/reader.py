"""Reading log files for `train` and `scan`: checks that fail fast with a clear message, then
lines as `Record`s. Invalid UTF-8 is replaced (U+FFFD), never fatal; a line is never lost
because the one before it was bad."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent.errors import InputError
from agent.types import Record


def check_inputs(paths: Sequence[str | os.PathLike[str]], allow_empty: bool = False) -> list[Path]:
    """The input paths, checked up front: each must exist and be a readable file, non-empty unless allow_empty."""
    checked: list[Path] = []
    for raw in paths:
        p = Path(raw)
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
    return checked


def iter_records(path: Path, source: str | None = None) -> Iterator[Record]:
    """Lines of a file (CRLF or LF, last line with or without newline) as Records."""
    src = source or path.name
    with path.open("rb") as fh:
        for raw in fh:
            yield Record(decode_line(raw), src)


def decode_line(raw: bytes) -> str:
    """One raw line as text: CRLF or LF removed, invalid UTF-8 replaced."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")
