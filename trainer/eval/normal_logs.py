"""Normal logs: the alerts a user sees on the 15 Loghub-2k systems, trained on their own history.

For each system: train on the first half of the raw lines (the real `train` path, default
options except the short torch budget below), scan the second half with the bundle's own
thresholds at the default sensitivity, and count what a user would see: flagged lines, anomaly
events, incidents and session alerts. Ground-truth event ids (Loghub-2.0's corrected
templates) split the flagged lines into known-event alarms (the event occurs in the training
half: a person would call these false) and novel-event lines (the event never occurs there).
The same lines are then replayed through the live path (`agent.replay`: the daemon's calls on an
injected clock) at several arrival rates; every line whose verdict differs from `scan` counts,
and so does every session verdict and every anomaly event (with its incident id) that one pass
has and the other has not.

Torch models train with `--epochs` and `--max-train-seconds` (default 3 epochs, 10 s each), so
the 15 systems take a few minutes; pass larger values to measure fully trained models.

example:
  logdetect eval normal-logs --data ../shared/data/loghub_2k
  logdetect eval normal-logs --data ../shared/data/loghub_2k --systems Linux,Zookeeper --json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent.durations import duration_arg
from agent.episodes import EPISODE_GAP_SECS
from agent.errors import InputError
from agent.incidents import NEW_BEHAVIOUR_SECS
from agent.reader import iter_records
from agent.types import Anomaly, Incident, Record, Sensitivity, Verdict

if TYPE_CHECKING:
    from agent.replay import ArrivalRate

T = TypeVar("T")

SYSTEMS = ("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
           "OpenStack", "Proxifier", "Spark", "Windows", "Zookeeper")
# Targets (issue 11) at the default sensitivity.
MAX_KNOWN_ALARM_RATE = 0.005
MAX_INCIDENTS_PER_1000 = 5.0
MIN_NOVEL_RECALL = 0.9


@dataclass(frozen=True)
class SystemRow:
    """One system's figures; `as_dict` is the `--json` row (fields are added, never renamed)."""

    system: str
    lines: int
    flagged_lines: int
    anomaly_events: int
    incidents: int
    session_alerts: int
    known_event_alarms: int
    novel_event_lines: int
    novel_event_flagged: int
    live_differences: int
    live_by_rate: dict[str, int] = field(default_factory=dict)
    known_alarm_events: dict[str, int] = field(default_factory=dict)  # top ground-truth events of the alarms
    # "-model": the same bundle scanned without that model: flagged lines, known alarms, incidents, novel flagged
    ablation: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    # each detector on its own at its served threshold (whether or not it votes): known-event lines
    # it fires on, novel-event lines it fires on; and the vote's members at this sensitivity
    detector_known_alarms: dict[str, int] = field(default_factory=dict)
    detector_novel_flagged: dict[str, int] = field(default_factory=dict)
    vote_members: tuple[str, ...] = ()
    # the incident events the scan emitted (open, update, resolved: what a reader of the sink gets)
    incident_events: int = 0

    @property
    def known_alarm_rate(self) -> float:
        """Known-event alarms as a share of the scanned lines."""
        return self.known_event_alarms / self.lines if self.lines else 0.0

    @property
    def incidents_per_1000(self) -> float:
        """Incidents per 1,000 scanned lines."""
        return 1000.0 * self.incidents / self.lines if self.lines else 0.0

    @property
    def novel_recall(self) -> float | None:
        """Share of novel-event lines flagged (None when there were none)."""
        return self.novel_event_flagged / self.novel_event_lines if self.novel_event_lines else None

    def as_dict(self) -> dict[str, Any]:
        """The row as `eval --json` prints it: level `system`, the system as detector."""
        d = asdict(self)
        d.pop("system")
        return {"level": "system", "detector": self.system, **d, "known_alarm_rate": self.known_alarm_rate,
                "incidents_per_1000": self.incidents_per_1000, "novel_recall": self.novel_recall}


