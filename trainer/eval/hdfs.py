"""DeepLog-format HDFS sessions: train the sequence models on normal sessions, judge labelled ones.

Train every model that learns from sequences on `--train` (DeepLog format, normal sessions only)
into a real bundle, load it back the way the agent does (ONNX Runtime, the serving code), and
score whole sessions. The end of `--train` is held back, as `logdetect train` does: its last
`--judge-sessions` (default 1,000: the fewest on which medium's budget, 1 in 1,000, can show one
false alarm; at most a third of `--train`) judge which learned detectors join the vote, and the
`--holdout` share before them (default 0.1) sets the bundle's thresholds. The headline rows are
what a user gets — each detector and the vote at low/medium/high with the bundle's own settings,
and the ablation of the vote at the same thresholds — and use no label. The labelled `--test`
CSV (`Sequence,label`) is split deterministically, stratified, in two halves; every row is
measured on the second. Rows marked `oracle:` had thresholds, DeepLog settings or ensemble
weights chosen on the first (labelled) half: no user has that knowledge, they show what the
models could reach. Precision is also adjusted to HDFS's real anomaly rate (2.93 %), since the
labelled CSV is balanced. Three trivial rules, learned from all of `--train`, are computed in
the same run: the session holds a template never seen in training; a pair of neighbouring
templates never seen; a set never seen.

`--raw-log FILE --raw-labels FILE` also runs the raw path once as a functional check (header
parse → Drain3 templates → block sessions → the same models); its figures are not a measure of
accuracy (the 20,000-line HDFS slice holds only 3 minutes of HDFS, so its sessions are cut short).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.bundle import BundleWriter, load_bundle
from agent.detectors.base import Detector, load_detectors
from agent.ensemble import Ensemble, default_section, tail_of
from agent.errors import InputError
from agent.models import MODELS, ModelSpec, TrainingInput
from agent.onnx_session import RuntimeOptions
from agent.types import DetectorKind, DetectorScore
from trainer.calibrate import DEFAULT_TARGETS
from trainer.eval.metrics import Row, adjusted_precision, f1_of, format_table, row
from trainer.eval.served import served_rows
from trainer.membership import needed_units
from trainer.sequences import build_vocab, encode, read_labelled, read_sessions, stratified_split
from trainer.support import sensitivity_support
from trainer.training_data import TrainingData

PREVALENCE = 0.0293  # 16,838 anomalous of 575,061 HDFS_v1 sessions
LEVEL = "session"
REFERENCES = {
    "DeepLog paper": 0.96,
    "DeepLog ICSE'22 re-run": 0.908,
    "LogAnomaly": 0.966,
    "Invariant Mining": 0.915,
    "count-vector clustering": 0.989,
    "LogRobust (supervised)": 0.98,
    "LogBERT": 0.823,
    "loglizer IsolationForest": 0.80,
}


Tuner = Callable[[Detector, list[list[int]], np.ndarray], dict[str, Any]]


def tune_deeplog(detector: Detector, sessions: list[list[int]], labels: np.ndarray) -> dict[str, Any]:
    """Choose DeepLog's top_g, end_top_g and rare-context routing on the tuning half.

    Ranks do not depend on g, so each session is judged once and every (g, end g) pair is
    scored from the ranks; the pair with the best prevalence-adjusted F1 (at its own best
    miss-count threshold) wins, ties to the larger g (fewer alerts)."""
    from agent.detectors.deeplog import RARE_CONTEXTS, DeepLogDetector

    if not isinstance(detector, DeepLogDetector):
        return {}
    scorer = detector.scorer
    best: tuple[float, int, int, str] = (-1.0, scorer.top_g, scorer.end_top_g, scorer.rare_context)
    for rare_context in RARE_CONTEXTS:
        scorer.rare_context = rare_context
        judged = [scorer.judge_session(s) for s in sessions]
        fixed = np.asarray([sum(j.miss for j in js if j.path in ("rare", "unknown")) for js in judged])
        for g in (3, 5, 7, 9, 11):
            frequent = np.asarray([sum(j.rank >= g for j in js if j.path == "frequent") for js in judged])
            for end_g in (1, 2, 3, 5, 7, 9):
                ends = np.asarray([sum(j.rank >= end_g for j in js if j.path == "end") for js in judged])
                misses = fixed + frequent + ends
                t = best_threshold(misses, labels)
                f = _f1_adjusted(misses > t, labels)
                if f > best[0] or (f == best[0] and g > best[1]):
                    best = (f, g, end_g, rare_context)
    scorer.top_g, scorer.end_top_g, scorer.rare_context = best[1], best[2], best[3]
    detector.line_threshold = best[1] - 0.5
    return {"top_g": best[1], "end_top_g": best[2], "rare_context": best[3],
            "f1_adjusted_on_tuning_half": round(best[0], 4)}


def _f1_adjusted(pred: np.ndarray, labels: np.ndarray) -> float:
    r = row(LEVEL, "", labels, pred, PREVALENCE)
    return float(r.f1_adjusted or 0.0)


# Tuners set serving knobs of a model on the tuning half (thresholds are always tuned there).
TUNERS: dict[str, Tuner] = {"deeplog": tune_deeplog, "loganomaly": tune_deeplog}


def session_models() -> list[ModelSpec]:
    """The models evaluated here (and combined by the ensemble): every registered model that
    learns from sequences. HDFS sessions carry no per-line features, and the novelty rule on a
    session is the `baseline:unseen_event` row."""
    return [m for m in MODELS if m.data is TrainingInput.SEQUENCES]


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `logdetect eval hdfs-sessions`: sessions, labelled CSV, models, raw-log check."""
    parser.add_argument("--train", required=True, type=Path, metavar="FILE",
                        help="normal sessions to learn from, one per line as template numbers (hdfs_train)")
    parser.add_argument("--test", required=True, type=Path, metavar="CSV",
                        help="labelled sessions, a Sequence,label CSV (robust_log_train.csv)")
    parser.add_argument("--holdout", type=float, default=0.1, metavar="SHARE",
                        help="share of --train held back, just before the judged sessions, to set the thresholds "
                             "(default: 0.1)")
    parser.add_argument("--judge-sessions", type=int, metavar="N",
                        help="the last N sessions of --train judge which learned detectors join the vote "
                             f"(default: {needed_units(DEFAULT_TARGETS['medium']):,}, the fewest on which medium's "
                             "budget allows one false alarm; at most a third of --train)")
    parser.add_argument("--val", type=Path, metavar="FILE",
                        help="DeepLog-format normal sessions to hold back instead of part of --train "
                             "(default: none)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object with `results` instead of a table (default: a table)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the torch models train: auto uses an NVIDIA GPU when torch can (default: auto)")
    parser.add_argument("--epochs", type=int, default=40, metavar="N",
                        help="at most this many training passes; each model stops earlier when it no longer "
                             "improves (default: 40)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the models and the split (default: 42)")
    parser.add_argument("--tune-fraction", type=float, default=0.5, metavar="SHARE",
                        help="share of the labelled CSV used to choose thresholds (default: 0.5)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="CPU threads for training and scoring (default: 1)")
    parser.add_argument("--only", nargs="+", metavar="MODEL",
                        help="evaluate only these detectors, e.g. deeplog lstm_ae autolog (default: those "
                             "`train` trains unasked)")
    parser.add_argument("--raw-log", type=Path, metavar="FILE",
                        help="also run a raw HDFS log through the whole agent as a functional check (default: none)")
    parser.add_argument("--raw-labels", type=Path, metavar="CSV",
                        help="BlockId,Label CSV of --raw-log (default: none)")
    parser.add_argument("--raw-templates", type=Path, metavar="CSV",
                        help="loghub HDFS_templates.csv mapping template text to the E-numbers of the session "
                        "files, for the raw-log check and the models that read template words (loganomaly) "
                        "(default: found beside the data)")
    parser.add_argument("--keep-bundle", type=Path, metavar="DIR",
                        help="also write the trained bundle here (default: a temporary directory)")
    parser.add_argument("--logbert-ablation", action="store_true",
                        help="also train LogBERT with and without the severity embedding and add their rows "
                             "(default: off)")


# -- thresholds -------------------------------------------------------------------------------
def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (fire when score > t) with the best prevalence-adjusted F1 on these
    labelled scores; ties go to the higher threshold (fewer alerts)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    candidates = np.unique(s)
    candidates = np.concatenate([[candidates[0] - 1.0], candidates]) if len(candidates) else np.array([0.0])
    order = np.sort(s)
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    best_t, best_f = float(candidates[-1]), -1.0
    for t in candidates:
        tp = len(pos) - np.searchsorted(pos, t, side="right")
        fp = len(neg) - np.searchsorted(neg, t, side="right")
        tpr = tp / max(len(pos), 1)
        fpr = fp / max(len(neg), 1)
        f = f1_of(adjusted_precision(tpr, fpr, PREVALENCE), tpr)
        if f >= best_f:
            best_t, best_f = float(t), f
    del order
    return best_t


def choose_weights(
    ensemble: Ensemble, scored: dict[str, list[DetectorScore]], tune_idx: np.ndarray, y_tune: np.ndarray
) -> dict[str, float]:
    """Member weights from a small grid, best prevalence-adjusted F1 on the tuning half."""
    import itertools

    names = list(scored)
    scaled = np.asarray([[ensemble.members[n].scale(scored[n][i]) for n in names] for i in tune_idx])
    best: tuple[float, tuple[float, ...]] = (-1.0, tuple(1.0 for _ in names))
    for w in itertools.product((0.0, 0.25, 0.5, 0.75, 1.0), repeat=len(names)):
        if sum(w) == 0:
            continue
        combined = scaled @ np.asarray(w) / sum(w)
        f = _f1_adjusted(combined > best_threshold(combined, y_tune), y_tune)
        if f > best[0]:
            best = (f, w)
    return {n: float(w) for n, w in zip(names, best[1], strict=True)}


# -- baselines: three trivial rules ---------------------------------------------------------
def baseline_predictions(train: list[list[int]], test: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """The three trivial rules of BASELINES.md: unseen event, unseen bigram, unseen event set."""
    def pairs(s: Sequence[int]) -> set[tuple[int, int]]:  # STIDE w=2 with session start/end marks
        seq = [-1, *s, -2]
        return set(itertools.pairwise(seq))

    events = {t for s in train for t in s}
    bigrams = set().union(*(pairs(s) for s in train))
    sets = {frozenset(s) for s in train}
    return {
        "baseline:unseen_event": np.array([any(t not in events for t in s) for s in test]),
        "baseline:unseen_bigram": np.array([not pairs(s) <= bigrams for s in test]),
        "baseline:unseen_set": np.array([frozenset(s) not in sets for s in test]),
    }


# -- scoring ----------------------------------------------------------------------------------
def score_sessions(detector: Detector, sessions: Sequence[Sequence[int]]) -> list[DetectorScore]:
    """Each session's score from one served detector (a detector that gives none is an error)."""
    out: list[DetectorScore] = []
    for s in sessions:
        score = detector.score_session(s, [0] * len(s))
        if score is None:
            raise InputError(f"{detector.name} returned no session score")
        out.append(score)
    return out


def train_bundle(
    args: argparse.Namespace,
    specs: Sequence[ModelSpec],
    train_tokens: list[list[int]],
    calib_tokens: list[list[int]],
    vocab: dict[int, int],
    output: Path,
    judge_tokens: Sequence[Sequence[int]] = (),
) -> tuple[Path, dict[str, float]]:
    """Train, calibrate on `calib_tokens`, judge vote membership on `judge_tokens`, write."""
    from trainer.calibrate import level_targets
    from trainer.judging import judge
    from trainer.membership import apply_membership
    from trainer.torch_base import FitConfig, import_torch

    torch = import_torch()
    torch.set_num_threads(max(1, args.threads))
    writer = BundleWriter(output)
    seconds: dict[str, float] = {}
    try:
        for spec in specs:
            fit = FitConfig(epochs=args.epochs, seed=args.seed, device=args.device, progress=sys.stderr.isatty())
            began = time.monotonic()
            data = TrainingData.of_sequences(train_tokens, len(vocab) + 1, calib_tokens,
                                             templates=template_texts(args, vocab))
            section = spec.trainer_function()(data, writer, spec.name, spec.default_options(), fit, None)
            seconds[spec.name] = round(time.monotonic() - began, 2)
            writer.add_model(spec.name, section)
        writer.add_json("vocab.json", {"template_to_token": {str(k): v for k, v in vocab.items()}, "unk": 0})
        fields: dict[str, Any] = {"seed": args.seed, "vocabulary_size": len(vocab) + 1,
                                  "training_data": str(args.train)}
        # the agent's session vote also hears the built-in "template never seen" rule
        ensemble = default_section({**{s.name: s.kind for s in specs}, "novelty": DetectorKind.RULE})
        judgements, facts = judge(writer.draft(**fields), level_targets(None), sessions=judge_tokens,
                                  known_sessions=[*train_tokens, *calib_tokens], seed=args.seed)
        for line in apply_membership(ensemble, judgements, facts):
            sys.stderr.write(line + "\n")
        path = writer.finish(**fields, ensemble=ensemble)
    except BaseException:
        writer.abort()
        raise
    return path, seconds


def hold_back(
    train_ids: Sequence[list[int]], holdout: float, judge_sessions: int | None = None,
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """`--train` split in time order: (fit, thresholds, membership). Membership takes the last
    `judge_sessions` (default: as many as medium's budget needs to allow one false alarm), at
    most a third of the sessions; the thresholds take the `holdout` share just before them."""
    n = len(train_ids)
    wanted = needed_units(DEFAULT_TARGETS["medium"]) if judge_sessions is None else judge_sessions
    n_judge = min(wanted, n // 3)
    n_calib = max(1, int(n * holdout))
    cut = n - n_judge - n_calib
    return list(train_ids[:cut]), list(train_ids[cut : n - n_judge]), list(train_ids[n - n_judge :])


def run(args: argparse.Namespace) -> int:
    """Train, tune thresholds on one labelled half, report rows on the other, print or emit JSON."""
    known = session_models()
    specs = [s for s in known if (s.name in args.only if args.only else not s.opt_in)]  # as `train` does
    if not specs:
        raise InputError(f"--only names no known detector (known: {', '.join(s.name for s in known)})")
    if not 0.0 < args.tune_fraction < 1.0:
        raise InputError("--tune-fraction must be between 0 and 1")
    if not 0.0 < args.holdout < 0.5:
        raise InputError("--holdout must be between 0 and 0.5")
    if args.judge_sessions is not None and args.judge_sessions < 0:
        raise InputError("--judge-sessions must be at least 0")
    train_ids = read_sessions(args.train)
    if args.val is not None:  # held back from another file: its first half thresholds, its second membership
        held_ids = read_sessions(args.val)
        fit_ids, calib_ids, judge_ids = train_ids, held_ids[: len(held_ids) // 2], held_ids[len(held_ids) // 2 :]
    else:
        fit_ids, calib_ids, judge_ids = hold_back(train_ids, args.holdout, args.judge_sessions)
    test_ids, labels = read_labelled(args.test)
    vocab = build_vocab(fit_ids)
    train_tokens = encode(fit_ids, vocab)
    test_tokens = encode(test_ids, vocab)
    tune_idx, report_idx = stratified_split(labels, args.tune_fraction, args.seed)
    y_tune, y_report = labels[tune_idx], labels[report_idx]
    calib_tokens, judge_tokens = encode(calib_ids, vocab), encode(judge_ids, vocab)

    options = RuntimeOptions(intra_op_threads=max(1, args.threads), device=args.device)
    with tempfile.TemporaryDirectory(prefix="logdetect-eval-hdfs-") as tmp:
        bundle_path, train_seconds = train_bundle(
            args, specs, train_tokens, calib_tokens, vocab, args.keep_bundle or Path(tmp) / "bundle", judge_tokens)
        bundle = load_bundle(bundle_path)
        served, served_facts = served_rows(bundle, [test_tokens[i] for i in report_idx], y_report, LEVEL,
                                           PREVALENCE, options, [s.name for s in specs])
        detectors = load_detectors(bundle, options, only=[s.name for s in specs])
        kinds = {d.name: d.kind for d in detectors}
        raw = raw_log_check(args, vocab, detectors) if args.raw_log else None  # bundle settings, before tuning
        scored: dict[str, list[DetectorScore]] = {}
        score_seconds: dict[str, float] = {}
        tuned: dict[str, dict[str, Any]] = {}
        tune_tokens = [test_tokens[i] for i in tune_idx]
        for det in detectors:
            tuner = TUNERS.get(det.name)
            if tuner is not None:  # oracle: serving knobs chosen on the labelled tuning half
                tuned[det.name] = tuner(det, tune_tokens, y_tune)
            began = time.monotonic()
            scored[det.name] = score_sessions(det, test_tokens)
            score_seconds[det.name] = round(time.monotonic() - began, 2)

    rows: list[Row] = list(served)
    thresholds: dict[str, float] = {}
    tune_normal = tune_idx[y_tune == 0]
    section = default_section(kinds)
    for name, scores in scored.items():
        values = np.asarray([s.score for s in scores])
        t = best_threshold(values[tune_idx], y_tune)
        thresholds[name] = t
        rows.append(row(LEVEL, f"oracle:{name}", y_report, values[report_idx] > t, PREVALENCE))
        section["members"][name]["normal_tail"] = tail_of(values[tune_normal].tolist())

    weights = choose_weights(Ensemble.from_manifest(section), scored, tune_idx, y_tune)
    for name, w in weights.items():
        section["members"][name]["weight"] = w
    ensemble = Ensemble.from_manifest(section)
    combined = np.zeros(len(test_tokens))
    for i in range(len(test_tokens)):
        combined[i], _ = ensemble.combine([scored[n][i] for n in scored], kinds)
    t_ens = best_threshold(combined[tune_idx], y_tune)
    thresholds["ensemble"] = t_ens
    tuned["ensemble"] = {"weights": weights}
    rows.append(row(LEVEL, "oracle:ensemble", y_report, combined[report_idx] > t_ens, PREVALENCE))

    report_ids = [test_ids[i] for i in report_idx]
    for name, pred in baseline_predictions(train_ids, report_ids).items():
        rows.append(row(LEVEL, name, y_report, pred, PREVALENCE))
    if args.logbert_ablation:
        from trainer.eval.logbert import hdfs_rows

        # Same stratified halves (split seed 42): `ablation:<variant>` rows sit beside the others.
        for r in hdfs_rows(args.train, args.test, epochs=args.epochs, seed=args.seed):
            rows.append(dataclasses.replace(r, detector=f"ablation:{r.detector}"))

    result: dict[str, Any] = {
        "dataset": "hdfs-sessions",
        "prevalence": PREVALENCE,
        "train_sessions": len(train_ids),
        "vocabulary": len(vocab) + 1,
        "fit_sessions": len(fit_ids),
        "held_back": {"thresholds": len(calib_tokens), "membership": len(judge_tokens),
                      "source": str(args.val) if args.val is not None else
                      f"--train: {args.holdout:g} for thresholds, then the last {len(judge_tokens)} for membership"},
        "membership": bundle.manifest.get("ensemble", {}).get("membership"),
        "vote_members": served_facts["vote_members"],
        "sensitivity_support": sensitivity_support(bundle.models),
        "tuned_on": {"sessions": len(tune_idx), "anomalous": int(y_tune.sum())},
        "reported_on": {"sessions": len(report_idx), "anomalous": int(y_report.sum())},
        "thresholds": thresholds,
        "tuned": tuned,
        "training_seconds": train_seconds,
        "scoring_seconds": score_seconds,
        "results": [r.as_dict() for r in rows],
        "references_f1": REFERENCES,
    }
    if raw is not None:
        result["raw_log_check"] = raw
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    sys.stdout.write(
        f"HDFS sessions: trained on {len(fit_ids)} normal sessions; thresholds set on {len(calib_tokens)} and "
        f"vote membership judged on {len(judge_tokens)} held-back normal sessions (no labels); reported on "
        f"{len(report_idx)} labelled sessions ({int(y_report.sum())} anomalous); precision adjusted to "
        f"p = {PREVALENCE}.\n`@level` rows are what the bundle serves; `ablation@level:-x` is the vote without "
        f"member x, `+x` with a left-out detector x. `oracle:` rows were tuned on {len(tune_idx)} other labelled "
        "sessions: no user has those labels.\n"
        f"vote members: {served_facts['vote_members']}\n\n"
    )
    sys.stdout.write(format_table(rows, REFERENCES) + "\n")
    sys.stdout.write(f"\nchosen on the tuning half: thresholds {thresholds}; settings {tuned}\n")
    sys.stdout.write(f"training seconds: {train_seconds}; scoring seconds: {score_seconds}\n")
    if raw is not None:
        sys.stdout.write("\nraw-log functional check: " + json.dumps(raw) + "\n")
    return 0


# -- the raw path (functional check) ----------------------------------------------------------
def templates_csv(args: argparse.Namespace) -> Path | None:
    """`--raw-templates`, else loghub's HDFS_templates.csv in a `loghub_2k/HDFS` beside the data."""
    if args.raw_templates is not None:
        return Path(args.raw_templates)
    for parent in Path(args.train).resolve().parents:
        found = parent / "loghub_2k" / "HDFS" / "HDFS_templates.csv"
        if found.is_file():
            return found
    return None


def template_texts(args: argparse.Namespace, vocab: dict[int, int]) -> dict[int, str]:
    """Model token → template text (loghub's E-numbers are the session files' numbers); empty
    when no templates file is found (a model reading words then knows each token by its number)."""
    import csv

    path = templates_csv(args)
    if path is None:
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [(int(r["EventId"].lstrip("E")), r["EventTemplate"]) for r in csv.DictReader(fh)]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read templates {path}: {exc}") from None
    return {vocab[event]: text for event, text in rows if event in vocab}


def template_patterns(path: Path) -> list[tuple[int, re.Pattern[str]]]:
    """loghub `EventId,EventTemplate` rows as (E-number, regex), most specific first."""
    import csv

    out: list[tuple[int, str]] = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                out.append((int(rec["EventId"].lstrip("E")), rec["EventTemplate"]))
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read templates {path}: {exc}") from None
    out.sort(key=lambda p: -len(p[1].replace("<*>", "")))
    return [(eid, re.compile(".*".join(re.escape(part.strip()) for part in text.split("<*>")))) for eid, text in out]


def raw_log_check(args: argparse.Namespace, vocab: dict[int, int], detectors: Sequence[Detector]) -> dict[str, Any]:
    """Run raw HDFS lines through parse → Drain3 → block sessions → the detectors (a smoke check)."""
    import csv

    from agent.parsing import LineParser, ParserConfig
    from agent.templates import TemplateMiner
    from agent.types import Record

    if args.raw_labels is None:
        raise InputError("--raw-log needs --raw-labels (the BlockId,Label CSV)")
    patterns = template_patterns(
        args.raw_templates or args.raw_log.parent.parent / "loghub_2k" / "HDFS" / "HDFS_templates.csv")
    try:
        lines = args.raw_log.read_text(encoding="utf-8", errors="replace").splitlines()
        with args.raw_labels.open(newline="", encoding="utf-8") as fh:
            block_labels = {r["BlockId"]: r["Label"] == "Anomaly" for r in csv.DictReader(fh)}
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read the raw log or its labels: {exc}") from None
    parser = LineParser(ParserConfig(log_format="hdfs", entity=r"regex:(blk_-?\d+)"))
    miner = TemplateMiner()
    cluster_event: dict[int, int] = {}
    sessions: dict[str, list[int]] = {}
    unmatched = 0
    for no, line in enumerate(lines, 1):
        parsed = parser.parse(Record(line, source=str(args.raw_log)), no)
        match = miner.add(parsed.message)
        if match.template_id not in cluster_event:  # name a Drain3 cluster by its first message
            cluster_event[match.template_id] = next(
                (eid for eid, pat in patterns if pat.search(parsed.message)), -1)
        event = cluster_event[match.template_id]
        unmatched += event < 0
        sessions.setdefault(parsed.entity, []).append(vocab.get(event, 0))
    labelled = [b for b in sessions if b in block_labels]
    y = np.asarray([block_labels[b] for b in labelled])
    flagged: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for det in detectors:
        pred = np.asarray([s.fired for s in score_sessions(det, [sessions[b] for b in labelled])])
        flagged[det.name] = int(pred.sum())
        rows.append(row(LEVEL, f"raw:{det.name}@medium", y, pred, PREVALENCE).as_dict())
    return {
        "lines": len(lines),
        "parse_failures": parser.stats.failed,
        "drain_templates": len(miner),
        "lines_without_loghub_template": unmatched,
        "sessions": len(sessions),
        "labelled_sessions": len(labelled),
        "anomalous_sessions": int(y.sum()),
        "flagged": flagged,
        "rows": rows,
        "note": "functional check only: the dev slice covers 3 minutes, sessions are cut short",
    }
