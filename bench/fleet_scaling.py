"""Fleet scaling benchmark: the data half of training on Dask with 1 and 2 workers, and
JetStream ingest with 1 and 2 agents, each pair on the same input in the same run.

    .venv/bin/python bench/fleet_scaling.py [--copies 8] [--repeats 2] [--end-to-end 1] [--messages 2000]
                                            [--skip-nats] [--json]

1. Data half, as `train --dask` runs it (`trainer/distributed.py`, `trainer.train.assemble_on_cluster`:
   read, parse, mine, match, the history check, per-entity sequences, features, the explanation
   profile and the held-back split, up to the assembled training set in the driver: all that
   reaches the driver is in the clock), on `--copies` copies of Loghub BGL_16k (one file per
   simulated host, in a temp dir), with a local Dask cluster of 1 worker and then of 2 (one
   thread each); the cluster is started before the clock and the best of `--repeats` runs
   counts (the ratio of the median runs is printed too). The single-process data half
   (`assemble_in_process`) on the same files is the baseline. Then `train` end to end (the data
   half and fitting novelty + Isolation Forest, judging, calibration, the bundle) in one process,
   on 1 worker and on 2, alternating, `--end-to-end` times each.
2. JetStream ingest: a real nats-server (Debian's, on 127.0.0.1, a free port), `--messages`
   Fluent Bit-style messages of 50 OpenSSH lines each published into a work-queue stream, then
   consumed by 1, then 2 real `logdetect agent` processes (a `nats` source sharing one durable
   consumer, the real pipeline on an OpenSSH bundle, a file sink): lines/s from the first
   publish until the stream is empty (every message processed, written and acked).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))
LINES_PER_MESSAGE = 50


def host_files(tmp: Path, copies: int) -> list[Path]:
    """`copies` files of BGL_16k, one per simulated host."""
    source = DATA / "bgl" / "BGL_16k.log"
    out = []
    for i in range(copies):
        path = tmp / f"host-{i:02d}.log"
        shutil.copyfile(source, path)
        out.append(path)
    return out


MODELS = ("novelty", "isolation_forest")  # what the end-to-end runs fit (as the closing notes' runs)


def _options(output: Path, models: tuple[str, ...] = MODELS) -> Any:
    from trainer.train import TrainOptions

    return TrainOptions(output=output, models=models, progress=False)


def single_process(paths: list[Path]) -> tuple[float, int, int]:
    """The data half in this process, as `train` runs it (read, parse, mine, match every line,
    the history check, per-entity sequences, features, the explanation profile, the held-back
    split): seconds, lines, templates."""
    from agent.reader import iter_records
    from trainer.distributed import paused_gc
    from trainer.train import assemble_in_process

    started = time.perf_counter()
    records = [r for p in paths for r in iter_records(p)]
    data = paused_gc(assemble_in_process)(records, _options(Path("unused")))  # as `train` runs it
    return time.perf_counter() - started, data.lines, len(data.vocab)


def _cpu_secs() -> float:
    """User + system CPU seconds of the calling process (run on each worker)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


PHASES = ("read_parse_cut", "merge_mine_match", "history_check", "match_shuffle_count", "features_profile")


def _warm() -> None:
    """Import what the workers' tasks run (on each worker, before the clock)."""
    import trainer.distributed  # noqa: F401


