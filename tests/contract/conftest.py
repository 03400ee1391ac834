"""Fixtures of the component contract suite (the harness is in harness.py)."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.harness import StdinFeeder


@pytest.fixture
def stdin_pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Standard input is a real pipe for the duration of a test (the stdin source reads it)."""
    read_fd, write_fd = os.pipe()
    stream = io.TextIOWrapper(open(read_fd, "rb", buffering=0))  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdin", stream)
    StdinFeeder.write_fd = write_fd
    yield
    if StdinFeeder.write_fd >= 0:
        os.close(StdinFeeder.write_fd)
        StdinFeeder.write_fd = -1
    # The reader thread may still sit in os.read; it ends at EOF (write end closed above).


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: Unix socket paths are limited to ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ldc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
