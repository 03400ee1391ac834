"""Before/after throughput of two source trees in lockstep: one worker process per tree, alternating.

On a machine shared with other work, single bench runs of one configuration scatter by ±30 %;
runs of the two trees interleaved in time see the same load. Each worker imports its own tree
(`bench/throughput.py`'s `load_stream`, `bundle_for`, `run_drain`, and the pipeline run of
`run_pipeline`), loads each stream and bundle once, and then answers one timed run per request in
its own CPU time. The driver alternates: before then after, after then before, ... `--runs`
times per stream, each a bare-Drain3 run and a pipeline run (outputs encoded). Both trees read
the same bundles (`--bundles`: trained once by whichever tree gets there first).

Per stream and tree it prints the median ratio pipeline / bare Drain3 (and its quartiles), the
pipeline's µs per line, the CPU time inside the session verdicts (`_session_verdicts`, `_judge_ended`,
`FeatureExtractor.end_idle/end_all`) per line, the garbage collector's time per line and the
full collections per run. `--stages` adds, per stream, the medians of three instrumented runs
per tree stage by stage (`bench/throughput.py`'s table); `--no-gc` turns the collector off in
both workers (a full collection lands in whichever stage allocates at that moment).

usage (a tree is any checkout: a git worktree, or `git archive REV | tar -x -C DIR`):
  python bench/lockstep_ab.py --before /tmp/main-tree --after . --bundles /tmp/ab-bundles
  python bench/lockstep_ab.py --before A --after B --streams simulated,openssh --models isolation_forest,deeplog
  python bench/lockstep_ab.py --before A --after B --streams bgl --stages --no-gc
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def worker(tree: Path, bundles: Path, collect: bool = True) -> int:
    """Answer requests 'STREAM MODELS drain|pipeline|stages' on stdin with one JSON line each
    (`collect`: False turns the garbage collector off)."""
    sys.path.insert(0, str(tree))
    import bench.throughput as tp

    tp.CLOCK = time.process_time
    collector = {"full": 0, "seconds": 0.0, "began": 0.0}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collector["began"] = time.process_time()
            return
        collector["seconds"] += time.process_time() - collector["began"]
        collector["full"] += info["generation"] == 2

    gc.callbacks.append(on_gc)
    if not collect:
        gc.disable()
    streams: dict[str, Any] = {}
    for request in sys.stdin:
        name, models, what = request.split()
        if name not in streams:
            streams[name] = tp.load_stream(name, bundles)
        stream = streams[name]
        bundle = tp.bundle_for(stream, tuple(models.split(",")), bundles)
        if what == "drain":
            answer: dict[str, float] = {"seconds": tp.run_drain(stream, bundle)}
        elif what == "stages":
            timers = tp.StageTimers()
            seconds, _ = tp.run_pipeline(stream, bundle, timers)
            answer = dict(tp._stage_table(timers, len(stream.scan), seconds))
        else:
            answer = run_pipeline(tp, stream, bundle, collector)
        answer["lines"] = len(stream.scan)
        sys.stdout.write("ANSWER " + json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def run_pipeline(tp: Any, stream: Any, bundle: Path, collector: dict[str, Any]) -> dict[str, float]:
    """One pipeline run as `run_pipeline` times it, plus the session verdicts' and collector's share."""
    from agent import events
    from agent.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline.from_bundle(bundle, PipelineConfig())
    inside = [0.0]
    depth = [0]  # `_judge_ended` calls `_session_verdicts`: only the outer call counts

    def timed(fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            began = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if not depth[0]:
                    inside[0] += time.process_time() - began

        return run

    pipe._session_verdicts = timed(pipe._session_verdicts)
    if hasattr(pipe, "_judge_ended"):  # a micro-batch's ended sessions, judged together
        pipe._judge_ended = timed(pipe._judge_ended)
    pipe.features.end_idle = timed(pipe.features.end_idle)
    pipe.features.end_all = timed(pipe.features.end_all)
    records = stream.scan
    gc.collect()  # the previous run's pipeline is not this run's cost
    collector["full"], collector["seconds"] = 0, 0.0
    began = time.process_time()
    for start in range(0, len(records), tp.BATCH):
        events.encode_all(pipe.process(records[start : start + tp.BATCH], 0.0), 0.0, pipe.provider)
    events.encode_all(pipe.close(0.0), 0.0, pipe.provider)
    return {"seconds": time.process_time() - began, "sessions": inside[0], "gc": collector["seconds"],
            "full": float(collector["full"])}


class Worker:
    """A worker process over one tree."""

    def __init__(self, tree: Path, bundles: Path, collect: bool = True) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(tree), "--bundles", str(bundles),
             *(() if collect else ("--no-gc",))],
            cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

    def ask(self, stream: str, models: str, what: str) -> dict[str, float]:
        """One timed run in the worker."""
        if self.proc.stdin is None or self.proc.stdout is None:
            raise SystemExit("the worker has no pipes")
        self.proc.stdin.write(f"{stream} {models} {what}\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("a worker died: run it alone (--worker TREE --bundles DIR)")
            if line.startswith("ANSWER "):
                answer: dict[str, float] = json.loads(line[len("ANSWER "):])
                return answer

    def close(self) -> None:
        """Let the worker finish."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main() -> int:
    """Alternate the two trees' runs and print the medians."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path)
    ap.add_argument("--after", type=Path)
    ap.add_argument("--streams", default="hdfs,bgl,openssh,simulated")
    ap.add_argument("--models", default="isolation_forest,deeplog,lstm_ae,logbert")
    ap.add_argument("--runs", type=int, default=9, help="alternations per stream (default 9)")
    ap.add_argument("--bundles", type=Path, default=Path("/tmp/lockstep-bundles"))
    ap.add_argument("--stages", action="store_true", help="also three instrumented runs per tree, stage by stage")
    ap.add_argument("--no-gc", action="store_true", help="the garbage collector off in both workers")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        return worker(args.worker.resolve(), args.bundles, collect=not args.no_gc)
    if args.before is None or args.after is None:
        ap.error("--before and --after name the two trees")
    args.bundles.mkdir(parents=True, exist_ok=True)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    workers = {label: Worker(tree, args.bundles, collect=not args.no_gc) for label, tree in trees.items()}
    print(f"before {trees['before']}\nafter  {trees['after']}\nmodels {args.models}; CPU time; "
          f"load {os.getloadavg()[0]:.1f} at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    print("| stream | tree | pipeline / bare Drain3 (quartiles) | pipeline µs/line | session verdicts µs/line "
          "| collector µs/line | full collections per run |")
    print("|---|---|---|---|---|---|---|")
    for stream in args.streams.split(","):
        for w in workers.values():  # untimed: imports, stream and bundle (trained here if missing)
            w.ask(stream, args.models, "pipeline")
        got: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
        for i in range(args.runs):
            for label in (("before", "after") if i % 2 == 0 else ("after", "before")):
                drain = workers[label].ask(stream, args.models, "drain")
                run = workers[label].ask(stream, args.models, "pipeline")
                per_line = 1e6 / run["lines"]
                for key, value in (("ratio", drain["seconds"] / run["seconds"]), ("us", run["seconds"] * per_line),
                                   ("sessions", run["sessions"] * per_line), ("gc", run["gc"] * per_line),
                                   ("full", run["full"])):
                    got[label].setdefault(key, []).append(value)
        for label in trees:
            g = got[label]
            q = statistics.quantiles(g["ratio"], n=4) if len(g["ratio"]) > 1 else [g["ratio"][0]] * 3
            print(f"| {stream} | {label} | {statistics.median(g['ratio']):.2f}× ({q[0]:.2f}–{q[2]:.2f}) | "
                  f"{statistics.median(g['us']):.1f} | {statistics.median(g['sessions']):.2f} | "
                  f"{statistics.median(g['gc']):.2f} | {statistics.median(g['full']):g} |", flush=True)
        if args.stages:
            print_stages(stream, {label: [w.ask(stream, args.models, "stages") for _ in range(3)]
                                  for label, w in workers.items()})
    for w in workers.values():
        w.close()
    print(f"load {os.getloadavg()[0]:.1f} at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    return 0


def print_stages(stream: str, tables: dict[str, list[dict[str, float]]]) -> None:
    """Each stage's median µs per line over the instrumented runs, before and after."""
    medians = {label: {stage: statistics.median(run.get(stage, 0.0) for run in runs) for stage in runs[0]
                       if stage != "lines"} for label, runs in tables.items()}
    print(f"\n{stream}, µs per line by stage (median of {len(tables['before'])} instrumented runs per tree)")
    print("| stage | before | after |\n|---|---|---|")
    before, after = medians["before"], medians["after"]
    for stage in sorted(set(before) | set(after), key=lambda s: -before.get(s, 0.0)):
        print(f"| {stage} | {before.get(stage, 0.0):.2f} | {after.get(stage, 0.0):.2f} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
