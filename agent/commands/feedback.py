"""Mark an incident's signature or a template as expected (`--normal`) or as a real problem (`--problem`).

An incident's signature is the set of template ids of the anomalous lines the agent grouped into
it; the agent records them in STATE/incidents.json (its last 500 incidents), so `--incident ID`
(the `incident.id` of its events) labels every template of that incident. `--template ID` (the
`template.id` of an anomaly event) labels one template. Labels go to STATE/feedback.json (plain
JSON, replaced atomically). A running agent picks them up on its next tick, without a restart:
lines of a template marked `--normal` no longer raise anomalies or incidents (counted in
logdetect_feedback_suppressed). `logdetect train --feedback STATE` uses both kinds: normal
templates are never held back as suspect and join the training data; problem templates are kept
out of normal training and listed. Without --normal/--problem, the labels kept and the last
incidents the agent recorded (with their templates) are listed.

examples:
  logdetect feedback --state /var/lib/logdetect --incident inc-20261201T101500Z-3f2a --normal
  logdetect feedback --state /var/lib/logdetect --template 1004242 --problem
  logdetect feedback --state /var/lib/logdetect
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RECENT = 10  # incidents listed when no label is given


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect feedback`: the state dir, what to label, and the label."""
    p.add_argument("--state", required=True, metavar="DIR", help="the agent's state directory")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--incident", metavar="ID",
                      help="label every template of this incident (incident.id of its events; default: none)")
    what.add_argument("--template", type=int, metavar="ID",
                      help="label this template (template.id of an anomaly event; default: none)")
    label = p.add_mutually_exclusive_group()
    label.add_argument("--normal", action="store_true",
                       help="expected: stop alerting, learn it at the next train (default: list the labels)")
    label.add_argument("--problem", action="store_true",
                       help="a real problem: keep it out of normal training (default: list the labels)")


def run(args: argparse.Namespace) -> int:
    """Write the label (or list the labels kept)."""
    from agent.errors import UserError
    from agent.feedback import Label, Signature, label_templates, read_incidents, read_labels

    state = Path(args.state)
    if not state.is_dir():
        raise UserError(f"{state}: no such state directory")
    if args.incident is None and args.template is None:
        if args.normal or args.problem:
            raise UserError("say what to label: --incident ID or --template ID")
        labels = read_labels(state)
        out = [f"{v.label.value}: template {v.template_id} {v.template[:80]!r} ({v.source})"
               for v in labels.values()] or ["no labels yet"]
        recent = list(read_incidents(state).items())[-RECENT:]
        if recent:
            out.append(f"recent incidents (last {len(recent)} the agent recorded) and their templates:")
            for incident_id, sigs in reversed(recent):
                out.append(f"  {incident_id}: " + "; ".join(f"{s.template_id} {s.template[:60]!r}" for s in sigs[:5])
                           + (f" and {len(sigs) - 5} more" if len(sigs) > 5 else ""))
        sys.stdout.write("\n".join(out) + "\n")
        return 0
    if not (args.normal or args.problem):
        raise UserError("say which label: --normal or --problem")
    label = Label.NORMAL if args.normal else Label.PROBLEM
    incidents = read_incidents(state)
    if args.incident is not None:
        if args.incident not in incidents:
            raise UserError(f"incident {args.incident} is not among the {len(incidents)} the agent recorded in {state}")
        signatures, source = incidents[args.incident], f"incident {args.incident}"
    else:
        known = {s.template_id: s for sigs in incidents.values() for s in sigs}
        signatures = [known.get(args.template, Signature(args.template, "", ""))]
        source = "template"
    for v in label_templates(state, signatures, label, source):
        sys.stdout.write(f"{v.label.value}: template {v.template_id} {v.template[:80]!r}\n")
    return 0