@dataclass(frozen=True)
class RunOptions:
    """How each system is trained and scanned: epochs, time budget, models, sensitivity, live replay."""

    epochs: int = 3
    max_train_seconds: float = 10.0
    models: tuple[str, ...] | None = None  # None: train's default set
    sensitivity: Sensitivity = Sensitivity.MEDIUM
    live: bool = True
    ablate: tuple[str, ...] = ()  # also scan with each of these models left out of serving (same bundle)
    reuse: bool = False  # a bundle already in the work folder is scanned, not trained again
    episode_gap_secs: float = EPISODE_GAP_SECS  # the incidents' episode gap (`agent/episodes.py`)
    new_behaviour_secs: float = NEW_BEHAVIOUR_SECS  # how long a new template stays its first incident's


def event_ids(system_dir: Path, system: str) -> list[str]:
    """Ground-truth event id of every raw line, in line order (Loghub-2.0 corrected templates)."""
    path = system_dir / f"{system}_2k.log_structured_corrected.csv"
    if not path.is_file():
        path = system_dir / f"{system}_2k.log_structured.csv"
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return [row["EventId"] for row in csv.DictReader(fh)]


def physical_verdicts(results: Sequence[tuple[str, T]], n: int) -> list[T]:
    """Each physical line's verdict (or other value) from the logical lines' (a stitched record
    spans several)."""
    out: list[T] = []
    for raw, verdict in results:
        out.extend([verdict] * (raw.count("\n") + 1))
    if len(out) != n:
        raise InputError(f"{len(out)} physical lines came out of the pipeline for {n} in")
    return out


@dataclass
class Seen:
    """What one pass (scan or a live replay) produced."""

    lines: list[tuple[str, Verdict]] = field(default_factory=list)
    fired: list[tuple[str, frozenset[str]]] = field(default_factory=list)  # detectors that fired, per line
    members: tuple[str, ...] = ()  # the vote's members at the sensitivity
    anomaly_events: int = 0
    incidents: set[str] = field(default_factory=set)
    incident_events: int = 0
    grouped: list[tuple[str, str | None]] = field(default_factory=list)  # each anomaly event's line and incident
    sessions: list[tuple[str, str]] = field(default_factory=list)

    def take(self, outputs: Sequence[object]) -> None:
        """Count the anomalies, incidents and session verdicts among these outputs."""
        from agent.types import SessionVerdict

        for o in outputs:
            if isinstance(o, Anomaly):
                self.anomaly_events += 1
                self.grouped.append((o.line.line.raw, o.incident_id))
            elif isinstance(o, Incident):
                self.incidents.add(o.incident_id)
                self.incident_events += 1
            elif isinstance(o, SessionVerdict):
                self.sessions.append((o.entity, o.verdict.value))


def run_pass(bundle: Path, records: Sequence[Record], options: RunOptions, rate: ArrivalRate | None,
             models: tuple[str, ...] | None = None) -> Seen:
    """Scan (rate None: `logdetect scan`'s calls) or replay live at `rate` with the bundle's
    `models` (None: all); what came out."""
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.replay import replay
    from agent.types import LineResult

    pipe = Pipeline.from_bundle(bundle, PipelineConfig(sensitivity=options.sensitivity, models=models,
                                                       episode_gap_secs=options.episode_gap_secs,
                                                       new_behaviour_secs=options.new_behaviour_secs))
    seen = Seen()

    def observe(r: LineResult) -> None:
        seen.lines.append((r.line.line.raw, r.verdict))
        seen.fired.append((r.line.line.raw, frozenset(s.detector for s in r.scores if s.fired)))

    pipe.observers.append(observe)
    seen.members = tuple(sorted(pipe.ensemble.members))
    now = time.time()
    if rate is None:
        for start in range(0, len(records), 4096):  # as `logdetect scan` batches
            seen.take(pipe.process(records[start : start + 4096], now))
        seen.take(pipe.close(now))
    else:
        seen.take(replay(pipe, records, rate, now))
    return seen


