"""Run the fleet view: the anomaly events of many agents in, one incident per problem across hosts.

An agent mode, not a new service: the same TOML config, sources, sinks and runtime as `logdetect
agent`, with the model pipeline replaced by the fleet grouper. Its sources read
the agents' events (a `nats` source on their events subject, a `forward` source their `forward`
sinks send to, a JSON-lines file …) with `message_field = ["body"]`; `model` is not needed. The
same new template on many hosts within `[fleet] window_secs` becomes one `logdetect.incident`
event listing the hosts (`incident.entities`), in the schema the agents use.

examples:
  logdetect fleet --config /etc/logdetect/fleet.toml
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect fleet`: the TOML config and log overrides."""
    p.add_argument("--config", "-c", required=True, metavar="FILE",
                   help="TOML config: sources of the agents' events, sinks, [fleet] settings")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                   help="how much it logs on stderr (default: the config's [agent] log_level)")
    p.add_argument("--log-format", choices=["json", "console", "auto"], default=None,
                   help="log lines as JSON or for people (default: the config's [agent] log_format)")


def run(args: argparse.Namespace) -> int:
    """Load the config (no model needed) and run the daemon with the fleet grouper."""
    from agent.config import AgentConfig, load_config
    from agent.daemon import Daemon
    from agent.fleet import FleetPipeline
    from agent.logging_setup import configure_logging

    config = load_config(args.config, need_model=False)
    configure_logging(fmt=args.log_format or config.agent.log_format, level=args.log_level or config.agent.log_level)
    sources = ", ".join(f"{c.id} ({c.type})" for c in config.sources)
    sinks = ", ".join(f"{c.id} ({c.type})" for c in config.sinks)
    sys.stderr.write(f"logdetect fleet: starting with {args.config}: sources {sources}; sinks {sinks}\n")
    sys.stderr.flush()

    def build(c: AgentConfig) -> FleetPipeline:
        return FleetPipeline(c.fleet, c.state_dir)

    return asyncio.run(Daemon(config, pipeline_factory=build).run())
