"""Print the JSON Schema (draft 2020-12) of every event logdetect emits (anomaly, session,
incident, line, data gap), for validating the output in your own pipeline."""

from __future__ import annotations

import argparse
import json
import sys

from agent.events import json_schema


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect schema`: compact or indented output."""
    p.add_argument("--compact", action="store_true", help="print it on one line (default: indented)")


def run(args: argparse.Namespace) -> int:
    """Print the JSON Schema every emitted event validates against."""
    sys.stdout.write(json.dumps(json_schema(), indent=None if args.compact else 2) + "\n")
    return 0
