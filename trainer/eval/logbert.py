"""LogBERT-severity and LogBERT-without-severity on HDFS sessions and BGL windows (the ablation).

Both variants are trained with the same options and seed; only `use_severity` differs. Scores
come from the served path (ONNX Runtime through `LogBertDetector`), thresholds are chosen on
validation data and the figures are reported on data never used for training or tuning:

* HDFS sessions: train on `hdfs_train` (normal only). `robust_log_train.csv` is split into two
  deterministic, label-stratified halves: thresholds on the first (calibration on its normal
  sessions, then the false-positive target that maximises prevalence-adjusted F1 on the whole
  half), figures on the second. HDFS sessions carry no levels: every position gets the neutral
  severity, so the two variants differ only by the (constant) severity input; the HDFS rows
  measure run-to-run variation, not the value of severity.
* BGL line windows: the label column is stripped, lines are parsed with the agent's BGL parser
  and mined with the agent's TemplateMiner on the training part. Training part = the first 80 %
  of each training file; validation = the last 20 % (thresholds, never the test files). Training
  windows are the alert-free chunks of `min(window, max_len)` lines; test windows are `window`
  consecutive lines of the test files (a window is anomalous when it holds an alert), split into
  chunks of `max_len` when longer (the window fires when any chunk does).

Run: `python -m trainer.eval.logbert --dataset hdfs|bgl [--epochs N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.detectors.logbert import LogBertDetector, LogBertThresholds, Window, WindowScore
from agent.detectors.section import ModelLoad
from trainer.calibrate import CURVE_FPRS, threshold_at
from trainer.eval.metrics import Row, format_table, row

HDFS_PREVALENCE = 0.0293
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BGL_TRAIN = tuple(DATA / "bgl" / f"BGL_{n}k.log" for n in (4, 6, 8, 10, 12))
BGL_TEST = tuple(DATA / "bgl" / f"BGL_{n}k.log" for n in (14, 16))
VARIANTS = (("logbert-severity", True), ("logbert-no-severity", False))
HDFS_REFERENCES = {"LogBERT paper": 0.823, "LogBERT chronological re-run": 0.758}
BGL_REFERENCES = {"LogBERT paper (random split)": 0.908, "LogBERT chronological re-run": 0.283}


@dataclass(frozen=True)
class Units:
    """Scored evaluation units (sessions or windows), each a run of chunks of ≤ max_len."""

    owner: np.ndarray  # chunk -> unit index
    miss: np.ndarray
    distance: np.ndarray
    cosine: np.ndarray
    rare: np.ndarray  # chunk takes the rare path
    unknown: np.ndarray  # chunk holds an unknown template
    n_units: int

    def fired(self, thr: LogBertThresholds) -> np.ndarray:
        """The rule of `agent.detectors.logbert.judge`, vectorised over chunks, any chunk per unit."""
        unknown = self.unknown if thr.unknown_fires else np.zeros_like(self.unknown)
        chunk = unknown | np.where(
            self.rare, self.cosine > thr.cosine, (self.miss > thr.miss) | (self.distance > thr.distance)
        )
        out = np.zeros(self.n_units, dtype=bool)
        np.logical_or.at(out, self.owner, chunk)
        return out


def score_units(det: LogBertDetector, units: Sequence[Sequence[Window]]) -> Units:
    """Score every chunk of every unit in one memoised, batched pass through the detector."""
    flat = [w for u in units for w in u]
    owner = np.asarray([i for i, u in enumerate(units) for _ in u], dtype=np.int64)
    scores: list[WindowScore] = det.score_windows(flat)
    cut = det.thresholds.rare_fraction
    return Units(
        owner=owner,
        miss=np.asarray([s.miss_ratio for s in scores]),
        distance=np.asarray([s.distance for s in scores]),
        cosine=np.asarray([s.cosine for s in scores]),
        rare=np.asarray([s.rare_fraction >= cut for s in scores], dtype=bool),
        unknown=np.asarray([s.unknown > 0 for s in scores], dtype=bool),
        n_units=len(units),
    )


def tune(
    val: Units, labels: np.ndarray, base: LogBertThresholds, prevalence: float | None
) -> LogBertThresholds:
    """Pick the component thresholds (one false-positive target per component, from the curve of
    the validation normals) that maximise F1 (adjusted when `prevalence` is given) on validation."""
    normal_chunks = ~labels[val.owner]
    best, best_f1 = base, -1.0
    for fm in CURVE_FPRS:
        tm = threshold_at(val.miss[normal_chunks], fm)
        for fd in CURVE_FPRS:
            thr = replace(
                base,
                miss=tm,
                distance=threshold_at(val.distance[normal_chunks], fd),
                cosine=threshold_at(val.cosine[normal_chunks & val.rare], fd)
                if (normal_chunks & val.rare).sum() >= 50
                else threshold_at(val.cosine[normal_chunks], fd),
            )
            r = row("val", "x", labels, val.fired(thr), prevalence)
            f1 = r.f1_adjusted if prevalence is not None and r.f1_adjusted is not None else r.f1
            if f1 > best_f1 + 1e-12:
                best, best_f1 = thr, f1
    return best


def _train_variant(
    name: str,
    use_severity: bool,
    train: list[list[int]],
    train_levels: list[list[int]] | None,
    calib: list[list[int]],
    calib_levels: list[list[int]] | None,
    vocab_size: int,
    work: Path,
    epochs: int,
    seed: int,
    options: Any = None,
) -> tuple[LogBertDetector, dict[str, Any]]:
    from agent.bundle import load_bundle
    from trainer.logbert import LogBertOptions
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData, train_one

    opts = replace(options or LogBertOptions(), use_severity=use_severity)
    fit = FitConfig(epochs=epochs, seed=seed, device="cpu", progress=False)
    started = time.monotonic()
    data = TrainingData.of_sequences(train, vocab_size, calib, train_levels, calib_levels)
    bundle = load_bundle(train_one("logbert", data, work / name, opts, fit))
    seconds = time.monotonic() - started
    section = bundle.models["logbert"]
    det = LogBertDetector.from_bundle(ModelLoad.of(bundle, "logbert"))
    info = {"train_seconds": round(seconds, 1), **section["training"]}
    return det, info


def _rows_for(
    name: str,
    det: LogBertDetector,
    val: Units,
    val_y: np.ndarray,
    test: Units,
    test_y: np.ndarray,
    level: str,
    prevalence: float | None,
    details: dict[str, Any],
) -> list[Row]:
    tuned = tune(val, val_y, det.thresholds, prevalence)
    details[name]["thresholds_medium"] = asdict(det.thresholds)
    details[name]["thresholds_tuned"] = asdict(tuned)
    details[name]["test_rare_path_share"] = float(test.rare.mean()) if len(test.rare) else 0.0
    # the plain LogBERT rule (no UNK rule), tuned the same way, to show what that rule adds
    plain = tune(val, val_y, replace(det.thresholds, unknown_fires=False), prevalence)
    details[name]["thresholds_tuned_without_unknown_rule"] = asdict(plain)
    return [
        row(level, name, test_y, test.fired(tuned), prevalence),
        row(level, f"{name}@medium", test_y, test.fired(det.thresholds), prevalence),
        row(level, f"{name}-no-unk-rule", test_y, test.fired(plain), prevalence),
    ]


# -- HDFS sessions --------------------------------------------------------------------------


def hdfs_rows(
    train_path: Path = DATA / "hdfs" / "deeplog" / "hdfs_train",
    labelled_path: Path = DATA / "hdfs" / "deeplog" / "robust_log_train.csv",
    epochs: int = 20,
    seed: int = 42,
    details: dict[str, Any] | None = None,
    options: Any = None,
    split_seed: int = 42,
) -> list[Row]:
    """Session-level rows (prevalence-adjusted) for both variants: `<name>` uses thresholds tuned
    on the validation half, `<name>@medium` the bundle's calibrated medium thresholds,
    `<name>-no-unk-rule` LogBERT's plain rule (unknown templates only count as misses), tuned."""
    from trainer.sequences import build_vocab, encode, read_labelled, read_sessions, stratified_split

    details = {} if details is None else details
    train_raw = read_sessions(train_path)
    vocab = build_vocab(train_raw)
    train = encode(train_raw, vocab)
    seqs_raw, labels = read_labelled(labelled_path)
    seqs = encode(seqs_raw, vocab)
    val_idx, test_idx = stratified_split(labels, 0.5, split_seed)  # the same halves for every model seed
    y = labels.astype(bool)
    calib = [seqs[i] for i in val_idx if not y[i]]
    details.update({"dataset": "hdfs-sessions", "train_sessions": len(train), "vocab_size": len(vocab) + 1,
                    "val_sessions": len(val_idx), "test_sessions": len(test_idx),
                    "severity": "none in HDFS: neutral severity token everywhere"})
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, use_severity in VARIANTS:
            det, info = _train_variant(name, use_severity, train, None, calib, None, len(vocab) + 1,
                                       Path(tmp), epochs, seed, options)
            details[name] = info
            started = time.monotonic()
            val = score_units(det, [det.session_windows(seqs[i], None) for i in val_idx])
            test = score_units(det, [det.session_windows(seqs[i], None) for i in test_idx])
            info["score_seconds"] = round(time.monotonic() - started, 2)
            info["stats"] = det.stats()
            rows += _rows_for(name, det, val, y[val_idx], test, y[test_idx], "session", HDFS_PREVALENCE,
                              details)
    return rows