def on_dask(paths: list[Path], workers: int, repeats: int, blocksize: int) -> dict[str, Any]:
    """The data half on a local cluster of `workers`, as `train --dask` runs it: round 1 and the
    merge (`prepare`), then every round `assemble_on_cluster` asks for, up to the assembled
    training set in the driver (features, profile, history check, sequences, the judged lines):
    everything that reaches the driver is in the clock. The best of `repeats` runs (wall
    seconds, its phases, the CPU seconds of each worker and of the driver). On a machine other
    jobs load, the CPU seconds show how the work was split where the wall clock cannot: the
    busiest worker's plus the driver's CPU time is the run's critical path on idle cores. The
    driver process also runs the local cluster's scheduler: its main thread's CPU time (our
    code) is reported apart."""
    from agent.parsing import ParserConfig
    from agent.templates import MinerConfig
    from trainer.distributed import connect, prepare
    from trainer.train import assemble_on_cluster

    started = time.perf_counter()
    client = connect(f"local:{workers}")
    try:
        client.run(_warm)  # the workers' imports are start-up, as the cluster's start is
        start_secs = time.perf_counter() - started
        best: dict[str, Any] | None = None
        critical_paths = []
        walls = []
        for _ in range(repeats):
            before, driver = client.run(_cpu_secs), time.process_time()
            main_thread = time.thread_time()
            started = time.perf_counter()
            data = prepare([str(p) for p in paths], ParserConfig(), MinerConfig(), 0.2, client, blocksize)
            assembled = assemble_on_cluster(data, _options(Path("unused")))
            secs = time.perf_counter() - started
            main_thread = time.thread_time() - main_thread
            after, driver = client.run(_cpu_secs), time.process_time() - driver
            cpu = sorted(round(after[w] - before[w], 2) for w in after)
            run = {"secs": round(secs, 2), "templates": len(assembled.vocab), "lines": assembled.lines,
                   "training_rows": len(assembled.x_train), "entities": data.entities, **data.seconds,
                   "worker_cpu_secs": cpu, "driver_cpu_secs": round(driver, 2),
                   "driver_main_thread_cpu_secs": round(main_thread, 2),
                   "critical_path_cpu_secs": round(max(cpu) + driver, 2)}
            critical_paths.append(run["critical_path_cpu_secs"])
            walls.append(run["secs"])
            if best is None or secs < best["secs"]:
                best = run
        assert best is not None
        best["critical_path_cpu_secs_per_run"] = critical_paths
        best["secs_per_run"] = walls
        best["cluster_start_secs"] = round(start_secs, 2)
        return best
    finally:
        client.close()
        client.cluster.close()


def end_to_end(paths: list[Path], workers: int, blocksize: int, out: Path) -> float:
    """`train` end to end (data half + fitting `MODELS` + judging + calibration + the bundle) on
    these files: in this process (workers 0) or as `train --dask local:N` runs it (the cluster's
    start not counted; its stop, before the models are fitted, is)."""
    from agent.parsing import ParserConfig
    from agent.reader import iter_records
    from agent.templates import MinerConfig
    from trainer.distributed import connect, prepare
    from trainer.train import assemble_on_cluster, fit, train

    if workers == 0:
        started = time.perf_counter()
        train([r for p in paths for r in iter_records(p)], _options(out))
        return time.perf_counter() - started
    client = connect(f"local:{workers}")
    try:
        client.run(_warm)
        started = time.perf_counter()
        data = prepare([str(p) for p in paths], ParserConfig(), MinerConfig(), 0.2, client, blocksize)
        assembled = assemble_on_cluster(data, _options(out))
    finally:
        client.close()
        client.cluster.close()
    fit(assembled, _options(out))
    return time.perf_counter() - started


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b > 0 else 0.0


