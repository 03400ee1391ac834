"""End-to-end throughput of the agent pipeline versus bare Drain3, on the same lines, same run.

The baseline is Drain3's own `TemplateMiner.add_log_message` with the same masking (as Drain3
regexes) on the message bodies of the same lines — the cost every Drain3-based detector pays
before it scores anything. The pipeline figure includes header parsing, template matching,
features, every model in the bundle through ONNX Runtime (micro-batched, memoised), ensemble,
explanations and incident grouping.

usage:
  python bench/throughput.py                                  # HDFS dev slice, IF + DeepLog bundle
  python bench/throughput.py --log FILE --format iso --models isolation_forest --repeat 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))


def main() -> int:
    """Scan the HDFS sample with and without the models and print the throughput ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", default=str(DATA / "hdfs/HDFS_v1_head20k_dev.log"))
    ap.add_argument("--format", default="hdfs")
    ap.add_argument("--entity", default=r"regex:(blk_-?\d+)")
    ap.add_argument("--models", default="isolation_forest,deeplog")
    ap.add_argument("--repeat", type=int, default=3, help="scan the file this many times (default: 3)")
    ap.add_argument("--bundle", help="use this bundle instead of training one")
    args = ap.parse_args()

    from drain3 import TemplateMiner as Drain3Miner

    from agent.parsing import LineParser, ParserConfig
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.reader import iter_records
    from agent.templates import MinerConfig
    from trainer.train import TrainOptions, train

    log = Path(args.log)
    records = list(iter_records(log))
    parser_cfg = ParserConfig(log_format=args.format, entity=args.entity)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else Path(tmp) / "model"
        if not args.bundle:
            train(records, TrainOptions(output=bundle, parser=parser_cfg, models=tuple(args.models.split(",")),
                                        epochs=3, progress=False, max_train_seconds=60))
        parser = LineParser(parser_cfg)
        bodies = [parser.parse(r).message for r in records]
        stream = records * args.repeat

        # Baseline: bare Drain3 with equivalent masking, fresh state, same lines.
        drain = Drain3Miner(config=MinerConfig().drain3_config())
        t = time.perf_counter()
        for _ in range(args.repeat):
            for body in bodies:
                drain.add_log_message(body)
        drain_secs = time.perf_counter() - t

        pipe = Pipeline.from_bundle(bundle, PipelineConfig())
        t = time.perf_counter()
        for start in range(0, len(stream), 4096):
            pipe.process(stream[start : start + 4096], 0.0)
        pipe.close(0.0)
        pipe_secs = time.perf_counter() - t
        stats = pipe.detector_stats()

    n = len(stream)
    print(f"lines: {n:,} ({log.name} x{args.repeat}); models: {', '.join(stats) or 'none'}")
    print(f"bare Drain3 add_log_message : {n / drain_secs:>10,.0f} lines/s")
    print(f"logdetect pipeline (e2e)    : {n / pipe_secs:>10,.0f} lines/s")
    print(f"ratio pipeline / bare Drain3: {drain_secs / pipe_secs:.2f}x")
    for name, s in stats.items():
        print(f"  {name}: {s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
