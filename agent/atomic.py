"""Durable file replacement, one implementation for every file we write whole (template
snapshots, file-source offsets, simulated logs and their ground truth)."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO


@contextlib.contextmanager
def replacing(path: Path, *, private: bool = True, buffering: int = -1) -> Iterator[BinaryIO]:
    """A binary file whose content replaces `path` when the block ends without an exception.

    Temp file in the same directory (so the rename is atomic), fsync it, rename over the
    target, fsync the directory (so the rename itself survives a power cut). On an exception
    the temp file is removed and `path` is left as it was. `private` files get mode 0600
    (state can reveal log content); otherwise the process umask decides, as for `open()`.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb", buffering=buffering) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def replacing_text(path: Path, *, private: bool = True, buffering: int = 1 << 20) -> Iterator[TextIO]:
    r"""`replacing` for UTF-8 text with `\n` line ends, whatever the platform."""
    with replacing(path, private=private, buffering=buffering) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
        try:
            yield text
            text.flush()
        finally:
            text.detach()


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file (mode 0600)."""
    with replacing(path) as f:
        f.write(data)
