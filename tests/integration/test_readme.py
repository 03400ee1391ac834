"""The README is exactly true: its quick start is the two `make` commands, its demo excerpt is
what `make demo` prints, and the commands of its measuring section run as written.

`make demo` and `make test` themselves are checked with `make -n` (they set up `.venv`, and
`make test` runs this very suite); the demo command that `make demo` runs is run for real by the
`demo_run` fixture. Of the measuring commands, `eval hdfs-sessions` trains three torch models
for several minutes, so it runs with `--help` appended (its data paths are checked to exist);
every other line runs as written.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import DATA, DEMO_TIMEOUT, REPO, DemoRun, need

README = REPO / "README.md"
CUT = "[…]"  # a line of its own in an excerpt: output left out here
TOO_LONG_TO_RUN = ("eval hdfs-sessions",)


def section(title: str) -> str:
    """The text under a `## title` or `### title` heading, up to the next heading of its level."""
    text = README.read_text()
    m = re.search(rf"^(#+) {re.escape(title)}\s*$", text, re.M)
    assert m is not None, f"README has no section {title!r}"
    level = len(m.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, m.end())
    return text[m.end() : end.start() if end else len(text)]


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks in `text`, in order."""
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)


def make_dry_run(target: str) -> list[str]:
    """The commands `make TARGET` would run (`make -n`: nothing is run or installed)."""
    # Under `make test` the outer make's variables would make this one print "Entering directory".
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    run = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().splitlines()


def test_quick_start_is_exactly_two_make_commands():
    """The quick start is `make demo` and `make test`, and they run the demo and pytest."""
    block = code_blocks(section("Quick start"))[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert make_dry_run("demo")[-1] == ".venv/bin/logdetect demo --workdir demo-out"
    assert make_dry_run("test")[-1] == ".venv/bin/python -m pytest -q"


@pytest.mark.timeout(DEMO_TIMEOUT + 60)
def test_demo_excerpt_is_what_make_demo_prints(demo_run: DemoRun):
    """Each part of the excerpt (parts are separated by a `[…]` line) appears verbatim, in order."""
    excerpt = code_blocks(section("What you get"))[0]
    parts = [p.strip("\n") for p in re.split(rf"^{re.escape(CUT)}\n", excerpt, flags=re.M)]
    assert len(parts) >= 2 and all(parts)
    at = 0
    for part in parts:
        found = demo_run.stdout.find(part, at)
        assert found >= 0, (
            "the demo's output changed: copy its new lines into README.md's 'What you get' excerpt.\n"
            f"Not in the output (after offset {at}):\n{part}\n\n--- output:\n{demo_run.stdout}"
        )
        at = found + len(part)


@pytest.mark.timeout(900)
def test_measuring_commands_run_as_written(data_dir: Path):
    """The measuring section's lines run in bash from the checkout (the long one with --help)."""
    need((REPO / ".venv" / "bin" / "activate").exists(), "no .venv in the checkout: `make setup-test` creates it")
    lines = [line for line in code_blocks(section("Measuring it"))[0].splitlines() if line.strip()]
    assert any(line.startswith(". .venv/bin/activate") for line in lines)
    script = ["set -euo pipefail"]
    for line in lines:
        if any(cmd in line for cmd in TOO_LONG_TO_RUN):
            command = line.split("  #")[0].rstrip()
            script.append(f"printf 'ARG %s\\n' {command.split(' ', 3)[3]}")  # its arguments, expanded
            script.append(f"{command} --help")
        else:
            script.append(line)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOGDETECT_DATA": str(DATA)}
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=840)  # fmt: skip
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    args = [a[4:] for a in run.stdout.splitlines() if a.startswith("ARG ")]
    paths = [a for a in args if "/" in a]
    assert paths and all(Path(p).is_file() for p in paths), paths
    assert "F1" in run.stdout  # eval bgl printed its table
    assert "lines/s" in run.stdout  # the throughput benchmark printed its figure