def data_half(copies: int, repeats: int, blocksize: int, e2e: int) -> dict[str, Any]:
    """Section 1: the data half on 1 and 2 Dask workers, and in one process; then (`e2e` times
    each, alternating) `train` end to end in one process, on 1 and on 2 workers."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = host_files(Path(tmp), copies)
        size = sum(p.stat().st_size for p in paths)
        single_secs, lines, single_templates = single_process(paths)
        one = on_dask(paths, 1, repeats, blocksize)
        two = on_dask(paths, 2, repeats, blocksize)
        ends: dict[str, list[float]] = {"one_process": [], "dask_1": [], "dask_2": []}
        for i in range(e2e):
            for name, workers in (("one_process", 0), ("dask_1", 1), ("dask_2", 2)):
                ends[name].append(round(end_to_end(paths, workers, blocksize, Path(tmp) / f"b-{name}-{i}"), 2))
    out = {
        "files": copies, "bytes": size, "lines": lines, "blocksize": blocksize,
        "single_process_secs": round(single_secs, 2), "single_process_templates": single_templates,
        "dask_1": one, "dask_2": two,
        "speedup_2_over_1": _ratio(one["secs"], two["secs"]),
        "median_speedup_2_over_1": _ratio(statistics.median(one["secs_per_run"]),
                                          statistics.median(two["secs_per_run"])),
        "phase_ratios_2_over_1": {k: _ratio(one[k], two[k]) for k in PHASES},
        "critical_path_ratio_2_over_1": _ratio(min(one["critical_path_cpu_secs_per_run"]),
                                               min(two["critical_path_cpu_secs_per_run"])),
    }
    if e2e:
        out["end_to_end_secs"] = ends
        out["end_to_end_best"] = {k: min(v) for k, v in ends.items()}
        out["end_to_end_median"] = {k: statistics.median(v) for k, v in ends.items()}
    return out


def nats_ingest(messages: int, bundle: Path | None) -> dict[str, Any]:
    """Section 2: JetStream ingest with 1 and 2 real agents."""
    import orjson
    from nats_server import NatsServer, SyncClient, unique_name
    from ops.agent_harness import AgentProcess, wait_until

    lines = [line for line in (DATA / "loghub_2k" / "OpenSSH" / "OpenSSH_2k.log").read_text().splitlines() if line]
    server = NatsServer()
    results: dict[str, Any] = {"messages": messages, "lines": messages * LINES_PER_MESSAGE}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if bundle is None:
            bundle = tmp / "bundle"
            subprocess.run([sys.executable, "-m", "agent.cli", "train", "--input",
                            str(DATA / "loghub_2k" / "OpenSSH" / "OpenSSH_2k.log"), "--output", str(bundle),
                            "--models", "isolation_forest", "--quiet"], check=True, cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
        client = SyncClient(server.url)
        try:
            for agents in (1, 2):
                stream = unique_name("B")
                procs = []
                for a in range(agents):
                    config = tmp / f"agent-{agents}-{a}.toml"
                    config.write_text(f"""
