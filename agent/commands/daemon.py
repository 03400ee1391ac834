"""Run the agent daemon with the sources and sinks of a TOML config.

Stops cleanly on SIGTERM/SIGINT (drains queued input, closes the pipeline, flushes the sinks)
and reloads the config and model bundle on SIGHUP (a bundle that fails verification is refused
and the running one keeps serving). Logs are JSON lines on stderr; stdout is reserved for a
`stdout` sink.

examples:
  logdetect agent --config /etc/logdetect/agent.toml
  logdetect print-config > agent.toml && logdetect validate --config agent.toml
"""

from __future__ import annotations

import argparse
import sys


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect agent`: the TOML config and a log-level override."""
    p.add_argument("--config", "-c", required=True, metavar="FILE",
                   help="the agent's TOML config (`logdetect print-config` writes a commented example)")
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="how much the agent logs on stderr (default: the config's [agent] log_level)",
    )
    p.add_argument(
        "--log-format", choices=["json", "console", "auto"], default=None,
        help="log lines as JSON or for people; auto = for people on a terminal "
        "(default: the config's [agent] log_format)",
    )


def run(args: argparse.Namespace) -> int:
    """Load the config, set up logging and run the daemon until it is stopped."""
    from agent.config import load_config
    from agent.daemon import run_daemon
    from agent.logging_setup import configure_logging

    config = load_config(args.config)
    configure_logging(
        fmt=args.log_format or config.agent.log_format, level=args.log_level or config.agent.log_level
    )
    sources = ", ".join(f"{c.id} ({c.type})" for c in config.sources) or "none"
    sinks = ", ".join(f"{c.id} ({c.type})" for c in config.sinks) or "none"
    sys.stderr.write(
        f"logdetect agent: starting with {args.config}: model {config.model}; sources {sources}; "
        f"sinks {sinks} (SIGTERM stops, SIGHUP reloads)\n"
    )
    sys.stderr.flush()
    return run_daemon(config)
