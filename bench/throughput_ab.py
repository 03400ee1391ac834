"""Before/after throughput in lockstep: two source trees measured alternately in one run.

On a machine shared with other work, single runs of one configuration scatter by tens of per
cent; alternating the two trees run by run lets both meet the same load. One worker process per
tree (its own tree first on `sys.path`) loads the stream and its bundle once, then on request
runs `bench/throughput.py`'s own `run_drain` and `run_pipeline` of that tree (CPU time). The
parent alternates the workers (the order flips every round) and prints the medians, the ratio
pipeline / bare Drain3 with its quartiles, and with `--stages` the medians of three instrumented
runs per tree, stage by stage. `--no-gc` turns the collector off in both workers (a full
collection lands in whichever stage allocates at that moment).

usage (a tree is a checkout or a `git archive` of one, with the same bundles for both):
  python bench/throughput_ab.py --before /tmp/main-tree --after . --stream bgl --runs 9
  python bench/throughput_ab.py --before A --after B --stream bgl --models isolation_forest,deeplog --stages
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ALL_FOUR = "isolation_forest,deeplog,lstm_ae,logbert"


def worker(tree: Path, stream_name: str, models: tuple[str, ...], bundles: Path) -> None:
    """Serve `run` and `stages` requests on stdin with this tree's code, one JSON line each."""
    sys.path.insert(0, str(tree))
    spec = importlib.util.spec_from_file_location("tree_throughput", tree / "bench" / "throughput.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no bench/throughput.py in {tree}")
    tp: Any = importlib.util.module_from_spec(spec)
    sys.modules["tree_throughput"] = tp
    spec.loader.exec_module(tp)
    tp.CLOCK = time.process_time
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    stream = tp.load_stream(stream_name, bundles)
    bundle = tp.bundle_for(stream, models, bundles)
    n = len(stream.scan)
    if os.environ.get("THROUGHPUT_AB_NO_GC"):
        gc.disable()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for request in sys.stdin:
        if request.strip() == "run":
            drain = tp.run_drain(stream, bundle)
            pipe, _ = tp.run_pipeline(stream, bundle)
            sys.stdout.write(json.dumps({"drain": drain * 1e6 / n, "pipe": pipe * 1e6 / n}) + "\n")
        elif request.strip() == "stages":
            timers = tp.StageTimers()
            secs, _ = tp.run_pipeline(stream, bundle, timers)
            sys.stdout.write(json.dumps(dict(tp._stage_table(timers, n, secs))) + "\n")
        else:
            return
        sys.stdout.flush()


def main() -> int:
    """Start a worker per tree, alternate them, print medians (and stages)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="the tree before (required)")
    ap.add_argument("--after", help="the tree after (required)")
    ap.add_argument("--stream", default="bgl", help="hdfs, bgl, openssh or simulated (bench/throughput.py)")
    ap.add_argument("--models", default=ALL_FOUR)
    ap.add_argument("--runs", type=int, default=9, help="alternations (one run per tree each)")
    ap.add_argument("--bundles", default="/tmp/throughput-ab-bundles", help="trained once, shared by both trees")
    ap.add_argument("--stages", action="store_true", help="also three instrumented runs per tree")
    ap.add_argument("--no-gc", action="store_true", help="the collector off in both workers")
    ap.add_argument("--worker", nargs=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    models = tuple(m for m in args.models.split(",") if m)
    if args.worker:
        worker(Path(args.worker[0]), args.stream, models, Path(args.bundles))
        return 0
    if not args.before or not args.after:
        ap.error("--before and --after are required")
    trees = [str(Path(args.before).resolve()), str(Path(args.after).resolve())]
    env = {**os.environ, **({"THROUGHPUT_AB_NO_GC": "1"} if args.no_gc else {})}
    procs = []
    for tree in trees:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", tree, "--stream", args.stream, "--models", args.models,
             "--bundles", args.bundles],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**env, "PYTHONPATH": tree})
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the worker for {tree} did not start")
        procs.append(proc)

    def ask(proc: subprocess.Popen[str], request: str) -> dict[str, float]:
        assert proc.stdin is not None and proc.stdout is not None  # (pipes: opened above)
        proc.stdin.write(request + "\n")
        proc.stdin.flush()
        answer: dict[str, float] = json.loads(proc.stdout.readline())
        return answer

    runs: list[list[dict[str, float]]] = [[], []]
    for r in range(max(1, args.runs)):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            runs[k].append(ask(procs[k], "run"))
    load = os.getloadavg()
    out = [f"== {args.stream}, models {args.models}, {args.runs} alternations, load {load[0]:.1f} {load[1]:.1f}"
           + (", collector off" if args.no_gc else "")]
    for label, tree, rs in zip(("before", "after"), trees, runs, strict=True):
        ratios = sorted(x["drain"] / x["pipe"] for x in rs)
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 2 else [ratios[0], 0.0, ratios[-1]]
        out.append(f"  {label:<6} {tree}: pipeline {statistics.median(x['pipe'] for x in rs):6.1f} µs/line, "
                   f"bare Drain3 {statistics.median(x['drain'] for x in rs):5.1f}, ratio "
                   f"{statistics.median(ratios):.3f}x ({q[0]:.3f}-{q[2]:.3f})")
    if args.stages:
        tables = []
        for proc in procs:
            rows: dict[str, list[float]] = {}
            for _ in range(3):
                for stage, us in ask(proc, "stages").items():
                    rows.setdefault(stage, []).append(us)
            tables.append({stage: statistics.median(v) for stage, v in rows.items()})
        out.append(f"  {'stage, µs per line (median of 3 instrumented runs)':<52} {'before':>7} {'after':>7}")
        for stage in sorted(set(tables[0]) | set(tables[1]), key=lambda s: -tables[0].get(s, 0.0)):
            out.append(f"  {stage:<52} {tables[0].get(stage, 0.0):7.2f} {tables[1].get(stage, 0.0):7.2f}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