model = "{bundle}"
state_dir = "{tmp / f'state-{agents}-{a}'}"
[agent]
metrics_listen = ""
[sources.fleet]
type = "nats"
servers = ["{server.url}"]
stream = "{stream}"
subject = "{stream}.logs"
durable = "agents"
fetch_timeout_secs = 0.2
[sinks.events]
type = "file"
path = "{tmp / f'events-{agents}-{a}.jsonl'}"
""")
                    procs.append(AgentProcess(config, None))
                for p in procs:
                    wait_until(lambda p=p: "agent ready" in p.log_events() or p.proc.poll() is not None, 120, "ready")
                started = time.perf_counter()
                for m in range(messages):
                    chunk = [lines[(m * LINES_PER_MESSAGE + i) % len(lines)] for i in range(LINES_PER_MESSAGE)]
                    client.publish(f"{stream}.logs", orjson.dumps([[time.time(), {"log": c}] for c in chunk]))
                published = time.perf_counter() - started
                wait_until(lambda s=stream: client.stream_messages(s) == 0, 600, "the stream drained", step=0.02)
                secs = time.perf_counter() - started
                for p in procs:
                    p.signal(signal.SIGTERM)
                for p in procs:
                    p.wait(timeout=30)
                    p.kill()
                results[f"agents_{agents}"] = {
                    "secs": round(secs, 2), "publish_secs": round(published, 2),
                    "lines_per_sec": round(messages * LINES_PER_MESSAGE / secs),
                }
        finally:
            client.close()
            server.kill()
    results["speedup_2_over_1"] = round(results["agents_1"]["secs"] / results["agents_2"]["secs"], 2)
    return results


def main() -> int:
    """Run both sections and print their figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=8, help="copies of BGL_16k, one per host (default: 8)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per cluster size, best counts (default: 2)")
    ap.add_argument("--blocksize", type=int, default=2 * 1024 * 1024, help="bytes per Dask block (default: 2 MiB)")
    ap.add_argument("--end-to-end", type=int, default=1, metavar="N",
                    help="end-to-end `train` runs per mode, alternating (default: 1; 0: none)")
    ap.add_argument("--messages", type=int, default=2000, help="JetStream messages of 50 lines (default: 2000)")
    ap.add_argument("--model", type=Path, default=None, help="bundle for the agents (default: train one)")
    ap.add_argument("--skip-nats", action="store_true", help="only the data half (default: both)")
    ap.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    args = ap.parse_args()
    from agent.logging_setup import configure_logging

    configure_logging(stream=sys.stderr)  # stdout carries the figures (or the JSON) only
    out: dict[str, Any] = {"cpus": os.cpu_count(), "load_average": [round(x, 1) for x in os.getloadavg()]}
    out["data_half"] = data_half(args.copies, args.repeats, args.blocksize, args.end_to_end)
    if not args.skip_nats:
        out["jetstream_ingest"] = nats_ingest(args.messages, args.model)
    out["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(out))
        return 0
    d = out["data_half"]
    print(f"data half (read to assembled training set: features, profile, history check, sequences) on "
          f"{d['files']} files, {d['lines']:,} lines, {d['bytes'] / 1e6:.1f} MB, blocks of {d['blocksize']:,} bytes "
          f"(load average {out['load_average']}, {out['cpus']} CPUs)")
    print(f"  one process      {d['single_process_secs']:7.2f} s  ({d['single_process_templates']} templates)")
    for k, name in (("dask_1", "Dask, 1 worker "), ("dask_2", "Dask, 2 workers")):
        r = d[k]
        phases = ", ".join(f"{p} {r[p]:.2f} s" for p in PHASES)
        print(f"  {name}  {r['secs']:7.2f} s  ({r['templates']} templates, {r['entities']} entities, "
              f"{r['training_rows']:,} training rows; {phases}; "
              f"CPU s: workers {r['worker_cpu_secs']}, driver {r['driver_cpu_secs']} "
              f"(our code's thread {r['driver_main_thread_cpu_secs']}, the rest the local scheduler), "
              f"critical path {r['critical_path_cpu_secs']} (every run: {r['critical_path_cpu_secs_per_run']}); "
              f"wall every run {r['secs_per_run']}; cluster start {r['cluster_start_secs']} s)")
    ratios = ", ".join(f"{p} {v}x" for p, v in d["phase_ratios_2_over_1"].items())
    print(f"  2 workers vs 1: {d['speedup_2_over_1']}x wall clock, best runs ({ratios}); "
          f"{d['median_speedup_2_over_1']}x on the median runs; "
          f"{d['critical_path_ratio_2_over_1']}x on the CPU-time critical path (best runs)")
    if "end_to_end_secs" in d:
        e = d["end_to_end_secs"]
        print(f"  train end to end ({', '.join(MODELS)}; cluster start not counted), best / median, every run: "
              + "; ".join(f"{k} {d['end_to_end_best'][k]:.2f} / {d['end_to_end_median'][k]:.2f} s {e[k]}"
                          for k in e))
    if "jetstream_ingest" in out:
        j = out["jetstream_ingest"]
        print(f"JetStream ingest, {j['lines']:,} lines in {j['messages']:,} messages, real agents:")
        for k in ("agents_1", "agents_2"):
            print(f"  {k.replace('_', ' ')}: {j[k]['lines_per_sec']:,} lines/s ({j[k]['secs']} s)")
        print(f"  2 agents vs 1: {j['speedup_2_over_1']}x")
    print(f"load average after: {out['load_average_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