# -- BGL windows ----------------------------------------------------------------------------


@dataclass
class BglPart:
    """One contiguous run of BGL lines as model tokens and levels, with its alert flags."""

    tokens: list[int]
    levels: list[int]
    alerts: np.ndarray


def _bgl_parts(
    train_files: Sequence[Path], test_files: Sequence[Path], val_fraction: float
) -> tuple[list[BglPart], list[BglPart], list[BglPart], int, dict[str, Any]]:
    """Parse, mine on the training part, match everything like the agent (unknown → UNK)."""
    from agent.parsing import LineParser, ParserConfig
    from agent.templates import MinerConfig, TemplateMiner
    from trainer.eval.bgl_data import read_labelled
    from trainer.templated import template_lines

    seen: set[str] = set()
    train_set = read_labelled(list(train_files), seen)
    test_set = read_labelled(list(test_files), seen)
    parser = LineParser(ParserConfig(log_format="bgl", entity="stream", multiline=False))
    train_parsed = [parser.parse(r, i + 1) for i, r in enumerate(train_set.records)]
    test_parsed = [parser.parse(r, i + 1) for i, r in enumerate(test_set.records)]
    # per training file: first (1 - val_fraction) for training, the tail for validation
    by_file: dict[str, list[int]] = {}
    for i, r in enumerate(train_set.records):
        by_file.setdefault(r.source, []).append(i)
    fit_idx: list[list[int]] = []
    val_idx: list[list[int]] = []
    for idx in by_file.values():
        cut = int(len(idx) * (1 - val_fraction))
        fit_idx.append(idx[:cut])
        val_idx.append(idx[cut:])
    miner = TemplateMiner(MinerConfig())
    for idx in fit_idx:
        for i in idx:
            miner.add(train_parsed[i].message)
    normal_templates: set[int] = set()
    for idx in fit_idx:
        for i in idx:
            if not train_set.labels[i]:
                m = miner.match(train_parsed[i].message)
                if m is not None:
                    normal_templates.add(m.template_id)
    vocab = {tid: k + 1 for k, tid in enumerate(sorted(normal_templates))}

    def part(parsed: Sequence[Any], labels: np.ndarray) -> BglPart:
        tl, _ = template_lines(parsed, miner, vocab)
        return BglPart([t.token for t in tl], [int(t.line.level) for t in tl], np.asarray(labels, dtype=bool))

    fit_parts = [part([train_parsed[i] for i in idx], train_set.labels[idx]) for idx in fit_idx]
    val_parts = [part([train_parsed[i] for i in idx], train_set.labels[idx]) for idx in val_idx]
    test_parts = [part(test_parsed, test_set.labels)]  # the test files in order, as trainer.eval.bgl windows them
    info = {"train_lines": sum(len(i) for i in fit_idx), "val_lines": sum(len(i) for i in val_idx),
            "test_lines": len(test_parsed), "test_alerts": int(test_set.labels.sum()),
            "templates": len(miner), "vocab_size": len(vocab) + 1}
    return fit_parts, val_parts, test_parts, len(vocab) + 1, info