def run_system(system_dir: Path, system: str, options: RunOptions, work: Path) -> SystemRow:
    """Train on a system's first half, scan the second, split alarms by ground-truth event."""
    from trainer.train import TrainOptions, train

    started = time.monotonic()
    log_path = system_dir / f"{system}_2k.log"
    records = list(iter_records(log_path))
    events = event_ids(system_dir, system)
    if len(events) != len(records):
        raise InputError(f"{system}: {len(records)} raw lines but {len(events)} labelled events")
    half = len(records) // 2
    train_records, scan_records = records[:half], records[half:]
    known = set(events[:half])
    scan_events = events[half:]
    bundle = work / system
    train_opts = TrainOptions(output=bundle, epochs=options.epochs, max_train_seconds=options.max_train_seconds,
                              progress=False)
    if options.models is not None:
        train_opts.models = options.models
    if not (options.reuse and (bundle / "manifest.json").is_file()):
        train(train_records, train_opts)
    scanned = run_pass(bundle, scan_records, options, None)
    verdicts = physical_verdicts(scanned.lines, len(scan_records))
    flagged = [v is not Verdict.NORMAL for v in verdicts]
    known_alarms = Counter(e for e, f in zip(scan_events, flagged, strict=True) if f and e in known)
    novel = [f for e, f in zip(scan_events, flagged, strict=True) if e not in known]
    fired = physical_verdicts(scanned.fired, len(scan_records))
    names = sorted({n for f in fired for n in f})
    detector_known = {n: sum(n in f for e, f in zip(scan_events, fired, strict=True) if e in known) for n in names}
    detector_novel = {n: sum(n in f for e, f in zip(scan_events, fired, strict=True) if e not in known)
                      for n in names}
    ablation: dict[str, dict[str, int]] = {}
    if options.ablate:
        import json

        served = tuple(json.loads((bundle / "manifest.json").read_text(encoding="utf-8")).get("models", {}))
        for name in options.ablate:
            if name not in served:
                continue
            without = run_pass(bundle, scan_records, options, None, tuple(m for m in served if m != name))
            marks = [v is not Verdict.NORMAL for v in physical_verdicts(without.lines, len(scan_records))]
            ablation[f"-{name}"] = {
                "flagged_lines": sum(marks),
                "known_event_alarms": sum(1 for e, f in zip(scan_events, marks, strict=True) if f and e in known),
                "incidents": len(without.incidents),
                "novel_event_flagged": sum(1 for e, f in zip(scan_events, marks, strict=True) if f and e not in known),
            }
    by_rate: dict[str, int] = {}
    if options.live:
        from agent.replay import DEFAULT_RATES

        for rate in DEFAULT_RATES:
            live = run_pass(bundle, scan_records, options, rate)
            live_verdicts = physical_verdicts(live.lines, len(scan_records))
            diff = sum(a is not b for a, b in zip(verdicts, live_verdicts, strict=True))
            a, b = Counter(live.sessions), Counter(scanned.sessions)
            diff += ((a - b) + (b - a)).total()
            g, h = Counter(live.grouped), Counter(scanned.grouped)  # anomaly events and their incidents
            diff += ((g - h) + (h - g)).total()
            by_rate[rate.label] = diff
    return SystemRow(
        system=system,
        lines=len(scan_records),
        flagged_lines=sum(flagged),
        anomaly_events=scanned.anomaly_events,
        incidents=len(scanned.incidents),
        session_alerts=len(scanned.sessions),
        known_event_alarms=sum(known_alarms.values()),
        novel_event_lines=len(novel),
        novel_event_flagged=sum(novel),
        live_differences=sum(by_rate.values()),
        live_by_rate=by_rate,
        known_alarm_events=dict(known_alarms.most_common(5)),
        ablation=ablation,
        seconds=round(time.monotonic() - started, 1),
        detector_known_alarms=detector_known,
        detector_novel_flagged=detector_novel,
        vote_members=scanned.members,
        incident_events=scanned.incident_events,
    )


