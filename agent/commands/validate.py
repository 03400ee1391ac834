"""Check an agent config file and the model bundle it names, listing every problem.

Exit status 0 when the agent would start with this config (the config parses, every key is
known and well-typed, every port is in range and every address parses, the bundle verifies,
the state directory, file sink paths and Unix socket directories can be written); otherwise 1,
with one line per problem. A port another process holds is only known when the agent starts:
it then exits with code 2 and one line.

examples:
  logdetect validate --config /etc/logdetect/agent.toml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect validate`: the TOML config to check."""
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
    if config is not None:
        problems.extend(_io_paths(config))
    return problems


def _io_paths(config: Any) -> list[str]:
    """File sink paths and Unix socket directories the agent will create or write."""
    out: list[str] = []
    for sink in config.sinks:
        path = getattr(sink.options, "path", None)
        if sink.type == "file" and path:
            out.extend(_writable_file(Path(path), f"sinks.{sink.id}.path"))
    for source in config.sources:
        listen = getattr(source.options, "listen", "")
        if isinstance(listen, str) and listen.startswith("unix:"):
            out.extend(_writable_dir(Path(listen[len("unix:") :]).parent, f"sources.{source.id}.listen"))
    return out


def _writable_file(path: Path, what: str) -> list[str]:
    """Can the agent append to `path` (creating it and its directories)?"""
    if path.is_dir():
        return [f"{what}: {path} is a directory"]
    if path.exists():
        try:
            with path.open("ab"):
                pass
        except OSError as exc:
            return [f"{what}: cannot write {path}: {exc.strerror or exc}"]
        return []
    return _writable_dir(path.parent, what)


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
    """Can the agent create `path` and files in it? Probed for real (a temporary file in the
    nearest existing ancestor): permission bits say nothing about /proc, read-only mounts,
    immutable directories or running as root."""
    import os
    import tempfile

    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return [f"{what}: {probe} exists and is not a directory"]
    try:
        fd, tmp = tempfile.mkstemp(prefix=".logdetect-validate-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return [f"{what}: cannot create files in {probe}: {exc.strerror or exc}"]
    return []


def run(args: argparse.Namespace) -> int:
    """Print every problem with the config and its bundle; exit 1 when there is any."""
    path = Path(args.config)
    problems = check(path)
    if problems:
        sys.stderr.write(f"{path}: {len(problems)} problem(s)\n")
        for problem in problems:
            sys.stderr.write(f"  - {problem}\n")
        return 1
    sys.stdout.write(f"{path}: OK\n")
    return 0
