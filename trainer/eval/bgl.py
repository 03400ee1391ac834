r"""BGL: line- and window-level precision/recall/F1 per detector and for the ensemble.

Files are BGL format with the label as first column (`-` = normal, else an alert category); the
label is stripped before anything else sees the line. Training uses only normal lines (the
semi-supervised protocol of DeepLog/LogBERT) unless --contaminated, where labels are ignored
for training. Thresholds come from the held-back tail of the TRAINING files only; the test files
are scored once. Trivial baselines are computed in the same run. Rows marked `oracle:` had each
learned detector's threshold tuned on the test labels (each half of the test lines judged at the
threshold best on the other half): no user has those labels.

With --supervised the training files' labels are used (`train --labels`): the supervised
classifier (`supervised_lstm`) is trained on every training line with its label, beside the
unsupervised models, and its rows are printed beside those of the same models trained without
labels (the default protocol); a chronological split, as LogRobust's re-run in the ICSE'22 study.

example (the Loghub BGL samples; README.md "Data" says where to get them):
  logdetect eval bgl --train "$LOGDETECT_DATA"/bgl/BGL_{4,6,8,10,12}k.log \\
                     --test "$LOGDETECT_DATA"/bgl/BGL_{14,16}k.log [--supervised]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.parsing import ParserConfig
from agent.reader import check_inputs
from agent.types import Level, LineResult
from trainer.eval.bgl_data import Labelled, read_labelled

if TYPE_CHECKING:
    from agent.pipeline import Pipeline
    from trainer.train import TrainOptions, TrainResult
from trainer.eval.metrics import Row, format_table, row

SEVERE = {Level.ERROR, Level.FATAL}
REFERENCES = {
    "template-never-seen rule (measured on these files before)": 0.985,
    "LogBERT paper (random split)": 0.908,
    "LogBERT chronological re-run": 0.283,
    "contaminated rarity baseline": 0.172,
}
# published, not measured here: LogRobust on BGL, chronological split (Le & Zhang, ICSE'22 re-run)
SUPERVISED_REFERENCES = {"LogRobust chronological re-run (ICSE'22, published)": 0.967}
NO_LABELS = "no-labels:"  # row prefix: the same models trained without labels (normal lines only)


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect eval bgl`: train and test files, protocol, models, window size."""
    p.add_argument("--train", nargs="+", required=True, metavar="FILE",
                   help="labelled BGL files to learn from; only their normal (`-`) lines are learned")
    p.add_argument("--test", nargs="+", required=True, metavar="FILE",
                   help="labelled BGL files to measure on, scored once")
    p.add_argument("--contaminated", action="store_true",
                   help="learn from every training line, alerts included, labels ignored (default: normal lines only)")
    p.add_argument("--models", default="isolation_forest", metavar="LIST",
                   help="comma list of models to train (default: isolation_forest; "
                   "sequence models measure little on BGL's random samples)")
    p.add_argument("--window", type=int, default=100, metavar="N", help="lines per window (default: 100)")
    p.add_argument("--epochs", type=int, default=5, metavar="N",
                   help="at most this many training passes of each torch model (default: 5)")
    p.add_argument("--sensitivity", default="medium", choices=["low", "medium", "high"],
                   help="which of the model's thresholds to measure at (default: medium)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table (default: a table)")
    p.add_argument("--bundle", help="keep the trained bundle here (default: a temporary directory)")
    p.add_argument("--supervised", action="store_true",
                   help="also train with the training files' labels (train --labels): the supervised classifier "
                        "supervised_lstm beside the models trained on normal lines only (default: off)")
    p.add_argument("--supervised-seconds", type=float, default=300.0, metavar="S",
                   help="wall-clock budget of each torch model's training with --supervised; 0 = none, "
                        "--epochs alone bounds it (default: 300)")
    p.add_argument("--logbert-ablation", action="store_true",
                   help="also train LogBERT with and without the severity embedding (20-line windows) and add "
                        "their rows (default: off)")