def format_rows(rows: Sequence[SystemRow]) -> str:
    """The rows as a text table, with how many systems meet the targets."""
    head = (f"{'system':11} {'lines':>5} {'flagged':>7} {'events':>6} {'incid.':>6} {'sess.':>5} "
            f"{'known':>5} {'known%':>6} {'novel':>5} {'n.flag':>6} {'recall':>6} {'live≠':>5}")
    out = [head, "-" * len(head)]
    for r in rows:
        recall = "-" if r.novel_recall is None else f"{r.novel_recall:.2f}"
        out.append(f"{r.system:11} {r.lines:5d} {r.flagged_lines:7d} {r.anomaly_events:6d} {r.incidents:6d} "
                   f"{r.session_alerts:5d} {r.known_event_alarms:5d} {100 * r.known_alarm_rate:5.1f}% "
                   f"{r.novel_event_lines:5d} {r.novel_event_flagged:6d} {recall:>6} {r.live_differences:5d}")
    met = [r for r in rows if r.known_alarm_rate <= MAX_KNOWN_ALARM_RATE
           and r.incidents_per_1000 <= MAX_INCIDENTS_PER_1000
           and (r.novel_recall is None or r.novel_recall >= MIN_NOVEL_RECALL)]
    out.append(f"\ntargets met (known alarms ≤ {100 * MAX_KNOWN_ALARM_RATE:.1f}% of lines, ≤ "
               f"{MAX_INCIDENTS_PER_1000:g} incidents per 1,000 lines, novel recall ≥ {MIN_NOVEL_RECALL}): "
               f"{len(met)} of {len(rows)} systems")
    return "\n".join(out)


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect eval normal-logs`: data, systems, training budget, live replay."""
    p.add_argument("--data", required=True, metavar="DIR", help="the loghub_2k directory (one folder per system)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma list (default: all 15)")
    p.add_argument("--epochs", type=int, default=3, help="max epochs per torch model (default: 3)")
    p.add_argument("--max-train-seconds", type=float, default=10.0,
                   help="time budget per torch model and system (default: 10)")
    p.add_argument("--models", default=None, help="comma list of models to train (default: train's default)")
    p.add_argument("--sensitivity", default="medium", choices=[s.value for s in Sensitivity],
                   help="which of the model's thresholds to measure at (default: medium)")
    p.add_argument("--no-live", action="store_true", help="skip the live replays (default: run them)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object with `results` instead of a table (default: a table)")
    p.add_argument("--keep", metavar="DIR", help="keep the bundles here (default: a temporary directory)")
    p.add_argument("--reuse", action="store_true",
                   help="scan a bundle already in --keep instead of training it again (default: train)")
    p.add_argument("--episode-gap", type=duration_arg, default=EPISODE_GAP_SECS, metavar="DURATION",
                   help="scan with this incident episode gap, as `scan --episode-gap` (default: 1h)")
    p.add_argument("--new-behaviour", type=duration_arg, default=NEW_BEHAVIOUR_SECS, metavar="DURATION",
                   help="scan with this new-behaviour period, as `scan --new-behaviour` (default: 365d)")
    p.add_argument("--ablate", default="", metavar="LIST",
                   help="also scan each system without each of these models (same bundle) and report the "
                        "difference in the JSON rows' `ablation` (default: none)")


def run(args: argparse.Namespace) -> int:
    """Run every chosen system and print the table or the JSON rows."""
    data = Path(args.data)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    missing = [s for s in systems if not (data / s / f"{s}_2k.log").is_file()]
    if missing:
        raise InputError(f"no {', '.join(missing)} under {data} (expected <dir>/<System>/<System>_2k.log)")
    options = RunOptions(
        epochs=args.epochs,
        max_train_seconds=args.max_train_seconds,
        models=tuple(m.strip() for m in args.models.split(",")) if args.models else None,
        sensitivity=Sensitivity(args.sensitivity),
        live=not args.no_live,
        ablate=tuple(m.strip() for m in args.ablate.split(",") if m.strip()),
        reuse=args.reuse,
        episode_gap_secs=args.episode_gap,
        new_behaviour_secs=args.new_behaviour,
    )
    if args.reuse and not args.keep:
        raise InputError("--reuse needs --keep DIR (where the bundles are)")
    rows: list[SystemRow] = []
    with tempfile.TemporaryDirectory(prefix="logdetect-normal-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        for system in systems:
            row = run_system(data / system, system, options, work)
            rows.append(row)
            if not args.json:
                sys.stderr.write(f"{system}: {row.flagged_lines} flagged, {row.incidents} incidents "
                                 f"({row.seconds:.0f}s)\n")
    if args.json:
        result = {"dataset": "normal-logs", "sensitivity": options.sensitivity.value,
                  "train": {"epochs": options.epochs, "max_train_seconds": options.max_train_seconds,
                            "models": list(options.models) if options.models else "default"},
                  "results": [r.as_dict() for r in rows]}
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(format_rows(rows) + "\n")
    return 0
