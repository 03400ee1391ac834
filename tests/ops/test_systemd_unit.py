"""systemd/: the unit verifies with systemd-analyze (verbatim, in a throw-away root), its
settings hang together, and ONNX Runtime inference works under the unit's sandbox pieces that
this machine can apply without systemd as PID 1 (see hardened_exec.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TEST_DEPS_HINT, need

SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "logdetect.service"
GPU_DROPIN = SYSTEMD / "logdetect-gpu.conf"
ENV_FILE = SYSTEMD / "logdetect.env"
TMPFILES = SYSTEMD / "logdetect.tmpfiles"
HARDENED_EXEC = Path(__file__).with_name("hardened_exec.py")
MAX_EXPOSURE = 2.5  # `systemd-analyze security` scale: 0 (locked down) .. 10 (exposed)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's ini dialect: repeated keys accumulate, '#' and ';' start comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    need(path is not None, f"systemd-analyze (Debian's systemd) is missing: {TEST_DEPS_HINT}")
    assert path is not None
    return path


def _fake_root(tmp_path: Path, unit_text: str, name: str = "logdetect.service") -> Path:
    """A root holding the unit verbatim, the binaries it names, and the stock targets/slices."""
    root = tmp_path / "root"
    stock = next(p for p in (Path("/lib/systemd/system"), Path("/usr/lib/systemd/system")) if p.is_dir())
    lib = root / "lib/systemd/system"
    lib.mkdir(parents=True, exist_ok=True)
    for unit in [*stock.glob("*.target"), *stock.glob("*.slice")]:
        shutil.copy(unit, lib / unit.name, follow_symlinks=True)
    for exe in ("opt/logdetect/bin/logdetect", "bin/kill"):
        path = root / exe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    units = root / "etc/systemd/system"
    (units / f"{name}.d").mkdir(parents=True, exist_ok=True)
    (units / name).write_text(unit_text)
    shutil.copy(GPU_DROPIN, units / f"{name}.d" / "gpu.conf")
    return root


def _verify(analyze: str, root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [analyze, "verify", f"--root={root}", f"/etc/systemd/system/{name}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unit_and_gpu_dropin_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """No error and not one warning (unknown keys only warn, so stderr must be empty)."""
    analyze = _systemd_analyze()
    result = _verify(analyze, _fake_root(tmp_path, UNIT.read_text()), "logdetect.service")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    # The check can fail: a misspelt hardening key is reported.
    bad = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict")
    broken = _verify(analyze, _fake_root(tmp_path / "bad", bad, "bad.service"), "bad.service")
    assert "ProtectSystm" in broken.stderr


def test_security_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security --offline` rates the unit (with the GPU drop-in) as well hardened."""
    analyze = _systemd_analyze()
    root = _fake_root(tmp_path, UNIT.read_text())
    result = subprocess.run(
        [analyze, "security", "--offline=yes", f"--root={root}", "/etc/systemd/system/logdetect.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for logdetect\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_unit_settings_hang_together() -> None:
    """The unit's type, watchdog, restart, reload and start command agree with the agent."""
    unit = parse_unit(UNIT.read_text())
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) > 0 and service["Restart"] == ["on-failure"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    exec_start = service["ExecStart"][0].split()
    pre = service["ExecStartPre"][0].split()
    assert exec_start[1] == "agent" and pre[1] == "validate"
    # validate checks the same config the agent runs.
    assert exec_start[exec_start.index("--config") + 1] == pre[pre.index("--config") + 1]
    config_path = exec_start[exec_start.index("--config") + 1]
    assert config_path.startswith("/etc/logdetect/")  # inside ConfigurationDirectory=
    for key in ("StateDirectory", "RuntimeDirectory", "ConfigurationDirectory"):
        assert service[key] == ["logdetect"]
    assert service["DynamicUser"] == ["yes"]
    assert service["SystemCallFilter"][0] == "@system-service"
    assert service["PrivateDevices"] == ["yes"] and service["MemoryDenyWriteExecute"] == ["yes"]
    # ORT threads in the env file match the CPU quota (ORT cannot see cgroup limits).
    env = dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if line and not line.startswith("#"))
    quota = int(service["CPUQuota"][0].rstrip("%"))
    assert int(env["ORT_INTRA_OP_NUM_THREADS"]) == max(1, quota // 100)
    assert service["EnvironmentFile"] == ["-/etc/default/logdetect"]
    # The stop budget covers the agent's own 5 s drain with margin.
    assert int(service["TimeoutStopSec"][0]) >= 10
    # GPU drop-in: devices visible again, only NVIDIA ones, W^X relaxed for the CUDA JIT.
    gpu = parse_unit(GPU_DROPIN.read_text())["Service"]
    assert gpu["PrivateDevices"] == ["no"] and gpu["DevicePolicy"] == ["closed"]
    assert gpu["DeviceAllow"] and all("nvidia" in d for d in gpu["DeviceAllow"])
    tmpfiles = [line.split() for line in TMPFILES.read_text().splitlines() if line and line[0] != "#"]
    assert tmpfiles[0][:2] == ["d", "/etc/logdetect"]
    assert all(row[1].startswith("/etc/logdetect") for row in tmpfiles)  # state is StateDirectory='s


def expand_syscall_groups(analyze: str, spec: list[str]) -> set[str]:
    """`SystemCallFilter=` values (allow list, then `~` deny lists) -> the system call names."""
    listing = subprocess.run([analyze, "syscall-filter"], capture_output=True, text=True, timeout=60, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.split()[0], [])
        elif line.startswith("    ") and current is not None:
            if not line.strip().startswith("#"):
                current.append(line.strip())
        else:
            current = None

    def expand(names: list[str]) -> set[str]:
        out: set[str] = set()
        for name in names:
            out |= expand(groups[name]) if name.startswith("@") else {name}
        return out

    allowed: set[str] = set()
    for value in spec:
        if value.startswith("~"):
            allowed -= expand(value[1:].split())
        else:
            allowed |= expand(value.split())
    return allowed


PROBE = r"""
import json, os, sys
from pathlib import Path
import numpy as np
from agent.onnx_session import OnnxModel, RuntimeOptions
model_dir = Path(sys.argv[1])
opts = RuntimeOptions.from_env()
out = {"threads": opts.intra_op_threads}
iforest = OnnxModel(model_dir / "iforest.onnx", opts)
x = np.load(model_dir / "x.npy")
out["scores"] = iforest.run({"X": x}, ["scores"])[0].ravel().tolist()
lstm = OnnxModel(model_dir / "lstm.onnx", opts)
seq = np.load(model_dir / "seq.npy")
out["lstm"] = lstm.run({"x": seq})[0].ravel().tolist()
out["provider"] = iforest.provider
print(json.dumps(out))
"""


def _build_models(model_dir: Path) -> None:
    """An IsolationForest (skl2onnx: TreeEnsemble ops) and an LSTM op: the agent's two op families."""
    try:
        import onnx
        from onnx import TensorProto, helper
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.ensemble import IsolationForest
    except ImportError as exc:
        need(False, f"the train extra is needed to build the probe models: {exc}")
        raise
    rng = np.random.default_rng(7)
    train = rng.normal(size=(400, 6)).astype(np.float32)
    clf = IsolationForest(n_estimators=20, random_state=0).fit(train)
    onx = convert_sklearn(
        clf, initial_types=[("X", FloatTensorType([None, 6]))], target_opset={"": 17, "ai.onnx.ml": 3}
    )
    (model_dir / "iforest.onnx").write_bytes(onx.SerializeToString())
    np.save(model_dir / "x.npy", rng.normal(size=(64, 6)).astype(np.float32) * 3)
    hidden, feat = 8, 4
    w_shape, r_shape = [1, 4 * hidden, feat], [1, 4 * hidden, hidden]
    weights = [
        helper.make_tensor("W", TensorProto.FLOAT, w_shape, rng.normal(size=w_shape).ravel()),
        helper.make_tensor("R", TensorProto.FLOAT, r_shape, rng.normal(size=r_shape).ravel()),
    ]
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=hidden)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", feat])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["seq", 1, "batch", hidden])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    (model_dir / "lstm.onnx").write_bytes(model.SerializeToString())
    np.save(model_dir / "seq.npy", rng.normal(size=(10, 32, feat)).astype(np.float32))


def test_onnx_runtime_inference_under_the_units_sandbox(tmp_path: Path) -> None:
    """NoNewPrivileges + W^X (MemoryDenyWriteExecute) + the unit's exact SystemCallFilter with
    EPERM: ONNX Runtime (2 intra-op threads) loads both models and gives identical outputs."""
    analyze = _systemd_analyze()
    service = parse_unit(UNIT.read_text())["Service"]
    allowed = expand_syscall_groups(analyze, service["SystemCallFilter"])
    # What hardened_exec.py relies on, and a sanity check of the expansion.
    assert "chroot" not in allowed and "setuid" not in allowed
    assert {"execve", "mmap", "futex", "sched_setaffinity", "socket"} <= allowed
    allowed_file = tmp_path / "allowed.txt"
    allowed_file.write_text("\n".join(sorted(allowed)) + "\n")
    _build_models(tmp_path)
    env = {**os.environ, "ORT_INTRA_OP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    env.pop("LOGDETECT_ORT_THREADS", None)
    probe = [sys.executable, "-c", PROBE, str(tmp_path)]
    free = subprocess.run(probe, capture_output=True, text=True, timeout=60, env=env)
    assert free.returncode == 0, free.stderr
    boxed = subprocess.run(
        [sys.executable, str(HARDENED_EXEC), str(allowed_file), "--", *probe],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    if boxed.returncode == 4:
        need(False, f"this kernel/libc cannot apply the sandbox: {boxed.stderr.strip()}")
    assert boxed.returncode == 0, boxed.stderr
    expected, got = json.loads(free.stdout), json.loads(boxed.stdout)
    assert got["threads"] == 2 and got["provider"] == "CPUExecutionProvider"
    assert got["scores"] == expected["scores"] and got["lstm"] == expected["lstm"]
    assert len(got["scores"]) == 64 and len(got["lstm"]) == 10 * 32 * 8


def test_the_sandbox_does_refuse_things(tmp_path: Path) -> None:
    """Negative control for the test above: the wrapper's filter blocks a call outside the list."""
    analyze = _systemd_analyze()
    allowed = expand_syscall_groups(analyze, ["@system-service", "~@privileged"])
    allowed_file = tmp_path / "allowed.txt"
    allowed_file.write_text("\n".join(sorted(allowed)) + "\n")
    code = "import os\ntry:\n    os.setuid(0)\nexcept PermissionError:\n    print('refused')\n"
    boxed = subprocess.run(
        [sys.executable, str(HARDENED_EXEC), str(allowed_file), "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if boxed.returncode == 4:
        need(False, f"this kernel/libc cannot apply the sandbox: {boxed.stderr.strip()}")
    assert boxed.returncode == 0, boxed.stderr
    assert boxed.stdout.strip() == "refused"
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(
            [sys.executable, str(HARDENED_EXEC), "/nonexistent", "--", "true"],
            check=True,
            capture_output=True,
            timeout=60,
        )


def _without_wall_clock(stdout: str) -> list[dict[str, object]]:
    events = [json.loads(line) for line in stdout.splitlines()]
    for event in events:
        event.pop("observed_timestamp", None)
    return events


def test_logdetect_scan_under_the_units_sandbox(bundles: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    """The agent's whole scoring path (parsing, Drain3, features, ONNX Runtime, incidents, JSON
    out) under NoNewPrivileges + W^X + the unit's SystemCallFilter gives the same events."""
    analyze = _systemd_analyze()
    allowed = expand_syscall_groups(analyze, parse_unit(UNIT.read_text())["Service"]["SystemCallFilter"])
    allowed_file = tmp_path / "allowed.txt"
    allowed_file.write_text("\n".join(sorted(allowed)) + "\n")
    log = data_dir / "loghub_2k" / "Linux" / "Linux_2k.log"  # unknown to the OpenSSH bundle: anomalies
    scan = [
        sys.executable,
        "-m",
        "agent.cli",
        "scan",
        "--model",
        str(bundles["a"]),
        "--input",
        str(log),
        "--format",
        "json",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    free = subprocess.run(scan, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert free.returncode == 0, free.stderr
    boxed = subprocess.run(
        [sys.executable, str(HARDENED_EXEC), str(allowed_file), "--", *scan],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    if boxed.returncode == 4:
        need(False, f"this kernel/libc cannot apply the sandbox: {boxed.stderr.strip()}")
    assert boxed.returncode == 0, boxed.stderr[-2000:]
    expected, got = _without_wall_clock(free.stdout), _without_wall_clock(boxed.stdout)
    assert len(got) > 10 and got == expected
