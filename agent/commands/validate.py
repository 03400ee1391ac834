"""Check an agent config file and the model bundle it names, listing every problem.

Exit status 0 when the agent would start with this config (the config parses, every key is
known and well-typed, and the bundle verifies); otherwise 1, with one line per problem.

examples:
  logdetect validate --config /etc/logdetect/agent.toml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, metavar="FILE", help="the agent's TOML config")


def check(config_path: Path) -> list[str]:
    """Every problem with the config and its bundle (empty when all is well)."""
    from agent.bundle import load_bundle
    from agent.config import parse_config
    from agent.errors import LogdetectError

    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        return [f"cannot read {config_path}: {exc.strerror or exc}"]
    config, problems = parse_config(text, config_path.resolve())
    model = config.model if config is not None else _model_path(text, config_path)
    if model is not None:
        try:
            bundle = load_bundle(model)
        except LogdetectError as exc:
            problems.append(f"model: {exc}")
        else:
            problems.extend(_compatibility(bundle))
    if config is not None and config.state_dir is not None:
        problems.extend(_writable_dir(config.state_dir, "state_dir"))
    return problems


def _model_path(text: str, config_path: Path) -> Path | None:
    """The model path even when the rest of the config has problems (so both get reported)."""
    import tomllib

    try:
        value = tomllib.loads(text).get("model")
    except tomllib.TOMLDecodeError:
        return None
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else config_path.resolve().parent / path


def _compatibility(bundle: object) -> list[str]:
    try:
        from agent.pipeline import check_bundle_compatible
    except ImportError:
        return []
    from agent.errors import LogdetectError

    try:
        check_bundle_compatible(bundle)  # type: ignore[arg-type]
    except LogdetectError as exc:
        return [f"model: {exc}"]
    return []


def _writable_dir(path: Path, what: str) -> list[str]:
    import os

    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return [f"{what}: {probe} exists and is not a directory"]
    if not os.access(probe, os.W_OK):
        return [f"{what}: {probe} is not writable by this user"]
    return []


def run(args: argparse.Namespace) -> int:
    path = Path(args.config)
    problems = check(path)
    if problems:
        sys.stderr.write(f"{path}: {len(problems)} problem(s)\n")
        for problem in problems:
            sys.stderr.write(f"  - {problem}\n")
        return 1
    sys.stdout.write(f"{path}: OK\n")
    return 0
