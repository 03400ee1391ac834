"""packaging/Containerfile.*: no container engine here, so check what can be checked statically:
the agent image takes exactly one ONNX Runtime extra by build argument and no torch, runs as a
non-root user, exposes the status port, and both images build the wheel from the sources the
distribution contains."""

from __future__ import annotations

import json
import re
import tomllib

from conftest import REPO

from agent.http_status import DEFAULT_PORT

PACKAGING = REPO / "packaging"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_agent_image_variants_and_runtime() -> None:
    """The agent image installs exactly one ONNX Runtime extra and never torch."""
    steps = instructions((PACKAGING / "Containerfile.agent").read_text())
    args = [a for i, a in steps if i == "ARG"]
    assert "VARIANT=cpu" in args
    run = " ".join(a for i, a in steps if i == "RUN")
    # The extra is the build argument itself, so cpu and gpu can never both be installed.
    assert '[$VARIANT]"' in run and "cpu|gpu" in run
    assert "import torch" in run  # the build fails if torch leaked in
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"cpu", "gpu"} <= set(extras)
    assert not any("torch" in dep for extra in ("cpu", "gpu") for dep in extras[extra])
    user = [a for i, a in steps if i == "USER"]
    assert user and not user[-1].startswith(("0", "root"))
    assert [a for i, a in steps if i == "EXPOSE"] == [str(DEFAULT_PORT)]
    assert json.loads(next(a for i, a in steps if i == "ENTRYPOINT")) == ["logdetect"]
    cmd = json.loads(next(a for i, a in steps if i == "CMD"))
    assert cmd[:2] == ["agent", "--config"]
    env = " ".join(a for i, a in steps if i == "ENV")
    assert "ORT_INTRA_OP_NUM_THREADS=1" in env


def test_both_images_build_the_wheel_from_the_distributions_packages() -> None:
    """Both images copy every packaged directory and build the wheel from it."""
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    wanted = {p.rstrip("*") for p in packages["include"]}
    for name in ("Containerfile.agent", "Containerfile.trainer"):
        steps = instructions((PACKAGING / name).read_text())
        copied = {a.split()[0] for i, a in steps if i == "COPY" and not a.startswith("--from")}
        assert wanted <= copied, f"{name} does not copy {wanted - copied}"
        assert any(i == "RUN" and "pip wheel" in a for i, a in steps)
    trainer_run = " ".join(
        a for i, a in instructions((PACKAGING / "Containerfile.trainer").read_text()) if i == "RUN"
    )
    assert "[cpu,train]" in trainer_run
