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


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect agent`: the TOML config and a log-level override."""
    p.add_argument("--config", "-c", required=True, metavar="FILE", help="the agent's TOML config")
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="override [agent] log_level",
    )
    p.add_argument(
        "--log-format", choices=["json", "console", "auto"], default=None, help="override [agent] log_format"
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
    return run_daemon(config)
