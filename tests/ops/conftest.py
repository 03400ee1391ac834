"""Fixtures shared by the ops tests: real model bundles trained once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = ("OpenSSH", "Linux")  # bundle A / bundle B (both syslog, Loghub 2k)


def lines_of(data_dir: Path, system: str) -> list[str]:
    """The non-blank lines of one Loghub-2k system's log."""
    path = data_dir / "loghub_2k" / system / f"{system}_2k.log"
    return [line for line in path.read_text(errors="replace").splitlines() if line.strip()]


def _train(data_dir: Path, system: str, out: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "train",
            "--input",
            str(data_dir / "loghub_2k" / system / f"{system}_2k.log"),
            "--output",
            str(out),
            "--models",
            "isolation_forest",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def bundles(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real bundles (OpenSSH, Linux) and a corrupt copy of the second (one ONNX byte flipped)."""
    d = tmp_path_factory.mktemp("bundles")
    a = _train(data_dir, SYSTEMS[0], d / "a")
    b = _train(data_dir, SYSTEMS[1], d / "b")
    bad = d / "corrupt"
    shutil.copytree(b, bad)
    onnx = next(bad.glob("*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    return {"a": a, "b": b, "corrupt": bad}
