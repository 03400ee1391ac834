"""Sequence-model benchmark: scoring straight per line vs micro-batched + memoised, and training time.

    .venv/bin/python bench/sequence_scoring.py [--sessions 2000] [--batch 256] [--threads 1]
                                              [--epochs 20] [--bundle DIR] [--json]

1. Training time of DeepLog, the LSTM autoencoder and LogAnomaly (with loghub's HDFS template
   texts) on `hdfs/deeplog/hdfs_train` (4,855 normal sessions) with torch limited to
   `--torch-threads` (default 2, the target machine's cores);
   skipped with `--bundle DIR` (reuse a bundle this script or `eval --keep-bundle` wrote).
2. An HDFS-like stream: `--sessions` labelled sessions of `robust_log_train.csv` drawn at HDFS's
   real anomaly rate (2.93 %), interleaved line by line across entities (block ids), as a live
   HDFS log interleaves blocks; each line's LineContext carries its entity's history.
3. For each model, windows/s scored (a) straight: one ONNX Runtime call per line, no memo;
   (b) the detector's `score_lines` on micro-batches of `--batch` lines (one call per batch,
   distinct windows only, bounded memo). Both in the same run, same lines, same ORT threads
   (`--threads`, set explicitly); the ratio b/a, the memo hit ratio and the share of windows
   that never reached the model are printed, and (a) as µs per window.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.bundle import BundleWriter, load_bundle
from agent.detectors.base import Detector
from agent.detectors.deeplog import DeepLogDetector, window_before
from agent.detectors.loganomaly import LogAnomalyDetector
from agent.detectors.lstm_ae import LstmAutoencoderDetector, window_ending
from agent.detectors.section import ModelLoad, ModelSection
from agent.onnx_session import RuntimeOptions
from agent.types import Level, LineContext, ParsedLine, TemplatedLine
from trainer.sequences import build_vocab, encode, read_labelled, read_sessions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hdfs" / "deeplog"
TEMPLATES = Path("loghub_2k") / "HDFS" / "HDFS_templates.csv"  # under the data folder (LogAnomaly's words)
HISTORY = 21  # longest window (LSTM-AE 20) + the line itself


def train(bundle: Path, tokens: list[list[int]], vocab_size: int, epochs: int, torch_threads: int,
          texts: dict[int, str]) -> dict[str, float]:
    """Train DeepLog, the LSTM autoencoder and LogAnomaly into a bundle; return seconds per model."""
    import torch

    from trainer import deeplog, loganomaly, lstm_ae
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData

    torch.set_num_threads(torch_threads)
    writer = BundleWriter(bundle)
    seconds: dict[str, float] = {}
    fit = FitConfig(epochs=epochs, progress=False, device="cpu")
    data = TrainingData.of_sequences(tokens, vocab_size, tokens[-500:], templates=texts)
    for name, module, options in (("deeplog", deeplog, deeplog.DeepLogOptions()),
                                  ("lstm_ae", lstm_ae, lstm_ae.LstmAeOptions()),
                                  ("loganomaly", loganomaly, loganomaly.LogAnomalyOptions())):
        began = time.monotonic()
        section = module.fit_and_export(data, writer, name, options, fit, None)
        seconds[name] = round(time.monotonic() - began, 1)
        writer.add_model(name, section)
    writer.finish()
    return seconds


def template_texts(data: Path, vocab: dict[int, int]) -> dict[int, str]:
    """Model token → loghub HDFS template text (its E-numbers are the session files' numbers)."""
    import csv

    path = data.parents[1] / TEMPLATES
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [(int(r["EventId"].lstrip("E")), r["EventTemplate"]) for r in csv.DictReader(fh)]
    return {vocab[e]: text for e, text in rows if e in vocab}


def stream(sessions: list[list[int]], seed: int) -> list[LineContext]:
    """Interleave sessions line by line: at each step a random open entity logs its next line."""
    rng = np.random.default_rng(seed)
    cursor = [0] * len(sessions)
    open_ids = [i for i, s in enumerate(sessions) if s]
    history: dict[int, list[int]] = {}
    out: list[LineContext] = []
    while open_ids:
        k = int(rng.integers(len(open_ids)))
        i = open_ids[k]
        token = sessions[i][cursor[i]]
        cursor[i] += 1
        if cursor[i] == len(sessions[i]):
            open_ids[k] = open_ids[-1]
            open_ids.pop()
        h = history.setdefault(i, [])
        h.append(token)
        del h[:-HISTORY]
        parsed = ParsedLine(raw="", message="", timestamp=None, level=Level.INFO, entity=f"blk_{i}")
        line = TemplatedLine(parsed, token, "", (), token, token == 0, 0.0)
        out.append(LineContext(line, np.zeros(0, dtype=np.float32), tuple(h), (int(Level.INFO),) * len(h)))
    return out


def straight(det: Detector, contexts: list[LineContext]) -> tuple[float, float]:
    """Windows/s with one ONNX call per line and no memo (the naive loop), and the CPU µs this
    process spent per window (one ORT thread: steady on a loaded machine where wall time is not)."""
    began = time.perf_counter()
    cpu = time.process_time()
    if isinstance(det, DeepLogDetector):
        s = det.scorer
        for c in contexts:
            w = window_before(c.history, len(c.history) - 1, s.window, s.pad)
            s.judge(w, c.history[-1], s.compute([w])[0])
    elif isinstance(det, LstmAutoencoderDetector):
        a = det.scorer
        for c in contexts:
            a.compute([window_ending(c.history, c.levels, len(c.history), a.window, a.pad)])
    cpu_us = 1e6 * (time.process_time() - cpu) / max(len(contexts), 1)
    return len(contexts) / (time.perf_counter() - began), cpu_us


def batched(det: Detector, contexts: list[LineContext], batch: int) -> tuple[float, float]:
    """Lines/s of a detector's score_lines in batches of `batch`, and CPU µs per line."""
    began = time.perf_counter()
    cpu = time.process_time()
    for start in range(0, len(contexts), batch):
        det.score_lines(contexts[start : start + batch])
    cpu_us = 1e6 * (time.process_time() - cpu) / max(len(contexts), 1)
    return len(contexts) / (time.perf_counter() - began), cpu_us


def main() -> int:
    """Time the sequence detectors on HDFS: straight path, batches and sessions."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--anomaly-share", type=float, default=0.0293, help="HDFS's real anomaly rate")
    ap.add_argument("--straight-lines", type=int, default=4000, help="lines timed on the straight path")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--bundle", type=Path, help="reuse this bundle (skip training)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    train_ids = read_sessions(args.data / "hdfs_train")
    vocab = build_vocab(train_ids)
    result: dict[str, Any] = {"ort_threads": args.threads, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        bundle_path = args.bundle
        if bundle_path is None:
            bundle_path = Path(tmp) / "bundle"
            result["training_seconds"] = train(bundle_path, encode(train_ids, vocab), len(vocab) + 1,
                                               args.epochs, args.torch_threads, template_texts(args.data, vocab))
            result["torch_threads"] = args.torch_threads
        bundle = load_bundle(bundle_path)
        test_ids, labels = read_labelled(args.data / "robust_log_train.csv")
        rng = np.random.default_rng(args.seed)
        n_bad = round(args.sessions * args.anomaly_share)
        pick = np.concatenate([rng.choice(np.flatnonzero(labels == 0), args.sessions - n_bad, replace=False),
                               rng.choice(np.flatnonzero(labels == 1), n_bad, replace=False)])
        contexts = stream(encode([test_ids[i] for i in pick], vocab), args.seed)
        result["lines"] = len(contexts)
        options = RuntimeOptions(intra_op_threads=args.threads, device="cpu")
        models: tuple[tuple[str, Any], ...] = (
            ("deeplog", DeepLogDetector), ("lstm_ae", LstmAutoencoderDetector), ("loganomaly", LogAnomalyDetector))
        for name, cls in models:
            if name not in bundle.models:
                continue
            section = ModelSection.parse(name, bundle.models[name])
            naive = cls.from_bundle(ModelLoad(bundle, section, options))
            rate_straight, cpu_us = straight(naive, contexts[: args.straight_lines])
            det = cls.from_bundle(ModelLoad(bundle, section, options))
            rate_batched, batched_cpu_us = batched(det, contexts, args.batch)
            stats = det.stats()
            result[name] = {
                "straight_windows_per_s": round(rate_straight),
                "straight_us_per_window": round(1e6 / rate_straight, 1),
                "straight_cpu_us_per_window": round(cpu_us, 1),
                "batched_memo_windows_per_s": round(rate_batched),
                "batched_memo_cpu_us_per_line": round(batched_cpu_us, 2),
                "ratio": round(rate_batched / rate_straight, 1),
                "memo_hit_ratio": round(stats["hit_ratio"], 3),
                "windows_never_run": round(1 - stats["rows"] / len(contexts), 3),
                "onnx_calls": int(stats["calls"]),
            }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"HDFS-like stream: {result['lines']} lines of {args.sessions} interleaved sessions; "
          f"ORT intra-op threads {args.threads}; micro-batch {args.batch}")
    if "training_seconds" in result:
        print(f"training on hdfs_train (torch threads {args.torch_threads}): "
              + ", ".join(f"{k} {v:.1f} s" for k, v in result["training_seconds"].items())
              + f" (total {sum(result['training_seconds'].values()):.1f} s)")
    for name in ("deeplog", "lstm_ae", "loganomaly"):
        if name not in result:
            continue
        r = result[name]
        print(f"{name:10} straight {r['straight_windows_per_s']:>8} windows/s "
              f"({r['straight_us_per_window']} µs, CPU {r['straight_cpu_us_per_window']} µs per window) | batched+memo "
              f"{r['batched_memo_windows_per_s']:>8} windows/s (CPU {r['batched_memo_cpu_us_per_line']} µs/line) "
              f"| ratio {r['ratio']:>6}x | memo hit ratio "
              f"{r['memo_hit_ratio']:.3f} | windows never run {r['windows_never_run']:.3f} | "
              f"ONNX calls {r['onnx_calls']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
