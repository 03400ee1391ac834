"""Start-up failures are one clear line and exit code 2, before READY (issue 14, defect 4);
`validate` already catches the ones that can be known before start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ops.agent_harness import REPO


def _config(tmp_path: Path, model: Path, source: str, sink_path: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
model = "{model}"
state_dir = "{tmp_path / "state"}"
[agent]
metrics_listen = ""
{source}
[sinks.events]
type = "file"
path = "{sink_path}"
"""
    )
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert '"agent ready"' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("logdetect: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


FORWARD = '[sources.fwd]\ntype = "forward"\nlisten = "tcp:127.0.0.1:{port}"'


def test_a_busy_port_is_one_line_and_exit_2(bundles: dict[str, Path], tmp_path: Path) -> None:
    """A source whose port is taken stops the agent with one error line and exit code 2."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        config = _config(tmp_path, bundles["a"], FORWARD.format(port=port), str(tmp_path / "events.jsonl"))
        line = _one_error_line(_cli("agent", "--config", str(config)))
    finally:
        holder.close()
    assert "forward source 'fwd': cannot start" in line and "in use" in line


@pytest.mark.parametrize(
    "source, sink, expected",
    [
        (FORWARD.format(port=0), "/proc/logdetect/events.jsonl", "sinks.events.path: cannot create files in /proc"),
        ('[sources.z]\ntype = "zmq"\nlisten = "tcp://127.0.0.1:99999"', "", "port '99999' is outside 0-65535"),
    ],
    ids=["sink-under-proc", "zmq-port-99999"],
)
def test_validate_catches_what_start_would_fail_on(
    bundles: dict[str, Path], tmp_path: Path, source: str, sink: str, expected: str
) -> None:
    """`validate` reports what would make the agent fail at start, in the same words."""
    config = _config(tmp_path, bundles["a"], source, sink or str(tmp_path / "events.jsonl"))
    validated = _cli("validate", "--config", str(config))
    assert validated.returncode == 1 and expected in validated.stderr, validated.stderr
    line = _one_error_line(_cli("agent", "--config", str(config)))
    assert expected in line or ("cannot open" in line and sink in line)
