"""Measure detection quality on labelled data: precision, recall and F1 per detector and for
the ensemble. Thresholds are chosen on training/validation data only, never on the test split.

datasets:
  bgl            BGL-format files (first column is the label, `-` = normal); line and 100-line windows
  hdfs-sessions  DeepLog-format HDFS sessions (one session of event numbers per line) and the
                 labelled `Sequence,label` CSV; precision also adjusted to HDFS's real anomaly rate
  normal-logs    the 15 Loghub-2k systems: train on the first half, scan the second; the alerts a
                 user sees, split by ground-truth event into known-event and novel-event alarms
"""

from __future__ import annotations

import argparse
import importlib

DATASETS = {
    "bgl": "trainer.eval.bgl",
    "hdfs-sessions": "trainer.eval.hdfs",
    "normal-logs": "trainer.eval.normal_logs",
}


def configure(parser: argparse.ArgumentParser) -> None:
    """One `logdetect eval` subcommand per dataset module, each with its own options."""
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    for name, module_name in DATASETS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=(module.__doc__ or name).strip().splitlines()[0],
            description=(module.__doc__ or name).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(p)
        p.set_defaults(_eval=module.run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen dataset's evaluation; its return value is the exit code."""
    return int(args._eval(args))
