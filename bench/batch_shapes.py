"""Which batch shape ONNX Runtime is fastest at, per served model: µs per row against rows per call.

Scans a log with the full schedule (cascade off) so every model's memo fills with the real keys
(windows, feature rows) that log produces, then re-scores those distinct keys without the memo
in calls of at most B rows for several B (`OnnxScorer.max_batch`; each scorer's own default in
brackets), alternating, median of `--repeat` in this process's CPU time (`--wall`: wall time), and
checks that every cap gives the same values, bit for bit (a memoised key's value must not depend on
the call it was computed in). ONNX Runtime runs as the agent configures it (`agent/onnx_session.py`:
intra-op threads explicit, default 1; inter-op 1; sequential; no spinning).

usage:
  logdetect demo --workdir demo-out        # once: a bundle with every model, and its incident day
  python bench/batch_shapes.py --workdir demo-out
  python bench/batch_shapes.py --bundle MODEL --log FILE
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    """Fill the memos from a scan, then time every model at every batch cap."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("demo-out"))
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--log", type=Path)
    ap.add_argument("--caps", default="1,16,64,256,1024,4096")
    ap.add_argument("--rows", type=int, default=4096, help="distinct keys timed per model (default: 4096)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--wall", action="store_true", help="wall time instead of this process's CPU time")
    args = ap.parse_args()
    clock = time.perf_counter if args.wall else time.process_time

    import numpy as np

    from agent.detectors.onnx_scorer import OnnxScorer
    from agent.onnx_session import RuntimeOptions
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.reader import iter_records

    bundle = args.bundle or args.workdir / "model"
    log = args.log or args.workdir / "incident-day.log"
    records = list(iter_records(log))
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(cascade=False, runtime=RuntimeOptions(numpy_trees=False)))
    for start in range(0, len(records), 4096):
        pipe.process(records[start : start + 4096], 0.0)
    pipe.close(0.0)
    caps = [int(c) for c in args.caps.split(",")]
    print(f"{log.name}: {len(records):,} lines; ONNX Runtime threads: {pipe.config.runtime.intra_op_threads} intra-op, "
          "1 inter-op, sequential, no spinning")
    print(f"timing: {'wall' if args.wall else 'CPU'} time, median of {args.repeat}, µs per row")
    print("| model [its cap] | distinct keys timed | " + " | ".join(f"≤{c:,} rows/call" for c in caps) +
          " | fastest | same values at every cap |")
    print("|---|---|" + "---|" * len(caps) + "---|---|")
    for d in pipe.detectors:
        scorer = getattr(d, "scorer", None)
        cache = getattr(scorer, "cache", None)
        if scorer is None or cache is None or not len(cache):
            continue
        if type(scorer).score_uncached is not OnnxScorer.score_uncached:
            print(f"| {d.name} | (batches by tokens per call, not rows: bench/logbert_latency.py) |")
            continue
        keys = list(cache._data)[: args.rows]
        runs: dict[int, list[float]] = {c: [] for c in caps}
        saved = scorer.max_batch
        reference = None
        same = True
        for _ in range(args.repeat):
            for cap in caps:
                scorer.max_batch = cap
                began = clock()
                values = scorer.score_uncached(keys)
                runs[cap].append((clock() - began) / len(keys) * 1e6)
                bits = np.asarray(values)
                if reference is None:
                    reference = bits
                same = same and bool(np.array_equal(bits, reference))
        scorer.max_batch = saved
        best = {c: statistics.median(r) for c, r in runs.items()}
        fastest = min(best, key=lambda c: best[c])
        print(f"| {d.name} [≤{saved:,}] | {len(keys):,} | " + " | ".join(f"{best[c]:,.1f} µs" for c in caps) +
              f" | ≤{fastest:,} | {'yes' if same else 'NO'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
