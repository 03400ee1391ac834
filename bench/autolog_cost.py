"""AutoLog's scoring cost per window, one thread: its dense ONNX pass, and what it adds to a line
in a bundle where its inputs (DeepLog, the LSTM autoencoder) are served anyway.

    .venv/bin/python bench/autolog_cost.py --bundle DIR [--sessions 5000] [--batch 256] [--json]

The bundle must hold `autolog` (and the inputs it names), e.g. one written by
`logdetect eval hdfs-sessions ... --keep-bundle DIR`. The stream is `bench/sequence_scoring.py`'s:
labelled HDFS sessions at the real anomaly rate, interleaved line by line across blocks.

1. dense pass: the distinct window vectors of the stream run through ONNX Runtime (one intra-op
   thread, memo bypassed) in calls of 1,024 rows and of 1 row: µs per window.
2. in a bundle: each input detector scores the stream in micro-batches first (as the pipeline
   does), then AutoLog, which reads the inputs' scores from their memos: µs per line that AutoLog
   adds (vector keys, memo, dense pass), beside each input's own µs per line.

Times are CPU seconds of this process (`time.process_time`; ONNX Runtime runs one intra-op thread
in the calling thread), so other work on a shared machine does not inflate them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sequence_scoring import DATA, stream

from agent.bundle import load_bundle
from agent.detectors.autolog import AutoLogDetector, vectors
from agent.detectors.base import load_detectors
from agent.onnx_session import RuntimeOptions
from trainer.sequences import build_vocab, encode, read_labelled, read_sessions


def per_line(det: Any, contexts: list[Any], batch: int) -> float:
    """µs per line of a detector's score_lines on micro-batches of `batch` lines."""
    began = time.process_time()
    for start in range(0, len(contexts), batch):
        det.score_lines(contexts[start : start + batch])
    return (time.process_time() - began) / len(contexts) * 1e6


def main() -> int:
    """Time AutoLog's dense pass and its added cost per line in a bundle."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True, help="a bundle holding autolog and its inputs")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--anomaly-share", type=float, default=0.0293, help="HDFS's real anomaly rate")
    ap.add_argument("--batch", type=int, default=256, help="pipeline micro-batch (lines)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    bundle = load_bundle(args.bundle)
    if "vocab.json" in bundle.manifest.get("files", {}):  # written by `eval hdfs-sessions`
        vocab = {int(k): int(v) for k, v in bundle.read_json("vocab.json")["template_to_token"].items()}
    else:  # a bundle trained on hdfs_train's own numbering
        vocab = build_vocab(read_sessions(args.data / "hdfs_train"))
    test_ids, labels = read_labelled(args.data / "robust_log_train.csv")
    rng = np.random.default_rng(args.seed)
    n_bad = round(args.sessions * args.anomaly_share)
    pick = np.concatenate([rng.choice(np.flatnonzero(labels == 0), args.sessions - n_bad, replace=False),
                           rng.choice(np.flatnonzero(labels == 1), n_bad, replace=False)])
    contexts = stream(encode([test_ids[i] for i in pick], vocab), args.seed)
    options = RuntimeOptions(intra_op_threads=1, device="cpu")
    inputs = [x["name"] for x in bundle.models["autolog"].get("inputs", [])]
    served = {d.name: d for d in load_detectors(bundle, options, only=[*inputs, "autolog"])}
    autolog = served["autolog"]
    if not isinstance(autolog, AutoLogDetector):
        raise SystemExit("the bundle's autolog section is not served by AutoLogDetector")
    result: dict[str, Any] = {"lines": len(contexts), "batch": args.batch, "ort_threads": 1, "inputs": inputs,
                              "us_per_line": {}}
    for name in inputs:
        result["us_per_line"][name] = round(per_line(served[name], contexts, args.batch), 2)
    result["us_per_line"]["autolog_added"] = round(per_line(autolog, contexts, args.batch), 2)
    stats = autolog.stats()
    result["autolog_memo_hit_ratio"] = round(stats["hit_ratio"], 3)
    result["autolog_rows_run"] = int(stats["rows"])

    _, line_keys = autolog.line_keys(contexts)
    keys = list(dict.fromkeys(line_keys))
    scorer = autolog.scorer
    x = vectors(keys, scorer.vocab_size, len(scorer.inputs))
    began = time.process_time()
    for start in range(0, len(keys), 1024):
        scorer.model.run({scorer.input_name: x[start : start + 1024]}, [scorer.output_name])
    onnx_only = (time.process_time() - began) / len(keys) * 1e6
    began = time.process_time()
    scorer.score_uncached(keys)
    batched = (time.process_time() - began) / len(keys) * 1e6
    one = keys[:2000]
    began = time.process_time()
    for k in one:
        scorer.compute([k])
    single = (time.process_time() - began) / len(one) * 1e6
    result["dense_pass_us_per_window"] = {"distinct_windows": len(keys), "onnx_only_calls_of_1024": round(onnx_only, 2),
                                          "calls_of_1024": round(batched, 2), "calls_of_1": round(single, 2)}
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    d = result["dense_pass_us_per_window"]
    sys.stdout.write(
        f"HDFS-like stream: {len(contexts)} lines; micro-batch {args.batch}; ONNX Runtime 1 thread\n"
        f"dense pass ({d['distinct_windows']} distinct windows, memo bypassed): ONNX Runtime alone "
        f"{d['onnx_only_calls_of_1024']} µs/window in calls of 1,024; with the vectors built "
        f"{d['calls_of_1024']} µs/window; one call per window {d['calls_of_1']} µs/window\n"
        "µs per line in a bundle: " + ", ".join(f"{k} {v}" for k, v in result["us_per_line"].items())
        + f" (AutoLog memo hit ratio {result['autolog_memo_hit_ratio']}, {result['autolog_rows_run']} rows run)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
