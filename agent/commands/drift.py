"""List what the agent learned online since training, the templates still new, and the ones
that became rare.

Reads the state directory the agent (or `scan`/`watch` with a state dir) writes: every template
learned after recurring steadily (`[pipeline] learn_after`), every template first seen after
training that is not learned yet, with its evidence, and every training template seen far less
often since training than its training share predicts (newly rare: at least 20 lines expected,
at most a tenth of them seen). When the list grows long, retrain. Also shows the incidents
`train` found in the bundle's history.

examples:
  logdetect drift --model model/ --state /var/lib/logdetect
  logdetect drift --model model/ --state /var/lib/logdetect --json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect drift`: the bundle and the agent's state directory."""
    p.add_argument("--model", "-m", required=True, metavar="BUNDLE", help="the model bundle the agent serves")
    p.add_argument("--state", required=True, metavar="DIR", help="the agent's state directory")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text (default: text)")


def run(args: argparse.Namespace) -> int:
    """Print the drift report (and the history's incidents kept in the bundle)."""
    from agent.bundle import Bundle, load_bundle
    from agent.drift import DRIFT_STATE, DriftConfig, DriftLearner, training_counts
    from agent.errors import UserError

    bundle: Bundle = load_bundle(args.model)
    state = Path(args.state)
    if not state.is_dir():
        raise UserError(f"{state}: no such state directory")
    has_state = (state / DRIFT_STATE).is_file()
    learner = DriftLearner.load(DriftConfig(), state)
    other_bundle = bool(learner.bundle_id) and learner.bundle_id != bundle.identity
    rare = [] if other_bundle else learner.newly_rare(*training_counts(bundle))
    suspects = bundle.read_json("history.json").get("suspects", []) if "history.json" in bundle.manifest.get(
        "files", {}) else []
    if args.json:
        doc = {"bundle": str(bundle.path), "lines_since_training": 0 if other_bundle else learner.lines,
               "counted_for_another_bundle": other_bundle,
               "learned": [asdict(v) for v in sorted(learner.learned.values(), key=lambda v: v.learned_at)],
               "new": [asdict(c) for c in sorted(learner.candidates.values(), key=lambda c: -c.occurrences)],
               "newly_rare": [asdict(r) for r in rare], "history_suspects": len(suspects)}
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
        return 0
    out = [f"since training ({bundle.path}):"]
    if not has_state:
        out.append("  no online state here (has the agent run with this state directory?)")
    else:
        if other_bundle:
            out.append("  (the line counts are for another bundle: newly rare templates not judged)")
        else:
            out.append(f"  {learner.lines} line(s) seen since training")
        out += [f"  {line}" for line in learner.report_lines(rare)]
    if suspects:
        out.append(f"held back at training as incidents in the history: {len(suspects)} template(s)")
    sys.stdout.write("\n".join(out) + "\n")
    return 0

