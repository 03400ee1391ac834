"""Which batch shape ONNX Runtime is fastest at, per served model: µs per row against rows per call.

Scans a log with the full schedule (cascade off) so every model's memo fills with the real keys
(windows, feature rows) that log produces, then re-scores those distinct keys without the memo
in calls of at most B rows for several B (`OnnxScorer.max_batch`, default 1,024), alternating,
best of `--repeat`. ONNX Runtime runs as the agent configures it (`agent/onnx_session.py`: intra-op
threads explicit, default 1; inter-op 1; sequential; no spinning).

usage:
  logdetect demo --workdir demo-out        # once: a bundle with every model, and its incident day
  python bench/batch_shapes.py --workdir demo-out
  python bench/batch_shapes.py --bundle MODEL --log FILE
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

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
    print("| model | distinct keys timed | " + " | ".join(f"≤{c:,} rows/call" for c in caps) + " | fastest |")
    print("|---|---|" + "---|" * len(caps) + "---|")
    for d in pipe.detectors:
        scorer = getattr(d, "scorer", None)
        cache = getattr(scorer, "cache", None)
        if scorer is None or cache is None or not len(cache):
            continue
        if type(scorer).score_uncached is not OnnxScorer.score_uncached:
            print(f"| {d.name} | (batches by tokens per call, not rows: bench/logbert_latency.py) |")
            continue
        keys = list(cache._data)[: args.rows]
        best: dict[int, float] = {}
        saved = scorer.max_batch
        for _ in range(args.repeat):
            for cap in caps:
                scorer.max_batch = cap
                began = time.perf_counter()
                scorer.score_uncached(keys)
                per_row = (time.perf_counter() - began) / len(keys) * 1e6
                best[cap] = min(best.get(cap, per_row), per_row)
        scorer.max_batch = saved
        fastest = min(best, key=lambda c: best[c])
        print(f"| {d.name} | {len(keys):,} | " + " | ".join(f"{best[c]:,.1f} µs" for c in caps) +
              f" | ≤{fastest:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
