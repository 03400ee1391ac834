"""LogBERT-severity: scoring latency and throughput on CPU, and training time on `hdfs_train`.

    .venv/bin/python bench/logbert_latency.py [--epochs 20] [--windows 512] [--bundle DIR] [--json]

1. Training: the default-size model (`LogBertOptions()`) on the 4,855 sessions of
   `hdfs/deeplog/hdfs_train`, torch limited to 2 threads (the 2-core target: ≤ 10 min).
   `--bundle DIR` reuses a bundle written by an earlier run instead of training.
2. Scoring through ONNX Runtime with ONE intra-op thread, at window lengths 20 and 64, in the
   same run: unbatched (one ONNX call per window: its mask variants + the unmasked row),
   the scorer's own batching (a token budget per call), and fixed `--batches` windows per
   call. Windows are distinct (cut from the concatenated HDFS
   sessions at varying offsets) and the memo cache is bypassed, so every window is computed.
   Reported: per-window latency (ms) and windows/s; best of `--repeats`.
3. The served path on real sessions: every session of `robust_log_train.csv` through
   `LogBertDetector.score_session` (memoised, one call per session) — sessions/s and hit rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from agent.bundle import Bundle, BundleWriter, load_bundle  # noqa: E402
from agent.detectors.logbert import LogBertDetector, Window, sanitise  # noqa: E402
from agent.detectors.section import ModelLoad, ModelSection  # noqa: E402
from agent.onnx_session import RuntimeOptions  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))


def train_bundle(data: Path, out: Path, epochs: int) -> tuple[Bundle, dict[str, Any]]:
    """Train LogBERT on the HDFS sessions into a bundle (two torch threads)."""
    import torch

    from trainer.logbert import LogBertOptions, fit_and_export
    from trainer.sequences import build_vocab, encode, read_sessions
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData

    torch.set_num_threads(2)
    raw = read_sessions(data / "hdfs" / "deeplog" / "hdfs_train")
    vocab = build_vocab(raw)
    writer = BundleWriter(out)
    started = time.monotonic()
    section = fit_and_export(TrainingData.of_sequences(encode(raw, vocab), len(vocab) + 1), writer, "logbert",
                             LogBertOptions(), FitConfig(epochs=epochs, device="cpu", progress=False), None)
    writer.add_model("logbert", section)
    seconds = time.monotonic() - started
    writer.finish()
    return load_bundle(out), {"train_seconds": round(seconds, 1), "torch_threads": 2, **section["training"]}


def distinct_windows(data: Path, length: int, count: int, det: LogBertDetector) -> list[Window]:
    """`count` distinct windows of `length` tokens from the HDFS training stream."""
    from trainer.sequences import read_sessions

    stream = [t for s in read_sessions(data / "hdfs" / "deeplog" / "hdfs_train") for t in s]
    seen: set[Window] = set()
    out: list[Window] = []
    start = 0
    while len(out) < count and start + length <= len(stream):
        w = sanitise(stream[start : start + length], None, det.layout)
        if w not in seen:
            seen.add(w)
            out.append(w)
        start += 7
    return out


def time_scoring(det: LogBertDetector, windows: list[Window], batches: list[int], repeats: int) -> dict[str, Any]:
    """Best-of-`repeats` seconds for: one window per call, the scorer's own token budget (all
    windows handed over at once), and fixed numbers of windows per call."""
    scorer = det.scorer
    modes: dict[str, float] = {}

    def run(name: str, groups: list[list[Window]]) -> None:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for g in groups:
                scorer.score_uncached(g)
            best = min(best, time.perf_counter() - t)
        modes[name] = best

    run("unbatched", [[w] for w in windows])
    calls = scorer.calls
    run("batched", [windows])
    per_call = len(windows) * repeats / max(scorer.calls - calls, 1)
    for b in batches:
        run(f"{b}/call", [windows[s : s + b] for s in range(0, len(windows), b)])
    n = len(windows)
    return {
        "windows": n,
        "budget_windows_per_call": round(per_call, 1),
        "modes": {
            name: {"ms_per_window": round(1000 * sec / n, 3), "windows_per_s": round(n / sec, 1),
                   "speedup": round(modes["unbatched"] / sec, 2)}
            for name, sec in modes.items()
        },
    }


def served_sessions(data: Path, det: LogBertDetector) -> dict[str, float]:
    """Sessions/s of whole-session scoring on the labelled HDFS CSV."""
    from trainer.sequences import build_vocab, encode, read_labelled, read_sessions

    vocab = build_vocab(read_sessions(data / "hdfs" / "deeplog" / "hdfs_train"))
    seqs, _ = read_labelled(data / "hdfs" / "deeplog" / "robust_log_train.csv")
    sessions = encode(seqs, vocab)
    t = time.perf_counter()
    for s in sessions:
        det.score_session(s, [])
    seconds = time.perf_counter() - t
    stats = det.stats()
    return {"sessions": len(sessions), "sessions_per_s": round(len(sessions) / seconds, 1),
            "cache_hit_ratio": round(stats["hit_ratio"], 3), "onnx_calls": stats["calls"]}


def main(argv: list[str] | None = None) -> int:
    """Time LogBERT's served scoring: per window, per fixed batch and per session."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--bundle", type=Path, help="reuse this bundle (skips training)")
    p.add_argument("--windows", type=int, default=512)
    p.add_argument("--batches", type=int, nargs="*", default=[4, 16, 64],
                   help="also time these fixed numbers of windows per ONNX call")
    p.add_argument("--save-bundle", type=Path, help="keep the trained bundle here")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from agent.logging_setup import configure_logging

    configure_logging(stream=sys.stderr)  # stdout carries the table or the JSON only
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.bundle:
            bundle = load_bundle(args.bundle)
        else:
            out = args.save_bundle or Path(tmp) / "logbert"
            bundle, result["training"] = train_bundle(args.data, out, args.epochs)
        section = bundle.models["logbert"]
        det = LogBertDetector.from_bundle(ModelLoad(bundle, ModelSection.parse("logbert", section),
                                                    RuntimeOptions(intra_op_threads=1)))
        result["model"] = {k: section["options"][k] for k in ("hidden", "layers", "heads", "max_len")}
        result["model"]["mask_variants"] = section["mask_variants"]
        for length in (20, 64):
            windows = distinct_windows(args.data, length, args.windows, det)
            result[f"length_{length}"] = time_scoring(det, windows, args.batches, args.repeats)
        result["served_hdfs_sessions"] = served_sessions(args.data, det)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    if "training" in result:
        tr = result["training"]
        sys.stdout.write(f"training on hdfs_train ({tr['windows']} windows, {tr['epochs']} epochs, "
                         "2 threads): "
                         f"{tr['train_seconds']} s\n")
    sys.stdout.write(f"model: {result['model']}; ONNX Runtime, 1 intra-op thread\n\n")
    sys.stdout.write(f"{'length':>6} {'windows per call':>22} {'ms/window':>10} {'windows/s':>10} {'vs 1':>6}\n")
    for length in (20, 64):
        r = result[f"length_{length}"]
        for mode, m in r["modes"].items():
            label = f"budget (~{r['budget_windows_per_call']})" if mode == "batched" else mode
            label = "1 (unbatched)" if mode == "unbatched" else label
            sys.stdout.write(f"{length:>6} {label:>22} {m['ms_per_window']:>10} {m['windows_per_s']:>10} "
                             f"{m['speedup']:>6}\n")
    s = result["served_hdfs_sessions"]
    sys.stdout.write(f"\nserved: {s['sessions']} HDFS sessions, {s['sessions_per_s']} sessions/s, "
                     f"memo hit ratio {s['cache_hit_ratio']}, {int(s['onnx_calls'])} ONNX calls\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
