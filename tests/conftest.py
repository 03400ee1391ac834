"""Shared fixtures: where the labelled data lives, and the rules for skipping.

Tests that need ../shared/data or torch skip with a clear reason when it is absent, except
under CI=true, where a missing dependency is a failure (CI must run everything).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip the calling test when `condition` is false; fail instead under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared labelled data directory (skips without it, fails under CI=true)."""
    need(DATA.is_dir(), f"labelled data not found at {DATA} (set LOGDETECT_DATA)")
    return DATA


@pytest.fixture(scope="session")
def torch_available() -> bool:
    """True when torch is installed (skips without it, fails under CI=true)."""
    need(importlib.util.find_spec("torch") is not None, "torch is not installed (pip install '.[train]')")
    return True


@pytest.fixture(scope="session")
def hdfs(data_dir: Path) -> tuple[list[list[int]], dict[int, int]]:
    """The DeepLog-format normal HDFS sessions as model tokens, and their vocabulary."""
    from trainer.sequences import build_vocab, encode, read_sessions

    sessions = read_sessions(data_dir / "hdfs" / "deeplog" / "hdfs_train")
    vocab = build_vocab(sessions)
    return encode(sessions, vocab), vocab
