"""End-to-end throughput of the agent pipeline against bare Drain3, four streams in one run.

Each stream is trained on its first part and scanned once over the rest (one pass: no replay
that would continue every entity's history with timestamps that start over). Both sides get
the same raw records and parse their headers with the same `LineParser`: the baseline is
`LineParser.parts` (the header parse the pipeline does, without a line object) + Drain3's own
`TemplateMiner.add_log_message` with the same masks (as Drain3 regexes), fresh state; the
pipeline figure is `Pipeline.process` + `close` with every model of the bundle, and every output
encoded as the event lines the sinks receive (`events.encode_all`). Each timed run starts after
a `gc.collect()` (the previous run's pipeline is garbage, not this run's cost).

Streams (names for `--streams`):
  hdfs       HDFS dev slice, entity = block id: train on the first half, scan the second
  bgl        BGL_14k, entity = component: train on the first half, scan the second
  openssh    OpenSSH_2k (syslog), entity = the sshd process (one connection): same split
  simulated  trainer/simulator: 2 normal days at 10k lines/day, then scan a 20k-line day with
             every incident kind, entity = component

Per stream it prints the median over `--runs` of pipeline / bare Drain3 (alternating, fresh
state every run, same process), then one instrumented run's per-stage µs per line
(exclusive time of each stage; "rest" is that run's total minus the stages: per-line objects,
batching, glue and the wrappers' own cost).

usage:
  python bench/throughput.py                                   # four streams, all four models
  python bench/throughput.py --models isolation_forest,deeplog --streams hdfs,bgl
  python bench/throughput.py --bundles /tmp/tp-bundles         # keep trained bundles between runs
  python bench/throughput.py --rss                             # also the agent's peak RSS, idle and busy
  python bench/throughput.py --cpu                             # CPU time, not wall time (a loaded machine)
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))

ALL_FOUR = "isolation_forest,deeplog,lstm_ae,logbert"
# What every run and stage is timed with: wall time, or this process's CPU time with `--cpu` (on
# a machine shared with other work, wall time counts the waits for a core too).
CLOCK: Callable[[], float] = time.perf_counter
BATCH = 4096  # records per `process` call, as `logdetect scan` batches


@dataclass(frozen=True)
class Stream:
    """One benchmark stream: records to train on, records to scan, and how to parse them."""

    name: str
    train: list[Any]
    scan: list[Any]
    log_format: str
    entity: str
    multiline: bool = True


def _split(path: Path) -> tuple[list[Any], list[Any]]:
    from agent.reader import iter_records

    records = list(iter_records(path))
    half = len(records) // 2
    return records[:half], records[half:]


def load_stream(name: str, work: Path) -> Stream:
    """The records of a named stream (see the module docstring)."""
    from agent.reader import iter_records

    if name == "hdfs":
        train, scan = _split(DATA / "hdfs/HDFS_v1_head20k_dev.log")
        return Stream(name, train, scan, "hdfs", r"regex:(blk_-?\d+)")
    if name == "bgl":
        train, scan = _split(DATA / "bgl/BGL_14k.log")
        return Stream(name, train, scan, "bgl", "component", multiline=False)
    if name == "openssh":
        train, scan = _split(DATA / "loghub_2k/OpenSSH/OpenSSH_2k.log")
        return Stream(name, train, scan, "auto", r"regex:sshd\[(\d+)\]")
    if name == "simulated":
        from trainer.simulator import simulate

        normal, day = work / "sim-normal.log", work / "sim-incidents.log"
        if not normal.exists():
            simulate(normal, days=2, seed=11, start=datetime(2026, 11, 2, tzinfo=UTC), lines_per_day=10_000)
        if not day.exists():
            simulate(day, days=1, seed=12, incidents=("all",), start=datetime(2026, 11, 4, tzinfo=UTC),
                     lines_per_day=20_000)
        return Stream(name, list(iter_records(normal)), list(iter_records(day)), "iso", "component")
    raise SystemExit(f"unknown stream {name!r}: choose hdfs, bgl, openssh, simulated")


def bundle_for(stream: Stream, models: tuple[str, ...], bundles: Path) -> Path:
    """The stream's bundle for these models (trained once per `--bundles` directory)."""
    from agent.parsing import ParserConfig
    from trainer.train import TrainOptions, train

    out = bundles / f"{stream.name}-{'+'.join(models)}"
    if not (out / "manifest.json").exists():
        parser = ParserConfig(log_format=stream.log_format, entity=stream.entity, multiline=stream.multiline)
        train(stream.train, TrainOptions(output=out, parser=parser, models=models, epochs=3, progress=False,
                                         max_train_seconds=60))
    return out


def run_drain(stream: Stream, bundle: Path) -> float:
    """Seconds for bare Drain3 over the scanned records, headers parsed with the same parser."""
    from drain3 import TemplateMiner as Drain3Miner

    from agent.bundle import load_bundle
    from agent.parsing import LineParser, ParserConfig
    from agent.templates import MinerConfig

    manifest = load_bundle(bundle).manifest
    parser = LineParser(ParserConfig(**manifest["parser"]))
    drain = Drain3Miner(config=MinerConfig().drain3_config())
    gc.collect()  # the previous run's garbage is not this run's cost
    began = CLOCK()
    for line_no, record in enumerate(stream.scan, 1):
        # the header parse the pipeline does (its `parts`: the ParsedLine's pieces, no object)
        drain.add_log_message(parser.parts(record, line_no)[1])
    return CLOCK() - began