def window_labels(flags: np.ndarray, size: int) -> np.ndarray:
    """One flag per `size`-line window: any flagged line in it (a short tail is dropped)."""
    n = len(flags) // size * size
    if n == 0:
        return np.array([bool(flags.any())]) if len(flags) else np.zeros(0, dtype=bool)
    return np.asarray(flags[:n].reshape(-1, size).any(axis=1), dtype=bool)


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (fire when score > t) with the best F1 on these labelled scores; ties go
    to the higher threshold (fewer alerts)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    finite = np.unique(s[np.isfinite(s)])
    if not len(finite):
        return float("inf")
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    candidates = np.concatenate([[finite[0] - 1.0], finite])
    tp = len(pos) - np.searchsorted(pos, candidates, side="right")
    fp = len(neg) - np.searchsorted(neg, candidates, side="right")
    f1 = 2 * tp / np.maximum(2 * tp + fp + (len(pos) - tp), 1)
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(candidates[best])


def oracle(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Predictions with a threshold tuned on the labels, cross-fitted: each half of the (time-
    ordered) units is judged at the threshold with the best F1 on the other half."""
    half = len(scores) // 2
    out = np.zeros(len(scores), dtype=bool)
    for tune, judge in ((slice(half, None), slice(0, half)), (slice(0, half), slice(half, None))):
        out[judge] = scores[judge] > best_f1_threshold(scores[tune], labels[tune])
    return out


def detector_scores(results: list[Any], name: str) -> np.ndarray:
    """A detector's score per line (−inf where it did not score the line)."""
    out = np.full(len(results), -np.inf)
    for i, r in enumerate(results):
        for s in r.scores:
            if s.detector == name:
                out[i] = s.score
    return out


def window_max(scores: np.ndarray, size: int) -> np.ndarray:
    """The largest score of each `size`-line window (a short tail is dropped, as `window_labels`)."""
    n = len(scores) // size * size
    if n == 0:
        return np.array([scores.max()]) if len(scores) else np.zeros(0)
    return np.asarray(scores[:n].reshape(-1, size).max(axis=1))


@dataclass(frozen=True)
class Scored:
    """One bundle trained on the training files and run once over the test files."""

    result: TrainResult
    results: list[LineResult]
    pipe: Pipeline
    train_secs: float
    score_secs: float

    def predictions(self, sensitivity: str) -> dict[str, np.ndarray]:
        """Per line: which detector fired, the ensemble's verdict and the vote's ablation."""
        from trainer.eval.served import line_ablation

        results = self.results
        detectors = sorted({s.detector for r in results for s in r.scores} | {d.name for d in self.pipe.detectors})
        preds: dict[str, np.ndarray] = {
            name: np.array([any(s.fired for s in r.scores if s.detector == name) for r in results])
            for name in detectors
        }
        preds["ensemble"] = np.array([r.verdict.value != "normal" for r in results])
        preds.update(line_ablation(results, self.pipe.bundle.manifest.get("ensemble", {}), sensitivity,
                                   self.pipe.kinds))
        return preds


def train_and_score(
    train_set: Labelled, test_set: Labelled, options: TrainOptions, sensitivity: str, keep: Callable[[int], bool] | None
) -> Scored:
    """Train a bundle on the training files, then run the test files once through the agent's pipeline."""
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.types import Sensitivity
    from trainer.train import train

    started = time.monotonic()
    result = train(train_set.records, options, keep_line=keep)
    train_secs = time.monotonic() - started
    pipe = Pipeline.from_bundle(options.output, PipelineConfig(sensitivity=Sensitivity(sensitivity)))
    results: list[LineResult] = []
    pipe.observers.append(results.append)
    started = time.monotonic()
    for s in range(0, len(test_set.records), 2048):
        pipe.process(test_set.records[s : s + 2048], 0.0)
    pipe.close(0.0)
    return Scored(result, results, pipe, train_secs, time.monotonic() - started)


def run(args: argparse.Namespace) -> int:
    """Train on the training files, score the test files once, print line and window rows."""
    from agent.errors import UserError
    from trainer.labels import Labels
    from trainer.train import TrainOptions

    if args.supervised and args.contaminated:
        raise UserError("--supervised and --contaminated are two protocols: choose one")
    seen: set[str] = set()
    train_set = read_labelled(check_inputs(args.train), seen)
    test_set = read_labelled(check_inputs(args.test), seen)
    keep = None if args.contaminated else (lambda i: not train_set.labels[i])
    parser = ParserConfig(log_format="bgl", entity="stream", multiline=False)
    models = tuple(args.models.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else Path(tmp) / "bgl-model"
        plain = None
        if args.supervised:
            plain = train_and_score(train_set, test_set, TrainOptions(
                output=Path(tmp) / "bgl-no-labels", parser=parser, models=models, epochs=args.epochs,
                progress=not args.json), args.sensitivity, keep)
            labels = Labels("BGL label column of the training files",
                            frozenset(int(i) for i in np.flatnonzero(train_set.labels)), by_line=True)
            scored = train_and_score(train_set, test_set, TrainOptions(
                output=bundle, parser=parser, models=(*models, "supervised_lstm"), epochs=args.epochs,
                max_train_seconds=args.supervised_seconds or None, progress=not args.json, labels=labels),
                args.sensitivity, None)
        else:
            scored = train_and_score(train_set, test_set, TrainOptions(
                output=bundle, parser=parser, models=models, epochs=args.epochs, progress=not args.json),
                args.sensitivity, keep)
    result, results = scored.result, scored.results
    train_secs, score_secs = scored.train_secs, scored.score_secs
    y = test_set.labels[: len(results)]
    preds = scored.predictions(args.sensitivity)
    if plain is not None:
        preds[f"{NO_LABELS}ensemble"] = plain.predictions(args.sensitivity)["ensemble"]
    preds["baseline:severe_level"] = np.array([r.line.line.level in SEVERE for r in results])
    rows: list[Row] = []
    for level in ("line", "window"):
        truth = y if level == "line" else window_labels(y, args.window)
        for name, p in preds.items():
            guess = p if level == "line" else window_labels(p, args.window)
            rows.append(row(level, name, truth, guess))
    # oracle: each learned detector at a threshold tuned on the labelled test lines (cross-fitted
    # halves); no user has these labels, the rows show what the scores could reach
    learned = [n for n in sorted({s.detector for r in results for s in r.scores}) if n not in ("novelty", "novel_set")]
    for name in learned:
        scores = detector_scores(results, name)
        rows.append(row("line", f"oracle:{name}", y, oracle(scores, y)))
        truth = window_labels(y, args.window)
        rows.append(row("window", f"oracle:{name}", truth, oracle(window_max(scores, args.window), truth)))
    if args.logbert_ablation:
        import dataclasses

        from trainer.eval.logbert import bgl_rows

        for r in bgl_rows([Path(f) for f in args.train], [Path(f) for f in args.test], epochs=args.epochs):
            # LogBERT's own protocol: 20-line windows (the other window rows use --window lines).
            rows.append(dataclasses.replace(r, detector=f"ablation:{r.detector}/w20"))
    history_check = None
    if args.contaminated and result.history is not None and result.history.judged:
        from agent.parsing.records import parse_records
        from trainer.eval.history_check import compare

        parsed, _ = parse_records(train_set.records, parser)
        times = np.array([p.timestamp or 0.0 for p in parsed])
        history_check = compare(result.history, times, train_set.labels[: len(parsed)])
    summary = {
        "history_check": history_check.to_json() if history_check is not None else None,
        "dataset": "bgl",
        "protocol": "supervised" if args.supervised else "contaminated" if args.contaminated else "semi-supervised",
        "train_files": args.train,
        "test_files": args.test,
        "train_lines": result.train_lines,
        "test_lines": len(results),
        "test_alerts": int(y.sum()),
        "templates": result.templates,
        "notes": list(result.notes),
        "train_seconds": round(train_secs, 1),
        "lines_per_second": round(len(results) / max(score_secs, 1e-9)),
        "results": [r.as_dict() for r in rows],
    }
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        sys.stdout.write(
            f"BGL ({summary['protocol']}): trained on {result.train_lines:,} lines, tested on {len(results):,} "
            f"lines with {int(y.sum()):,} alerts; scoring {summary['lines_per_second']:,} lines/s\n\n"
        )
        sys.stdout.write(format_table(rows, SUPERVISED_REFERENCES if args.supervised else REFERENCES) + "\n")
        if args.supervised:
            sys.stdout.write(f"{NO_LABELS}ensemble = the same models trained on the normal training lines only "
                             f"(no classifier); the other rows learned from the training files' labels\n")
        if history_check is not None:
            sys.stdout.write(history_check.note() + "\n")
        for note in result.notes:
            sys.stdout.write(f"note: {note}\n")
    return 0
