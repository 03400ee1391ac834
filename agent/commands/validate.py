"""Check an agent config file and the model bundle it names, listing every problem.

Exit status 0 when the agent would start with this config (the config parses, every key is
known and well-typed, every port is in range and every address parses, the bundle verifies,
the state directory, file sink paths and Unix socket directories can be written, a `nats` sink's
duplicate window outlasts a `nats` source's ack wait); otherwise 1,
with one line per problem. A port another process holds is only known when the agent starts:
it then exits with code 2 and one line.

A `logdetect fleet` config (`--fleet`, or a config with a `[fleet]` table and no `model`) is
checked as the fleet view reads it: no model is needed, the `[fleet]` settings must be valid,
and every source must hand over the agents' JSON events with `body` as the message field.

examples:
  logdetect validate --config /etc/logdetect/agent.toml
  logdetect validate --config /etc/logdetect/fleet.toml --fleet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect validate`: the TOML config to check."""
    p.add_argument("--config", "-c", required=True, metavar="FILE", help="the agent's TOML config")
    p.add_argument("--fleet", action="store_true",
                   help="check it as a `logdetect fleet` config (the default when it has [fleet] and no model)")


def check(config_path: Path, fleet: bool | None = None) -> list[str]:
    """Every problem with the config and its bundle (empty when all is well). `fleet`: check it
    as a `logdetect fleet` config (None: when it has a `[fleet]` table and no `model`)."""
    from agent.bundle import load_bundle
    from agent.config import parse_config
    from agent.errors import LogdetectError

    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        return [f"cannot read {config_path}: {exc.strerror or exc}"]
    if fleet is None:
        fleet = is_fleet_config(text)
    config, problems = parse_config(text, config_path.resolve(), need_model=not fleet)
    model = config.model if config is not None else _model_path(text, config_path)
    if fleet:
        model = None  # the fleet view loads no model
        problems.extend(_fleet_sources(text))
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
        problems.extend(_dedupe_window(config))
    return problems


def _dedupe_window(config: Any) -> list[str]:
    """A `nats` sink's events stream drops a line's re-published events only within its duplicate
    window; a `nats` source's redelivery comes after `ack_wait_secs`: the window must be longer."""
    out: list[str] = []
    waits = [(c.id, c.options.ack_wait_secs) for c in config.sources if c.type == "nats"]
    for sink in config.sinks:
        window = getattr(sink.options, "duplicate_window_secs", None)
        if sink.type != "nats" or window is None or not sink.options.jetstream:
            continue
        for source_id, wait in waits:
            if window <= wait:
                out.append(f"sinks.{sink.id}.duplicate_window_secs ({window:g}) must exceed "
                           f"sources.{source_id}.ack_wait_secs ({wait:g}): a redelivered line's events "
                           "would be stored twice")
    return out


def _toml(text: str) -> dict[str, Any] | None:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def is_fleet_config(text: str) -> bool:
    """A `logdetect fleet` config: a `[fleet]` table and no `model` (an unparsable file is not)."""
    raw = _toml(text)
    return raw is not None and "fleet" in raw and "model" not in raw


def _fleet_sources(text: str) -> list[str]:
    """The fleet view reads the agents' JSON events: a source whose message field is not the
    events' `body` (no source's default is), or that reads plain lines, drops every event. Read
    from the TOML itself, so these are reported beside any other problem of the config."""
    raw = _toml(text)
    if raw is None:
        return []
    sources = raw.get("sources")
    if not isinstance(sources, dict) or not sources:
        return ["sources: the fleet view needs at least one source of the agents' events"]
    out: list[str] = []
    for sid, table in sources.items():
        if not isinstance(table, dict):
            continue
        fields = table.get("message_field")
        if fields is None or (isinstance(fields, list) and "body" not in fields):
            said = "the default" if fields is None else repr(fields)
            out.append(f'sources.{sid}.message_field: must include "body" (the events\' message field), not {said}')
        if table.get("format") == "plain":
            out.append(f'sources.{sid}.format: "plain" reads no JSON; the fleet view reads the agents\' JSON events')
    return out


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
    problems = check(path, True if args.fleet else None)
    if problems:
        sys.stderr.write(f"{path}: {len(problems)} problem(s)\n")
        for problem in problems:
            sys.stderr.write(f"  - {problem}\n")
        return 1
    kind = " (fleet config)" if args.fleet or _is_fleet_file(path) else ""
    sys.stdout.write(f"{path}: OK{kind}\n")
    return 0


def _is_fleet_file(path: Path) -> bool:
    try:
        return is_fleet_config(path.read_text(encoding="utf-8"))
    except OSError:
        return False
