"""The built-in default: simulate a small multi-service system, learn its normal days, then
scan a day with injected incidents and show what was found, explained and grouped, beside the
ground truth of what was injected. Needs no data or model download.

example:
  logdetect demo --workdir demo-out
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.episodes import EPISODE_GAP_SECS
from agent.incidents import NEW_BEHAVIOUR_SECS
from agent.wording import plural

DEFAULT_EPOCHS = 1


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect demo`: work directory, simulated volume, models and time budget."""
    p.add_argument("--workdir", default="demo-out", help="where logs, bundle and report go (default: demo-out)")
    p.add_argument("--days", type=float, default=3.0, help="normal days to train on (default: 3)")
    p.add_argument("--lines-per-day", type=int, default=20_000, metavar="N",
                   help="approximate simulated lines per day (default: 20000)")
    p.add_argument("--models", default="isolation_forest,deeplog,lstm_ae,logbert,novel_set", metavar="LIST",
                   help="comma list of models to train (default: all five: isolation_forest, deeplog, lstm_ae, "
                        "logbert, novel_set)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, metavar="N",
                   help=f"passes over the training data for each torch model (default: {DEFAULT_EPOCHS})")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="CPU threads for training and scanning; with the same seed, epochs and threads every "
                        "run prints the same (default: 1)")
    p.add_argument("--seconds-per-model", type=float, default=None, metavar="S",
                   help="stop each torch model after S seconds of training; runs then differ from one "
                        "another (default: no limit, --epochs decides)")
    p.add_argument("--seed", type=int, default=7,
                   help="random seed of the simulated logs and of the models (default: 7)")


def run(args: argparse.Namespace) -> int:
    """Simulate normal days and an incident day, train on the former, scan the latter, show the truth."""
    from agent.commands import scan
    from agent.reader import iter_records
    from trainer.simulator import INCIDENT_KINDS, simulate
    from trainer.train import TrainOptions, train

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    out = sys.stdout
    t0 = time.monotonic()
    normal = work / "normal-days.log"
    incident_day = work / "incident-day.log"
    out.write(f"[1/4] simulating {args.days:g} normal days of a web/auth/db/queue system → {normal}\n")
    simulate(normal, days=args.days, seed=args.seed, incidents=(), start=start,
             lines_per_day=args.lines_per_day)
    out.write(f"[2/4] simulating one more day with injected incidents ({', '.join(INCIDENT_KINDS)}) → "
              f"{incident_day}\n")
    truth = simulate(incident_day, days=1, seed=args.seed + 1, incidents=INCIDENT_KINDS,
                     start=start + timedelta(days=args.days), lines_per_day=args.lines_per_day)
    out.write("[3/4] training on the normal days\n")
    out.flush()
    from agent.parsing import ParserConfig

    _fix_threads(args.threads)

    bundle = work / "model"
    result = train(
        list(iter_records(normal)),
        TrainOptions(output=bundle, parser=ParserConfig(entity="component"),
                     models=tuple(m for m in args.models.split(",") if m),
                     max_train_seconds=args.seconds_per_model, epochs=args.epochs, seed=args.seed, device="cpu"),
    )
    out.write(f"      {result.train_lines:,} lines, {result.templates} templates, models: "
              f"{', '.join(result.models)} ({result.seconds:.0f}s)\n")
    report = work / "report.html"
    out.write(f"[4/4] scanning the incident day (report: {report})\n\n")
    out.flush()
    scan_args = argparse.Namespace(
        model=str(bundle), sensitivity="medium", log_format=None, entity=None, models=None, device="cpu",
        threads=args.threads, input=[str(incident_day)], format="text", report=str(report), color="auto",
        dynamic_thresholds=False, episode_gap=EPISODE_GAP_SECS, new_behaviour=NEW_BEHAVIOUR_SECS,
    )
    scan.run(scan_args)
    out.write("\nInjected (ground truth):\n")
    for inc in truth.incidents:
        span = (f"{datetime.fromtimestamp(inc.start, UTC):%H:%M:%S} - "
                f"{datetime.fromtimestamp(inc.end, UTC):%H:%M:%S}")
        out.write(f"  {inc.kind:12} {span}  {plural(len(inc.line_numbers), 'line')}  {inc.description}\n")
    out.write(f"\nDone in {time.monotonic() - t0:.0f}s. Open {report} in a browser for the timeline.\n")
    return 0


def _fix_threads(threads: int) -> None:
    """One fixed CPU thread count for torch (when installed), so that training does the same
    arithmetic in the same order on every run; scanning gets the same count for ONNX Runtime."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(max(1, threads))
