"""Shared fixtures: where the labelled data lives, and the rules for skipping.

Tests that need ../shared/data or torch skip with a clear reason when it is absent, except
under CI=true, where a missing dependency is a failure (CI must run everything).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() == "true"


# Skip reasons name how to get what is missing; the summary hook below counts them by these marks.
DATA_MISSING = f"labelled data not found at {DATA}: see README.md 'Data' (or set LOGDETECT_DATA to its folder)"
TEST_DEPS_HINT = "run `make test-deps` to install it"


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
    need(DATA.is_dir(), DATA_MISSING)
    return DATA


@pytest.fixture(scope="session")
def torch_available() -> bool:
    """True when torch is installed (skips without it, fails under CI=true)."""
    need(importlib.util.find_spec("torch") is not None, "torch is not installed (pip install '.[train]')")
    return True


@dataclass(frozen=True)
class DemoRun:
    stdout: str
    workdir: Path  # demo-out: logs, model bundle, report.html


DEMO_TIMEOUT = 1200


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, torch_available: bool) -> DemoRun:
    """`logdetect demo --workdir demo-out` run once per session, exactly as `make demo` runs it
    (a relative workdir, so that the printed paths match too)."""
    cwd = tmp_path_factory.mktemp("demo")
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "demo", "--workdir", "demo-out"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return DemoRun(run.stdout, cwd / "demo-out")


@pytest.fixture(scope="session")
def hdfs(data_dir: Path) -> tuple[list[list[int]], dict[int, int]]:
    """The DeepLog-format normal HDFS sessions as model tokens, and their vocabulary."""
    from trainer.sequences import build_vocab, encode, read_sessions

    sessions = read_sessions(data_dir / "hdfs" / "deeplog" / "hdfs_train")
    vocab = build_vocab(sessions)
    return encode(sessions, vocab), vocab


def skip_notes(skipped: list[pytest.TestReport]) -> list[str]:
    """The closing lines for tests skipped for missing data or test tools (none when none were)."""

    def count(mark: str) -> int:
        return sum(1 for r in skipped if mark in str(getattr(r, "longrepr", "")))

    data, tools = count("labelled data not found"), count("make test-deps")
    notes = []
    if data:
        notes.append(
            f"NOTE: {data} data-dependent test{'s' if data != 1 else ''} skipped: the Loghub data is not at "
            f"{DATA} (README.md 'Data' says how to get it; set LOGDETECT_DATA if it is elsewhere)"
        )
    if tools:
        notes.append(
            f"NOTE: {tools} test{'s' if tools != 1 else ''} skipped for missing tools (Chromium, systemd, "
            "the npm Forward client, nats-server): `make test-deps` installs them"
        )
    return notes


def pytest_unconfigure(config: pytest.Config) -> None:
    """Print the skip notes last, after pytest's own summary line, where a reader looks."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    for note in skip_notes(reporter.stats.get("skipped", [])):
        reporter.write_line(note, yellow=True, bold=True)
