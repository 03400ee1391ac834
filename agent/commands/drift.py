"""List what the agent learned online since training, and the templates still new.

Reads the state directory the agent (or `scan`/`watch` with a state dir) writes: every template
learned after recurring steadily (`[pipeline] learn_after`), and every template first seen after
training that is not learned yet, with its evidence. When the list grows long, retrain. Also
shows the incidents `train` found in the bundle's history.

examples:
  logdetect drift --model model/ --state /var/lib/logdetect
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect drift`: the bundle and the agent's state directory."""
    p.add_argument("--model", "-m", required=True, metavar="BUNDLE", help="the model bundle the agent serves")
    p.add_argument("--state", required=True, metavar="DIR", help="the agent's state directory")


def run(args: argparse.Namespace) -> int:
    """Print the drift report (and the history's incidents kept in the bundle)."""
    from agent.bundle import load_bundle
    from agent.drift import DRIFT_STATE, DriftConfig, DriftLearner
    from agent.errors import UserError

    bundle = load_bundle(args.model)
    state = Path(args.state)
    if not state.is_dir():
        raise UserError(f"{state}: no such state directory")
    out = [f"since training ({bundle.path}):"]
    if not (state / DRIFT_STATE).is_file():
        out.append("  no online learning state here (is [pipeline] learn_after set?)")
    else:
        out += [f"  {line}" for line in DriftLearner.load(DriftConfig(), state).report_lines()]
    if "history.json" in bundle.manifest.get("files", {}):
        suspects = bundle.read_json("history.json").get("suspects", [])
        out.append(f"held back at training as incidents in the history: {len(suspects)} template(s)")
    sys.stdout.write("\n".join(out) + "\n")
    return 0
