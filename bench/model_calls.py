"""ONNX Runtime calls of one scan, by path: how many, of what shape, and their CPU time.

Scans a bench stream (`bench/throughput.py`'s streams and bundles: trained on its first part,
scanned once over the rest, 4,096 records per `process` call, then `close`) after the bundle's
load, timing every `OnnxModel.run` in this process's CPU time and telling apart the calls made
while judging ended sessions (`Pipeline._judge_ended`, `_session_verdicts`) from the lines'.
The load's own calls (the forest's probe rows, the warm-ups) are not counted: the bench does not
time the load either.

`--pre-run` asks whether a call costs more for meeting a shape ONNX Runtime has not run yet:
each run then alternates a scan as is with a scan whose pipeline first ran, right after its
load, every (model, input shapes) the first scan used, so that every call in the timed scan
meets a shape already run. Equal figures mean the shape is not what a call costs; padding batch
shapes to buckets and warming them up at load would not help.

usage:
  python bench/model_calls.py --streams bgl,openssh --bundles /tmp/tp5-bundles
  python bench/model_calls.py --streams bgl --models isolation_forest,deeplog --calls   # every call
  python bench/model_calls.py --streams bgl,openssh --bundles /tmp/tp5-bundles --pre-run --runs 4
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

Call = tuple[str, str, tuple[tuple[str, tuple[int, ...], str], ...], list[str] | None, float]
"""(path: "sessions" | "lines", model file, ((input, shape, dtype), ...), outputs asked, CPU µs)"""


class Recorder:
    """Every `OnnxModel.run` of the process, timed, with the path it was made on."""

    def __init__(self) -> None:
        from agent import onnx_session

        self.calls: list[Call] = []
        self.path = "lines"
        run = onnx_session.OnnxModel.run
        recorder = self

        def timed(model: Any, feeds: dict[str, Any], outputs: list[str] | None = None) -> list[Any]:
            began = time.process_time()
            result = run(model, feeds, outputs)
            spent = (time.process_time() - began) * 1e6
            shapes = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in feeds.items())
            recorder.calls.append((recorder.path, model.path.name, shapes, outputs, spent))
            return result

        onnx_session.OnnxModel.run = timed  # type: ignore[method-assign]

    def sessions(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn`, its calls counted on the session path."""

        def judged(*args: Any, **kwargs: Any) -> Any:
            before, self.path = self.path, "sessions"
            try:
                return fn(*args, **kwargs)
            finally:
                self.path = before

        return judged


def _models(pipe: Any) -> dict[str, Any]:
    """The pipeline's ONNX Runtime sessions by file name (found in its detectors)."""
    from agent.onnx_session import OnnxModel

    found: dict[str, Any] = {}

    def walk(o: Any, depth: int) -> None:
        if isinstance(o, OnnxModel):
            found[o.path.name] = o
        elif depth < 4:
            for v in getattr(o, "__dict__", {}).values():
                walk(v, depth + 1)

    for d in pipe.detectors:
        walk(d, 0)
    return found


def scan(tp: Any, stream: Any, bundle: Path, rec: Recorder, pre_run: list[Call] | None = None
         ) -> tuple[float, list[Call]]:
    """One scan after the load; its CPU seconds and its calls (`pre_run`: shapes run first)."""
    import numpy as np

    from agent.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline.from_bundle(bundle, PipelineConfig())
    for attr in ("_judge_ended", "_session_verdicts"):
        if hasattr(pipe, attr):
            setattr(pipe, attr, rec.sessions(getattr(pipe, attr)))
    if pre_run:
        models = _models(pipe)
        for _, name, shapes, outputs, _ in pre_run:
            models[name].session.run(outputs, {k: np.zeros(shape, dtype=dt) for k, shape, dt in shapes})
    rec.calls.clear()
    began = time.process_time()
    for start in range(0, len(stream.scan), tp.BATCH):
        pipe.process(stream.scan[start : start + tp.BATCH], 0.0)
    pipe.close(0.0)
    return time.process_time() - began, list(rec.calls)


def main() -> int:
    """Per stream: the calls by path and model, then (`--pre-run`) cold vs every shape run before."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="bgl,openssh")
    ap.add_argument("--models", default="isolation_forest,deeplog,lstm_ae,logbert")
    ap.add_argument("--bundles", type=Path, help="directory to keep trained bundles in (default: a temporary one)")
    ap.add_argument("--calls", action="store_true", help="also list every call")
    ap.add_argument("--pre-run", action="store_true", help="also time scans with every shape run before")
    ap.add_argument("--runs", type=int, default=4, help="alternations for --pre-run (default 4)")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    import throughput as tp

    rec = Recorder()
    work = Path(tempfile.mkdtemp(prefix="model-calls-"))
    bundles = args.bundles or work
    models = tuple(args.models.split(","))
    for name in args.streams.split(","):
        stream = tp.load_stream(name, work)
        bundle = tp.bundle_for(stream, models, bundles)
        _, calls = scan(tp, stream, bundle, rec)
        print(f"== {name}: {len(stream.scan):,} lines scanned; models: {','.join(models)}; CPU time")
        print("| path | model | calls | rows per call | CPU ms | µs per call |")
        print("|---|---|---|---|---|---|")
        groups: dict[tuple[str, str], list[Call]] = {}
        for c in calls:
            groups.setdefault((c[0], c[1]), []).append(c)
        for (path, model), cs in sorted(groups.items()):
            rows = sorted(c[2][0][1][0] for c in cs)
            spent = sum(c[4] for c in cs)
            print(f"| {path} | {model} | {len(cs)} | {rows[0]}–{rows[-1]} | {spent / 1e3:.1f} | "
                  f"{spent / len(cs):.0f} |")
        print(f"| all | | {len(calls)} | | {sum(c[4] for c in calls) / 1e3:.1f} | |")
        if args.calls:
            for path, model, shapes, _, spent in calls:
                print(f"  {path:8s} {model:28s} {[s[1] for s in shapes]} {spent:.0f} µs")
        if args.pre_run:
            cold: list[tuple[float, float]] = []
            warm: list[tuple[float, float]] = []
            for _ in range(args.runs):
                for pre, into in ((None, cold), (calls, warm)):
                    secs, got = scan(tp, stream, bundle, rec, pre)
                    into.append((secs * 1e3, sum(c[4] for c in got) / 1e3))
            for label, runs in (("as is", cold), ("every shape run before", warm)):
                print(f"  {label:24s}: scan {statistics.median(r[0] for r in runs):.1f} ms, ONNX "
                      f"{statistics.median(r[1] for r in runs):.1f} ms (median of {args.runs}; ONNX "
                      f"{min(r[1] for r in runs):.1f}–{max(r[1] for r in runs):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