def run_pipeline(stream: Stream, bundle: Path, timers: StageTimers | None = None) -> tuple[float, dict[str, int]]:
    """Seconds for the pipeline over the scanned records, outputs encoded; and what came out."""
    from agent import events
    from agent.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline.from_bundle(bundle, PipelineConfig())
    encode: Callable[..., list[bytes]] = events.encode_all
    if timers is not None:
        timers.instrument(pipe)
        encode = timers.wrap("event encoding", encode)
    counts: dict[str, int] = {}
    records = stream.scan
    gc.collect()  # the previous run's pipeline is not this run's cost
    began = CLOCK()
    for start in range(0, len(records), BATCH):
        outputs = pipe.process(records[start : start + BATCH], 0.0)
        encode(outputs, 0.0, pipe.provider)
        _count(outputs, counts)
    outputs = pipe.close(0.0)
    encode(outputs, 0.0, pipe.provider)
    _count(outputs, counts)
    return CLOCK() - began, counts


def _count(outputs: Sequence[Any], counts: dict[str, int]) -> None:
    for o in outputs:
        kind = type(o).__name__
        counts[kind] = counts.get(kind, 0) + 1


class StageTimers:
    """Exclusive wall time per named stage, by wrapping the pipeline's parts (one run only:
    the wrappers cost about a microsecond per call)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[float] = []  # child time accumulated inside each open call

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn`, timed into `stage` (time spent in other wrapped stages inside it excluded)."""
        seconds, stack, clock = self.seconds, self._stack, CLOCK
        seconds.setdefault(stage, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            stack.append(0.0)
            began = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = clock() - began
                inner = stack.pop()
                seconds[stage] += elapsed - inner
                if stack:
                    stack[-1] += elapsed

        return timed

    def patch(self, stage: str, owner: object | None, attr: str) -> None:
        """Time `owner.attr` (a bound method) into `stage`; skipped when it does not exist."""
        if owner is not None and callable(getattr(owner, attr, None)):
            setattr(owner, attr, self.wrap(stage, getattr(owner, attr)))

    def instrument(self, pipe: Any) -> None:
        """Wrap every stage the pipeline has (missing ones are skipped, so the table follows the code)."""
        self.patch("stitch", pipe.stitcher, "feed")
        self.patch("stitch", pipe.stitcher, "feed_all")
        self.patch("header parse", pipe.parser, "parse")
        self.patch("header parse", pipe.parser, "parts")
        self.patch("template match", pipe.miner, "match")
        self.patch("template match", getattr(pipe, "shapes", None), "parts")
        self.patch("template match", getattr(pipe, "shapes", None), "template")
        self.patch("template match", getattr(pipe, "shapes", None), "lookup")
        self.patch("template match", pipe.online_miner, "add")
        self.patch("template match", pipe.online_miner, "add_parts")
        self.patch("features", pipe.features, "update")
        self.patch("features", pipe.features, "advance")
        self.patch("explainer observe + is_notable", pipe.explainer, "observe")
        self.patch("explainer observe + is_notable", pipe.explainer, "note_at")
        self.patch("explainer observe + is_notable", pipe.explainer, "is_notable")
        for d in pipe.detectors:
            self.patch(f"detector {d.name}", d, "score_lines")
            self.patch(f"detector {d.name}", d, "score_due")  # scheduled (LogBERT) beside a short road
            self.patch(f"detector {d.name}", d, "score_rows")  # rows the short road settles with their batch
            self.patch("session verdicts", d, "score_session")
        self.patch("ensemble", pipe.ensemble, "combine")
        self.patch("explanations", pipe.explainer, "explain")
        self.patch("explanations", pipe.explainer, "facts")  # a storm's repeat: its facts only
        self.patch("explanations", pipe.explainer, "facts_at")  # ... on the counted road, from its pieces
        self.patch("incident grouping", pipe.grouper, "add")
        self.patch("incident grouping", pipe.grouper, "counted_repeat")  # the storm road's decision
        self.patch("incident grouping", pipe.grouper, "plan_repeat")  # ... on the counted road, in the loop
        self.patch("incident grouping", pipe.grouper, "count")  # ... and its counting, in its turn
        self.patch("incident grouping", pipe.grouper, "tick")
        self.patch("session verdicts", pipe, "_session_verdicts")
        self.patch("session verdicts", pipe, "_judge_ended")  # a micro-batch's ended sessions, judged together
        self.patch("session verdicts", pipe.features, "end_idle")  # sessions ending (idle) ...
        self.patch("session verdicts", pipe.features, "end_all")  # ... or at the end of input


# The child reports VmHWM (peak RSS of its own address space): getrusage's ru_maxrss would keep
# the forking parent's peak across exec on Linux.
RSS_CHILD = (
    "import re, sys\n"
    "from agent.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
    "sys.stderr.write(f'PEAK_RSS_KIB {hwm.group(1)}\\n')\n"
    "raise SystemExit(code)\n"
)


def peak_rss_mib(bundle: Path, log: Path) -> float:
    """Peak RSS of `logdetect scan --format json` over `log` in a fresh process (the agent's code
    only: no torch, no trainer); an empty log gives the RSS of the loaded bundle, idle."""
    import subprocess

    run = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, "scan", "--model", str(bundle), "--input", str(log), "--format", "json"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, timeout=1800, check=False,
    )
    for line in run.stderr.splitlines():
        if line.startswith("PEAK_RSS_KIB "):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"scan failed ({run.returncode}): {run.stderr[-2000:]}")


