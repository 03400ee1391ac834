"""Release: packaging/release.sh builds the wheel; it installs into a clean venv with only the
`cpu` extra, `logdetect --version` works, and the agent side imports without torch.

Offline-ish: dependencies come from a wheelhouse in the user cache (`--no-index`). The first run
fills it from the package index (CI reaches PyPI); later runs need no network. ~15-25 s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, need

import agent

WHEELHOUSE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "logdetect-tests" / "wheelhouse"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]

# Imports every module of the agent side of the wheel, then reports what got imported.
IMPORT_AGENT_SIDE = r"""
import importlib, json, pkgutil, sys
import agent, plugins
failed = {}
for pkg in (agent, plugins):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"
heavy = sorted(m for m in ("torch", "sklearn", "onnx", "skl2onnx", "matplotlib") if m in sys.modules)
print(json.dumps({"failed": failed, "heavy": heavy, "agent_file": agent.__file__}))
"""


def _run(cmd: list[str], timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel packaging/release.sh builds."""
    need(shutil.which("bash") is not None, "bash is needed for packaging/release.sh")
    dist = tmp_path_factory.mktemp("dist")
    result = _run(
        ["bash", str(REPO / "packaging" / "release.sh"), "--dist", str(dist), "--python", sys.executable]
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = dist.glob("logdetect-*.whl")
    assert wheel.name.startswith(f"logdetect-{agent.__version__}-")
    sums = dict(line.split()[::-1] for line in (dist / "SHA256SUMS").read_text().splitlines())
    assert sums[wheel.name] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    return wheel


def _install(venv_python: Path, wheel: Path) -> subprocess.CompletedProcess[str]:
    return _run(
        [
            *PIP,
            "--python",
            str(venv_python),
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(WHEELHOUSE),
            f"{wheel}[cpu]",
        ],
        timeout=180,
    )


def test_wheel_installs_with_only_the_cpu_extra(built_wheel: Path, tmp_path: Path) -> None:
    """The wheel installs with only the cpu extra and the agent runs without torch."""
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _install(python, built_wheel)
    if installed.returncode != 0:
        # Fill the wheelhouse once (network), then install offline again.
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        filled = _run(
            [
                *PIP,
                "wheel",
                "--quiet",
                "--wheel-dir",
                str(WHEELHOUSE),
                f"logdetect[cpu] @ {built_wheel.as_uri()}",
            ],
            timeout=300,
        )
        for ours in WHEELHOUSE.glob("logdetect-*.whl"):
            ours.unlink()  # never let a stale build of ours be picked up later
        need(
            filled.returncode == 0, f"cannot fill the wheelhouse (no package index?): {filled.stderr[-500:]}"
        )
        installed = _install(python, built_wheel)
    assert installed.returncode == 0, installed.stderr

    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Run from an empty directory so the repo's own packages cannot shadow the installed ones.
    version = _run([str(venv / "bin" / "logdetect"), "--version"], cwd=tmp_path, env=clean_env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"logdetect {agent.__version__}"

    for heavy in ("torch", "sklearn"):
        probe = _run([str(python), "-c", f"import {heavy}"], cwd=tmp_path, env=clean_env)
        assert probe.returncode != 0, f"{heavy} is installed by the cpu extra"
    imported = _run([str(python), "-c", IMPORT_AGENT_SIDE], cwd=tmp_path, env=clean_env)
    assert imported.returncode == 0, imported.stderr
    report = __import__("json").loads(imported.stdout)
    assert str(venv) in report["agent_file"]
    assert report["heavy"] == []
    assert report["failed"] == {}, "agent-side modules that fail without the train extra"
    import_rt = _run(
        [str(python), "-c", "import onnxruntime; print(onnxruntime.get_available_providers())"],
        cwd=tmp_path,
        env=clean_env,
    )
    assert "CPUExecutionProvider" in import_rt.stdout
