"""What the cascade costs in recall at the served thresholds: nothing, measured on the dev evals.

The cascade (`agent/detectors/cascade.py`) runs the detectors the served vote does not count
only where the vote finds something. This measures, for the bundles the dev evals train and at
every sensitivity, each labelled unit's verdict with and without it:

- `--bgl-bundle DIR` (the bundle `logdetect eval bgl --bundle DIR` kept): the test lines scanned
  through the real pipeline, as `eval bgl` scans them; each line's verdict (`verdict_observers`,
  which leave the cascade on); recall against the labels; the outputs compared whole (`==`);
  seconds of each scan.
- `--hdfs-bundle DIR` (`logdetect eval hdfs-sessions --keep-bundle DIR`): every labelled session
  of `--hdfs-test` judged as the agent judges ended sessions (`Cascade.judge_sessions`, sessions
  batched 256 at a time as if they ended together) against each detector's own `score_session`
  and the ensemble (`eval hdfs-sessions`' served vote); recall against the labels.

usage:
  python bench/cascade_recall.py --bgl-bundle /tmp/bgl-model --bgl-test BGL_14k.log BGL_16k.log
  python bench/cascade_recall.py --hdfs-bundle /tmp/hdfs-bundle   # the eval's default data
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))


def bgl(bundle: Path, tests: list[Path]) -> None:
    """Scan the labelled BGL test lines with and without the cascade at every sensitivity."""
    import numpy as np

    from agent.parsing import ParserConfig
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.types import Sensitivity, Verdict
    from trainer.eval.bgl_data import read_labelled

    labelled = read_labelled(tests)
    parser = ParserConfig(log_format="bgl", entity="stream", multiline=False)
    print(f"BGL: {len(labelled.records):,} test lines ({int(labelled.labels.sum()):,} alerts), bundle {bundle}")
    print("| sensitivity | witnesses | recall full | recall cascade | flagged lines full / cascade | "
          "outputs and line verdicts identical | scan s full / cascade |")
    print("|---|---|---|---|---|---|---|")
    for sensitivity in Sensitivity:
        found = {}
        for cascade in (False, True):
            pipe = Pipeline.from_bundle(bundle, PipelineConfig(parser=parser, sensitivity=sensitivity,
                                                               cascade=cascade))
            verdicts: list[Verdict] = []
            pipe.verdict_observers.append(lambda r, seen=verdicts: seen.append(r.verdict))
            began = time.perf_counter()
            out = []
            for s in range(0, len(labelled.records), 2048):  # as `eval bgl` scans
                out.extend(pipe.process(labelled.records[s : s + 2048], 0.0))
            out.extend(pipe.close(0.0))
            secs = time.perf_counter() - began
            flagged = np.asarray([v is not Verdict.NORMAL for v in verdicts], dtype=bool)
            found[cascade] = (out, flagged, secs, sorted(pipe.cascade.witness_names), verdicts)
        (out_f, fl_f, s_f, _, v_f), (out_c, fl_c, s_c, witnesses, v_c) = found[False], found[True]
        y = labelled.labels
        print(f"| {sensitivity.value} | {', '.join(witnesses) or 'none'} | {fl_f[y].mean():.4f} | "
              f"{fl_c[y].mean():.4f} | {int(fl_f.sum()):,} / {int(fl_c.sum()):,} | "
              f"{'yes' if out_f == out_c and v_f == v_c else 'NO'} | {s_f:.1f} / {s_c:.1f} |")


def hdfs(bundle_path: Path, test: Path) -> None:
    """Judge every labelled session with each detector and the vote, and through the cascade."""
    import numpy as np

    from agent.bundle import load_bundle
    from agent.detectors.base import load_detectors
    from agent.detectors.cascade import Cascade
    from agent.ensemble import Ensemble
    from agent.types import Sensitivity, Verdict
    from trainer.sequences import encode, read_labelled

    # the eval's encoding: the bundle's own vocabulary (of the fitted part of --train)
    vocab_json = json.loads((bundle_path / "vocab.json").read_text())["template_to_token"]
    vocab = {int(k): int(v) for k, v in vocab_json.items()}
    test_ids, labels = read_labelled(test)
    sessions = encode(test_ids, vocab)
    bundle = load_bundle(bundle_path)
    y = np.asarray(labels, dtype=bool)

    class S:
        def __init__(self, tokens: list[int]) -> None:
            self.tokens, self.levels = tokens, [0] * len(tokens)

    print(f"HDFS sessions: {len(sessions):,} labelled ({int(y.sum()):,} anomalous), bundle {bundle_path}")
    print("| sensitivity | witnesses | recall full | recall cascade | flagged full / cascade | same verdicts | "
          "judging s full / cascade |")
    print("|---|---|---|---|---|---|---|")
    for sensitivity in Sensitivity:
        ensemble = Ensemble.from_manifest(bundle.manifest.get("ensemble", {}), sensitivity.value)
        detectors = load_detectors(bundle, sensitivity=sensitivity, builtin_defaults=True)
        kinds = {d.name: d.kind for d in detectors}
        began = time.perf_counter()
        full = []
        for s in sessions:
            scores = [x for x in (d.score_session(s, [0] * len(s)) for d in detectors) if x is not None]
            full.append(bool(scores) and ensemble.combine(scores, kinds)[1] is not Verdict.NORMAL)
        secs_full = time.perf_counter() - began
        detectors = load_detectors(bundle, sensitivity=sensitivity, builtin_defaults=True)  # fresh memos
        cascade = Cascade.plan(detectors, ensemble)
        began = time.perf_counter()
        got = []
        for start in range(0, len(sessions), 256):
            judged = cascade.judge_sessions([S(s) for s in sessions[start : start + 256]], ensemble, kinds)
            got.extend(j is not None and j[2] is not Verdict.NORMAL for j in judged)
        secs_cascade = time.perf_counter() - began
        f, c = np.asarray(full), np.asarray(got)
        print(f"| {sensitivity.value} | {', '.join(sorted(cascade.witness_names)) or 'none'} | {f[y].mean():.4f} | "
              f"{c[y].mean():.4f} | {int(f.sum()):,} / {int(c.sum()):,} | {'yes' if (f == c).all() else 'NO'} | "
              f"{secs_full:.1f} / {secs_cascade:.1f} |")


def main() -> int:
    """Run the measurements asked for."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bgl-bundle", type=Path)
    ap.add_argument("--bgl-test", type=Path, nargs="+",
                    default=[DATA / "bgl/BGL_14k.log", DATA / "bgl/BGL_16k.log"])
    ap.add_argument("--hdfs-bundle", type=Path)
    ap.add_argument("--hdfs-test", type=Path, default=DATA / "hdfs/deeplog/robust_log_train.csv")
    args = ap.parse_args()
    if args.bgl_bundle:
        bgl(args.bgl_bundle, args.bgl_test)
    if args.hdfs_bundle:
        hdfs(args.hdfs_bundle, args.hdfs_test)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
