"""Follow a log file like `tail -F` (rotation and truncation handled) or read stdin (`-`), and
emit events as JSON lines on stdout as lines arrive. At the end of stdin it drains and exits 0.

`watch` is the agent daemon with one source and a stdout sink: the same runtime, flow control
and signal handling as `logdetect agent`, without writing a config file.

examples:
  logdetect watch --model model/ --input /var/log/app/current.log
  tail -F /var/log/app/current.log | logdetect watch --model model/ --input -
  fluent-bit -c fb.yaml | logdetect watch --model model/ --input - --line-format json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.commands.scan import add_model_options


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect watch`: the bundle, the file (or stdin) to follow and its line format."""
    add_model_options(p)
    p.add_argument("--input", "-i", required=True, metavar="FILE|-", help="file to follow, or - for standard input")
    p.add_argument("--line-format", default="auto", choices=["auto", "plain", "json"],
                   help="plain lines, JSON lines (Fluent Bit json_lines, Vector console), or auto: JSON when a "
                        "line is a JSON object (default: auto)")
    p.add_argument("--from-start", action="store_true",
                   help="read a followed file from its start (default: from its end, only new lines)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="keep templates learned while watching and the file offset in this directory across "
                        "restarts (default: none, start fresh)")


def config_text(args: argparse.Namespace) -> str:
    """The agent config equivalent to these options (TOML; strings JSON-quoted, valid TOML)."""
    q = json.dumps
    lines = [f"model = {q(str(Path(args.model).resolve()))}"]
    if args.state_dir:
        lines.append(f"state_dir = {q(str(Path(args.state_dir).resolve()))}")
    lines += [
        "[pipeline]",
        f"sensitivity = {q(args.sensitivity)}",
        f"device = {q(args.device)}",
        f"intra_op_threads = {max(1, args.threads)}",
        f"dynamic_thresholds = {'true' if args.dynamic_thresholds else 'false'}",
        f"episode_gap_secs = {args.episode_gap!r}",
        f"new_behaviour_days = {args.new_behaviour / 86400.0!r}",
        "[agent]",
        'metrics_listen = ""',
        'log_format = "auto"',
        'log_level = "warning"',
    ]
    if args.log_format or args.entity:
        from agent.bundle import load_bundle

        trained = load_bundle(args.model).manifest.get("parser", {})
        lines += ["[parser]", f"log_format = {q(args.log_format or trained.get('log_format', 'auto'))}",
                  f"entity = {q(args.entity or trained.get('entity', 'stream'))}"]
    if args.input == "-":
        lines += ["[sources.stdin]", 'type = "stdin"', f"format = {q(args.line_format)}"]
    else:
        lines += ["[sources.file]", 'type = "file"', f"path = {q(str(Path(args.input).resolve()))}",
                  f"format = {q(args.line_format)}",
                  f"read_from = {q('beginning' if args.from_start else 'end')}"]
    lines += ["[sinks.stdout]", 'type = "stdout"']
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run the daemon with one source built from the options and a stdout sink."""
    from agent.config import parse_config
    from agent.daemon import run_daemon
    from agent.errors import ConfigError

    config, problems = parse_config(config_text(args), Path("<watch options>"))
    if config is None or problems:
        raise ConfigError("; ".join(problems) or "invalid watch options")
    if args.input == "-":
        source = "standard input until it ends"
    else:
        source = f"{args.input} from its {'start' if args.from_start else 'end'} (like tail -F)"
    sys.stderr.write(
        f"logdetect watch: model {args.model}; reading {source}; anomalies and incidents go to stdout "
        "as JSON lines, nothing while all is normal (Ctrl-C stops)\n"
    )
    sys.stderr.flush()
    return run_daemon(config)