def _windows(parts: Sequence[BglPart], size: int) -> tuple[list[tuple[list[int], list[int]]], np.ndarray]:
    """Consecutive `size`-line windows within each part (a short tail is dropped), with labels."""
    out: list[tuple[list[int], list[int]]] = []
    labels: list[bool] = []
    for p in parts:
        for s in range(0, len(p.tokens) // size * size, size):
            out.append((p.tokens[s : s + size], p.levels[s : s + size]))
            labels.append(bool(p.alerts[s : s + size].any()))
    return out, np.asarray(labels, dtype=bool)


def bgl_rows(
    train_files: Sequence[Path] = BGL_TRAIN,
    test_files: Sequence[Path] = BGL_TEST,
    window: int = 20,
    epochs: int = 20,
    seed: int = 42,
    val_fraction: float = 0.2,
    details: dict[str, Any] | None = None,
    options: Any = None,
) -> list[Row]:
    """Window-level rows for both variants (`<name>` tuned on validation, `<name>@medium` as shipped)."""
    from trainer.logbert import LogBertOptions

    details = {} if details is None else details
    opts = options or LogBertOptions()
    fit_parts, val_parts, test_parts, vocab_size, info = _bgl_parts(train_files, test_files, val_fraction)
    details.update({"dataset": "bgl", "window": window, **info})
    train_w, train_y = _windows(fit_parts, min(window, opts.max_len))
    train_normal = [w for w, bad in zip(train_w, train_y, strict=True) if not bad]
    val_w, val_y = _windows(val_parts, window)
    test_w, test_y = _windows(test_parts, window)
    calib = [w for w, bad in zip(val_w, val_y, strict=True) if not bad]
    details.update({"train_windows": len(train_normal), "val_windows": len(val_w),
                    "val_anomalous": int(val_y.sum()), "test_windows": len(test_w),
                    "test_anomalous": int(test_y.sum())})
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, use_severity in VARIANTS:
            det, info = _train_variant(
                name, use_severity, [t for t, _ in train_normal], [lv for _, lv in train_normal],
                [t for t, _ in calib], [lv for _, lv in calib], vocab_size, Path(tmp), epochs, seed, opts)
            details[name] = info
            val = score_units(det, [det.session_windows(t, lv) for t, lv in val_w])
            test = score_units(det, [det.session_windows(t, lv) for t, lv in test_w])
            info["stats"] = det.stats()
            rows += _rows_for(name, det, val, val_y, test, test_y, "window", None, details)
    return rows


# -- runner ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m trainer.eval.logbert`: one run per seed and, with several, the ablation summary."""
    p = argparse.ArgumentParser(prog="python -m trainer.eval.logbert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["hdfs", "bgl"], required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[42],
                   help="one run per seed; with several, an ablation summary (mean ± std of F1)")
    p.add_argument("--window", type=int, default=20, help="BGL lines per window (default 20)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from agent.logging_setup import configure_logging
    from trainer.torch_base import import_torch

    configure_logging(stream=sys.stderr)  # stdout carries the table or the JSON only

    import_torch().set_num_threads(max(1, args.threads))
    runs: list[dict[str, Any]] = []
    refs = HDFS_REFERENCES if args.dataset == "hdfs" else BGL_REFERENCES
    for seed in args.seeds:
        details: dict[str, Any] = {"seed": seed}
        started = time.monotonic()
        if args.dataset == "hdfs":
            rows = hdfs_rows(epochs=args.epochs, seed=seed, details=details)
        else:
            rows = bgl_rows(window=args.window, epochs=args.epochs, seed=seed, details=details)
        details["seconds"] = round(time.monotonic() - started, 1)
        runs.append({"details": details, "results": [r.as_dict() for r in rows]})
        if not args.json:
            sys.stdout.write(json.dumps(details, indent=1, default=str) + "\n\n")
            sys.stdout.write(f"seed {seed}:\n" + format_table(rows, refs) + "\n\n")
    summary = ablation_summary([[Row(**r) for r in run["results"]] for run in runs])
    if args.json:
        sys.stdout.write(json.dumps({"runs": runs, "ablation": summary}) + "\n")
    elif len(runs) > 1:
        key = "f1_adjusted" if args.dataset == "hdfs" else "f1"
        sys.stdout.write(f"ablation over seeds {args.seeds} ({key}, mean ± std):\n")
        for name, stats in summary.items():
            m, fp = stats[key], stats["fp"]
            sys.stdout.write(f"  {name:34} {m['mean']:.3f} ± {m['std']:.3f}   {m['values']}   "
                             f"false positives {fp['mean']:.1f} ± {fp['std']:.1f}\n")
    return 0


def ablation_summary(runs: Sequence[Sequence[Row]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per detector row name: mean, std and per-seed values of F1 (and adjusted F1) over runs."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    names = [r.detector for r in runs[0]] if runs else []
    for name in names:
        out[name] = {}
        for key in ("f1", "f1_adjusted", "precision", "recall", "fp", "fn"):
            values = [getattr(r, key) for rows in runs for r in rows if r.detector == name]
            values = [v for v in values if v is not None]
            if values:
                out[name][key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                  "values": [round(v, 3) for v in values]}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
