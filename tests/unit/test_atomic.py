"""The durable-write helper: the target is either the old or the whole new file, never a mix."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.atomic import replacing_text, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_replaces_and_keeps_state_private(tmp_path: Path) -> None:
    """State files are replaced whole, created with mode 0600, and no temp file stays behind."""
    path = tmp_path / "sub" / "state.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_failure_inside_the_block_leaves_the_old_file(tmp_path: Path) -> None:
    """An exception while streaming leaves the previous content and removes the temp file."""
    path = tmp_path / "day.log"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), replacing_text(path, private=False) as fh:
        fh.write("half of a new file\n" * 1000)
        raise RuntimeError("generator failed")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["day.log"]


def test_public_text_files_follow_the_umask(tmp_path: Path) -> None:
    """Files that are not state (simulated logs) get the mode a plain open() would give."""
    old = os.umask(0o027)
    try:
        with replacing_text(tmp_path / "day.log", private=False) as fh:
            fh.write("line\r\nä\n")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "day.log") == 0o640
    assert (tmp_path / "day.log").read_bytes() == "line\r\nä\n".encode()
