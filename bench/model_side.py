"""The model side of the hot path, before and after, in one run: µs per line in the detectors,
session judging, ONNX Runtime's share, memo hit ratios, and the pipeline / bare Drain3 ratio.

"Before" is the pipeline with the model-side changes of issue 16 turned off (the Isolation
Forest's whole ONNX graph, every detector on every line and session: `RuntimeOptions(numpy_trees=
False)`, `PipelineConfig(cascade=False)`); "after" is the default. Both scan the same stream in
one pass (`logdetect scan`'s batches of 4,096 records), alternately, `--repeat` times each; the
baseline is bare Drain3's `add_log_message` on the parsed message bodies, timed in the same run.
The outputs of both are compared (they must be equal).

usage:
  logdetect demo --workdir demo-out          # once: the simulated incident day and its bundle
  python bench/model_side.py --workdir demo-out
  python bench/model_side.py --bundle MODEL --log FILE
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(bundle: Path, records: list[Any], cascade: bool, numpy_trees: bool) -> dict[str, Any]:
    """One timed pass; seconds in the detectors (line scoring) and in session judging."""
    from agent.onnx_session import RuntimeOptions
    from agent.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline.from_bundle(bundle, PipelineConfig(cascade=cascade,
                                                       runtime=RuntimeOptions(numpy_trees=numpy_trees)))
    spent = {"score": 0.0, "sessions": 0.0}

    inside = {"score": 0, "sessions": 0}  # `_judge_ended` calls `_session_verdicts`: the outer call counts

    def timed(name: str, call: Any) -> Any:
        def wrapper(*a: Any) -> Any:
            inside[name] += 1
            began = time.perf_counter()
            try:
                return call(*a)
            finally:
                inside[name] -= 1
                if not inside[name]:
                    spent[name] += time.perf_counter() - began
        return wrapper

    pipe._score = timed("score", pipe._score)  # type: ignore[method-assign]
    pipe._session_verdicts = timed("sessions", pipe._session_verdicts)  # type: ignore[method-assign]
    pipe._judge_ended = timed("sessions", pipe._judge_ended)  # type: ignore[method-assign]
    out = []
    began = time.perf_counter()
    for start in range(0, len(records), 4096):
        out.extend(pipe.process(records[start : start + 4096], 0.0))
    out.extend(pipe.close(0.0))
    total = time.perf_counter() - began
    stats = pipe.detector_stats()
    onnx = sum(s.get("inference_seconds", 0.0) for s in stats.values())
    return {"total": total, "out": out, "lines": pipe.lines, "stats": stats, "onnx": onnx, **spent}


def _hit(stats: dict[str, float]) -> str:
    return f"{stats['hit_ratio']:.3f}" if "hit_ratio" in stats else "–"


def main() -> int:
    """Time bare Drain3, before and after; print the table rows."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("demo-out"))
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--log", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from drain3 import TemplateMiner as Drain3Miner

    from agent.bundle import load_bundle
    from agent.parsing import LineParser, ParserConfig
    from agent.reader import iter_records
    from agent.templates import MinerConfig

    bundle = args.bundle or args.workdir / "model"
    log = args.log or args.workdir / "incident-day.log"
    records = list(iter_records(log))
    parser = LineParser(ParserConfig(**load_bundle(bundle).manifest.get("parser", {})))
    bodies = [parser.parse(r).message for r in records]
    drain_secs: list[float] = []
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for _ in range(args.repeat):
        drain = Drain3Miner(config=MinerConfig().drain3_config())
        began = time.perf_counter()
        for body in bodies:
            drain.add_log_message(body)
        drain_secs.append(time.perf_counter() - began)
        runs["before"].append(run(bundle, records, cascade=False, numpy_trees=False))
        runs["after"].append(run(bundle, records, cascade=True, numpy_trees=True))
    same = all(r["out"] == runs["before"][0]["out"] for v in runs.values() for r in v)
    drain = statistics.median(drain_secs)
    n = runs["after"][0]["lines"]
    print(f"{log.name}: {len(records):,} records, {n:,} lines; bundle {bundle}; median of {args.repeat}; "
          f"outputs identical before/after: {'yes' if same else 'NO'}")
    print(f"bare Drain3 add_log_message: {len(records) / drain:,.0f} lines/s")
    print("| | before | after |")
    print("|---|---|---|")

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    rows = [
        ("pipeline lines/s", lambda m: f"{n / med(m, 'total'):,.0f}"),
        ("**pipeline / bare Drain3**", lambda m: f"**{drain / med(m, 'total'):.2f}×**"),
        ("µs per line in the detectors (line scoring)", lambda m: f"{med(m, 'score') / n * 1e6:.1f}"),
        ("µs per line judging ended sessions", lambda m: f"{med(m, 'sessions') / n * 1e6:.1f}"),
        ("ONNX Runtime share of the pipeline's time", lambda m: f"{med(m, 'onnx') / med(m, 'total'):.0%}"),
    ]
    for label, value in rows:
        print(f"| {label} | {value('before')} | {value('after')} |")
    for name in runs["after"][0]["stats"]:
        b, a = runs["before"][0]["stats"][name], runs["after"][0]["stats"][name]
        if "calls" not in a:
            continue
        print(f"| {name}: model calls / rows / memo hit ratio | {int(b['calls']):,} / {int(b['rows']):,} / "
              f"{_hit(b)} | {int(a['calls']):,} / {int(a['rows']):,} / {_hit(a)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
