"""The `logdetect` command line.

Each subcommand lives in its own module with `configure(parser)` and `run(args) -> int`, and
is imported only when used, so the agent's commands never import torch or scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agent import __version__
from agent.errors import UserError

# name -> (module, one-line help). Order is the order `--help` lists them in.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("trainer.commands.demo", "simulate a small system, train on it and scan an incident day"),
    "simulate": ("trainer.commands.simulate", "write simulated multi-service logs with injected incidents"),
    "train": ("trainer.commands.train", "learn normal behaviour from log files and write a model bundle"),
    "templates": ("agent.commands.templates", "show how log lines group into templates (as train learns them)"),
    "drift": ("agent.commands.drift", "list templates learned online or still new since training"),
    "feedback": ("agent.commands.feedback", "mark an incident or template as expected or as a real problem"),
    "scan": ("agent.commands.scan", "score a log file in batch and report anomalies and incidents"),
    "watch": ("agent.commands.watch", "follow a file (like tail -F) or stdin and emit events as lines arrive"),
    "agent": ("agent.commands.daemon", "run the daemon with the sources and sinks of a TOML config"),
    "fleet": ("agent.commands.fleet", "group many agents' anomaly events into incidents across hosts"),
    "validate": ("agent.commands.validate", "check a config file and its model bundle, listing every problem"),
    "print-config": ("agent.commands.print_config", "print a fully commented example agent config"),
    "eval": ("trainer.commands.evaluate", "measure precision/recall/F1 on labelled data (BGL, HDFS)"),
    "schema": ("agent.commands.schema", "print the JSON Schema of the events logdetect emits"),
}

EPILOG = """\
typical use:
  logdetect train --input /var/log/app/*.log --output model/
  logdetect scan  --model model/ --input today.log
  tail -F /var/log/app/current.log | logdetect watch --model model/ --input -
  logdetect agent --config /etc/logdetect/agent.toml

`logdetect COMMAND --help` explains each command.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `logdetect` argument parser; with `only`, just that command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="logdetect",
        description="Learn what normal looks like from your own logs, then flag, explain and group "
        "what is not.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"logdetect {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `logdetect` command and return its exit code (UserError → 2 with a one-line message)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--version"]:  # answered without importing any command module
        sys.stdout.write(f"logdetect {__version__}\n")
        return 0
    # Import only the module of the command actually asked for.
    wanted = next((a for a in args_list if not a.startswith("-")), None)
    only = wanted if wanted in COMMANDS else None
    if only not in ("agent", "fleet"):  # the daemon configures logging from its config file
        import os

        from agent.logging_setup import configure_logging

        configure_logging("auto", os.environ.get("LOGDETECT_LOG_LEVEL", "warning"))
    try:
        parser = build_parser(only)
        args = parser.parse_args(args_list)
        if getattr(args, "_run", None) is None:
            parser.print_help()
            return 2
        return int(args._run(args))
    except UserError as exc:
        sys.stderr.write(f"logdetect: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (`| head`): not an error of ours.
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