def _stage_table(timers: StageTimers, lines: int, total_secs: float) -> list[tuple[str, float]]:
    rows = [(stage, secs * 1e6 / lines) for stage, secs in timers.seconds.items() if secs > 0]
    rows.sort(key=lambda r: -r[1])
    rest = total_secs * 1e6 / lines - sum(us for _, us in rows)
    rows.append(("rest: per-line objects, glue, timing", rest))
    rows.append(("total (instrumented run)", total_secs * 1e6 / lines))
    return rows


def main() -> int:
    """Train (or reuse) a bundle per stream, then print the ratios and the per-stage table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="hdfs,bgl,openssh,simulated")
    ap.add_argument("--models", default=ALL_FOUR)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per stream; the median is reported")
    ap.add_argument("--bundles", help="directory to keep trained bundles in (default: a temporary one)")
    ap.add_argument("--no-stages", action="store_true", help="skip the instrumented per-stage run")
    ap.add_argument("--cpu", action="store_true",
                    help="time runs and stages in this process's CPU time instead of wall time")
    ap.add_argument("--rss", action="store_true",
                    help="also the agent's peak RSS per stream: `logdetect scan` in a fresh process, idle "
                         "(empty input) and over the scanned lines")
    args = ap.parse_args()
    from agent.logging_setup import configure_logging

    configure_logging(stream=sys.stderr)  # stdout carries the figures (or the JSON) only
    models = tuple(m for m in args.models.split(",") if m)
    if args.cpu:
        global CLOCK
        CLOCK = time.process_time

    with tempfile.TemporaryDirectory() as tmp:
        bundles = Path(args.bundles) if args.bundles else Path(tmp)
        bundles.mkdir(parents=True, exist_ok=True)
        summary: list[str] = []
        print("timing: " + ("CPU time of this process (--cpu)" if args.cpu else "wall time"))
        for name in args.streams.split(","):
            stream = load_stream(name, bundles)
            bundle = bundle_for(stream, models, bundles)
            n = len(stream.scan)
            drain_runs: list[float] = []
            pipe_runs: list[float] = []
            counts: dict[str, int] = {}
            for _ in range(max(1, args.runs)):
                drain_runs.append(run_drain(stream, bundle))
                secs, counts = run_pipeline(stream, bundle)
                pipe_runs.append(secs)
            ratio = statistics.median(d / p for d, p in zip(drain_runs, pipe_runs, strict=True))
            drain_med, pipe_med = statistics.median(drain_runs), statistics.median(pipe_runs)
            print(f"\n== {name}: {n:,} lines scanned once (trained on {len(stream.train):,}); models: {args.models}")
            for label, secs in (("bare Drain3 (parts + add_log_message)", drain_med),
                                ("logdetect pipeline (+ encoding)", pipe_med)):
                print(f"  {label:<37}: {n / secs:>9,.0f} lines/s  {secs * 1e6 / n:6.1f} µs/line")
            print(f"  ratio pipeline / bare Drain3         : {ratio:.2f}x   (runs: "
                  + ", ".join(f"{d / p:.2f}" for d, p in zip(drain_runs, pipe_runs, strict=True)) + ")")
            print(f"  outputs: {', '.join(f'{k} {v:,}' for k, v in sorted(counts.items())) or 'none'}")
            summary.append(f"{name:<10} {ratio:5.2f}x")
            if args.rss:
                empty, scanned = bundles / f"{name}-empty.log", bundles / f"{name}-scan.log"
                empty.write_text("")
                scanned.write_text("".join(r.line + "\n" for r in stream.scan))
                idle, busy = peak_rss_mib(bundle, empty), peak_rss_mib(bundle, scanned)
                print(f"  agent peak RSS (logdetect scan, fresh process): idle {idle:.0f} MiB, "
                      f"scanning these lines {busy:.0f} MiB")
                summary[-1] += f"   peak RSS idle {idle:.0f} MiB, scanning {busy:.0f} MiB"
            if not args.no_stages:
                timers = StageTimers()
                instrumented, _ = run_pipeline(stream, bundle, timers)
                print("  per stage, µs per line (one instrumented run; exclusive times):")
                for stage, us in _stage_table(timers, n, instrumented):
                    print(f"    {stage:<40} {us:7.2f}")
        print("\npipeline / bare Drain3, models " + args.models)
        for line in summary:
            print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
