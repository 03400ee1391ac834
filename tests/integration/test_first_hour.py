"""What a new user meets in the first hour, through the real CLI: help in the user's terms with
defaults, `scan --input -`, binary input warned about (and refused by `train`), the text view's
entity equal to the JSON's, plurals, and a start notice from `watch`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from agent.cli import COMMANDS, build_parser

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
CLI = [sys.executable, "-m", "agent.cli"]
# Words that only the project's own documents explain.
INTERNAL = ("seed 00", "DETECTORS", "BASELINES.md", "§", "README §")


def cli(*args: str, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """`logdetect ARGS` in a subprocess, from the repo, output captured."""
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, env=ENV, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated day (small), a bundle trained on it without torch, and an incident day."""
    work = tmp_path_factory.mktemp("first-hour")
    train, day, model = work / "train.log", work / "day.log", work / "model"
    assert cli("simulate", "--days", "1", "--lines-per-day", "6000", "--output", str(train)).returncode == 0
    assert cli("simulate", "--days", "1", "--lines-per-day", "6000", "--seed", "2", "--start", "2026-11-03",
               "--incidents", "new_error", "--output", str(day)).returncode == 0  # fmt: skip
    run = cli("train", "--input", str(train), "--output", str(model), "--models", "isolation_forest,novel_set",
              "--entity", "component", "--quiet")  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()
    return model, day


def subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command parser below `parser`, named like "eval bgl"."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((name, sub))
                found += [(f"{name} {n}", s) for n, s in subparsers(sub)]
    return found


def test_every_option_has_help_with_its_default_in_user_terms():
    """Every option of every command says what it does and its default (or is required), and no
    help text points at the project's internal documents."""
    missing = []
    for name in COMMANDS:
        for command, parser in subparsers(build_parser(name)):
            if command.split()[0] != name:
                continue
            text = parser.format_help()
            leaks = [w for w in INTERNAL if w in text]
            assert not leaks, (command, leaks)
            for action in parser._actions:
                if not action.option_strings or action.dest in ("help", "version"):
                    continue
                help_text = action.help or ""
                if not help_text or not (action.required or "default" in help_text):
                    missing.append(f"{command} {action.option_strings[0]}: {help_text!r}")
    assert not missing, "\n".join(missing)


def test_scan_reads_stdin_and_text_entity_matches_json(small_model: tuple[Path, Path]):
    """`scan --input -` reads standard input; the text view's `Entity:` is the JSON's `entity`;
    counts of one are singular."""
    model, day = small_model
    data = day.read_bytes()
    text = cli("scan", "--model", str(model), "--input", "-", stdin=data)
    assert text.returncode == 0, text.stderr.decode()
    out = text.stdout.decode()
    assert out.startswith(f"Scanned {len(data.splitlines()):,} log lines")
    as_json = cli("scan", "--model", str(model), "--input", "-", "--format", "json", stdin=data)
    events = [json.loads(line) for line in as_json.stdout.decode().splitlines()]
    entities = {e["attributes"]["entity"] for e in events if e["attributes"].get("event.category") == "anomaly"}
    shown = {line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("Entity:")}
    assert shown and shown <= entities, (shown, entities)
    for number in ("1 anomalous lines", "1 lines", "1 sessions", "1 anomalies", "1 incident groups"):
        assert number not in out


def test_binary_input_is_warned_about_and_not_learned_from(small_model: tuple[Path, Path], tmp_path: Path):
    """Random bytes: `scan` warns and escapes control characters; `train` refuses without --force."""
    model, _ = small_model
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(40_000))
    scan = cli("scan", "--model", str(model), "--input", str(noise))
    assert scan.returncode == 0
    assert b"do not look like text (binary data?)" in scan.stderr
    assert not any(b < 0x20 and b not in (0x0A, 0x1B) for b in scan.stdout)  # no raw control bytes shown
    train = cli("train", "--input", str(noise), "--output", str(tmp_path / "m"), "--models", "isolation_forest")
    assert train.returncode == 2 and b"refusing to learn" in train.stderr and b"--force" in train.stderr
    assert not (tmp_path / "m").exists()


def test_watch_says_what_it_is_doing_at_start(small_model: tuple[Path, Path]):
    """`watch` prints one line on stderr at start: the model, what it reads, where events go."""
    model, day = small_model
    run = cli("watch", "--model", str(model), "--input", "-", stdin=b"".join(day.read_bytes().splitlines(True)[:50]))
    assert run.returncode == 0, run.stderr.decode()
    first = run.stderr.decode().splitlines()[0]
    assert first.startswith("logdetect watch: model ") and "standard input" in first
