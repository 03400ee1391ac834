"""Isolation Forest scoring: the whole ONNX graph against the trees walked by numpy, same run.

Fits the forest the trainer fits (`trainer/isolation_forest.py`: 100 trees, 256 samples) on the
per-line features of a real log, writes the bundle files (ONNX graph + trees beside it), then
serves both paths from them and measures, in the same process, alternately:
- µs per call and per row of `score_uncached` (no memo) at several batch sizes (distinct rows);
- µs per line of `score_lines` over the whole log in micro-batches of 256 (memo on, as served),
  with the memo's hit ratio.
Every score is also compared: the two paths must agree bit for bit.

usage:
  python bench/forest_scoring.py                       # HDFS dev slice
  python bench/forest_scoring.py --log FILE --format bgl --entity stream
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
    """Fit, serve both ways, print the per-call table and the served per-line figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", default=str(DATA / "hdfs/HDFS_v1_head20k_dev.log"))
    ap.add_argument("--format", default="hdfs")
    ap.add_argument("--entity", default=r"regex:(blk_-?\d+)")
    ap.add_argument("--batches", default="1,4,16,64,256,1024")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default: 1)")
    args = ap.parse_args()

    import numpy as np

    from agent.bundle import BundleWriter
    from agent.detectors.isolation_forest import IsolationForestDetector
    from agent.detectors.section import ModelLoad, ModelSection
    from agent.features import FeatureExtractor
    from agent.onnx_session import RuntimeOptions
    from agent.parsing import ParserConfig
    from agent.reader import iter_records
    from agent.templates import learn_templates
    from agent.types import LineContext
    from trainer.isolation_forest import IsolationForestOptions, fit_and_export
    from trainer.torch_base import FitConfig
    from trainer.train import parse_records, template_lines
    from trainer.training_data import TrainingData

    records = list(iter_records(Path(args.log)))
    parsed, _ = parse_records(records, ParserConfig(log_format=args.format, entity=args.entity))
    miner = learn_templates([p.message for p in parsed])
    vocab = {tid: i + 1 for i, tid in enumerate(sorted(miner.templates()))}
    lines, _ = template_lines(parsed, miner, vocab)
    half = len(lines) // 2
    extractor, x_train = FeatureExtractor.fit(lines[:half])
    x_rest = np.array([extractor.update(tl)[0] for tl in lines[half:]], dtype=np.float32)
    x_all = np.concatenate([x_train, x_rest]).astype(np.float32)
    distinct = np.unique(x_all, axis=0)
    with tempfile.TemporaryDirectory() as tmp:
        writer = BundleWriter(Path(tmp) / "b")
        section = fit_and_export(TrainingData.of_features(x_train, x_rest), writer, "isolation_forest",
                                 IsolationForestOptions(), FitConfig(), 0.01)

        def detector(numpy_trees: bool) -> IsolationForestDetector:
            load = ModelLoad(writer.draft(), ModelSection.parse("isolation_forest", section),
                             RuntimeOptions(numpy_trees=numpy_trees))
            return IsolationForestDetector.from_bundle(load)

        graph, trees = detector(False), detector(True)
        if trees.stats()["numpy_trees"] != 1.0:
            print("the trees were not stored or differ from the graph: nothing to compare")
            return 1
        print(f"{Path(args.log).name}: {len(x_all):,} lines, {len(distinct):,} distinct feature rows; "
              f"ONNX Runtime {RuntimeOptions().intra_op_threads} intra-op thread")
        print("| batch (distinct rows) | whole graph µs/call | numpy trees µs/call | µs/row graph → trees | speed-up |")
        print("|---|---|---|---|---|")
        for b in (int(v) for v in args.batches.split(",")):
            keys = [r.tobytes() for r in distinct[: min(b, len(distinct))]]
            assert graph.scorer.score_uncached(keys) == trees.scorer.score_uncached(keys)
            per = {}
            for _ in range(2):  # alternate, so load on the machine hits both alike
                for name, d in (("graph", graph), ("trees", trees)):
                    n, began = 0, time.perf_counter()
                    while time.perf_counter() - began < args.seconds / 2:
                        d.scorer.score_uncached(keys)
                        n += 1
                    per.setdefault(name, []).append((time.perf_counter() - began) / n)
            g, t = min(per["graph"]) * 1e6, min(per["trees"]) * 1e6
            print(f"| {len(keys):,} | {g:,.0f} | {t:,.0f} | {g / len(keys):,.1f} → {t / len(keys):,.1f} | "
                  f"{g / t:.1f}× |")
        contexts = [LineContext(tl, row, (), ()) for tl, row in zip(lines, x_all, strict=True)]
        served = {}
        for name, d in (("graph", detector(False)), ("trees", detector(True))):
            began = time.perf_counter()
            scores = [s for i in range(0, len(contexts), 256) for s in d.score_lines(contexts[i : i + 256])]
            served[name] = (time.perf_counter() - began, scores, d.stats())
        assert [s.score for s in served["graph"][1] if s] == [s.score for s in served["trees"][1] if s]
        print(f"\nserved, micro-batches of 256 lines (memo on; hit ratio {served['trees'][2]['hit_ratio']:.3f}, "
              f"{int(served['trees'][2]['calls'])} calls):")
        for name in ("graph", "trees"):
            secs = served[name][0]
            print(f"  {name:5}: {secs / len(contexts) * 1e6:.2f} µs/line")
        print(f"  speed-up: {served['graph'][0] / served['trees'][0]:.1f}×; scores identical on every line")
        writer.abort()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
