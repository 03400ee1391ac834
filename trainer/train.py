"""Training: log lines in, a verified model bundle out.

    lines ─► stitch + parse (agent's parser) ─► chronological split: train | held back
          ─► templates mined on the train part (agent.templates), frozen; every line matched the way
             the agent will match it ─► vocabulary (token 0 = UNK)
          ─► features (agent's extractor) ─► Isolation Forest
          ─► per-entity sequences ─► DeepLog, LSTM autoencoder, LogBERT-severity (torch)
          ─► profile for explanations ─► thresholds on the held-back part
          ─► the real agent pipeline run on the held-back part to calibrate the ensemble
          ─► manifest with hashes

The held-back part is the LAST `val_fraction` of the lines in time order: thresholds are set on
its first half, data the models did not see, the way they will meet tomorrow's logs; its second
half judges which learned detectors earn a place in the vote (`trainer/membership.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from agent.bundle import BundleWriter
from agent.errors import InputError, UserError
from agent.features import FeatureConfig, FeatureCounts, FeatureExtractor, finish_rows, set_burst_ratios
from agent.feedback import Label, Labelled
from agent.models import DEFAULT_NAMES, MODELS, NAMES, ModelSpec, TrainingInput
from agent.parsing import ParserConfig
from agent.parsing.records import parse_records
from agent.templates import MinerConfig, TemplateMiner, learn_templates
from agent.types import DetectorKind, ParsedLine, Record, TemplatedLine
from trainer.history import HistoryLines, HistoryOptions, HistoryReport, find_suspects_in
from trainer.labels import Labels, label_lines, only_in_anomalies
from trainer.templated import template_lines
from trainer.training_data import LabelledSequences, TrainingData
from trainer.whole_history import extend_miner, served_only

if TYPE_CHECKING:
    from trainer.distributed import ClusterData

log = structlog.get_logger(__name__)

ALL_MODELS = NAMES  # every registered model (`agent.models`), in table order
DEFAULT_MODELS = DEFAULT_NAMES  # what `train` trains when `--models` is not given (opt-in rows left out)
LIBRARIES = ("drain3", "numpy", "onnxruntime", "onnx", "torch", "scikit-learn", "skl2onnx")


@dataclass
class TrainOptions:
    """Everything `train` needs: output, parser, miner, features, models and budgets."""

    output: Path
    parser: ParserConfig = field(default_factory=ParserConfig)
    miner: MinerConfig = field(default_factory=MinerConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    models: tuple[str, ...] = DEFAULT_MODELS
    target_fpr: float = 0.001
    val_fraction: float = 0.2
    epochs: int = 10
    device: str = "auto"
    seed: int = 42
    max_train_seconds: float | None = None  # per torch model
    learning_rate: float = 1e-3  # torch models
    batch_size: int = 256  # torch models
    progress: bool = True
    model_options: dict[str, Any] = field(default_factory=dict)  # name -> options object
    history: HistoryOptions = field(default_factory=HistoryOptions)  # incidents in the history
    feedback: tuple[Labelled, ...] = ()  # operator labels (`logdetect feedback`, `train --feedback`)
    labels: Labels | None = None  # which training lines were anomalies (`train --labels`, trainer/labels.py)


@dataclass
class TrainResult:
    """What training produced: the bundle and the counts it reports."""

    bundle: Path
    lines: int
    train_lines: int
    held_back_lines: int
    templates: int
    unmatched_train_lines: int
    models: list[str]
    seconds: float
    log_format: str
    held_back_alert_rate: float = 0.0
    history: HistoryReport | None = None
    notes: tuple[str, ...] = ()  # sensitivities the data cannot support; detectors left out of the vote


def _say(progress: bool, msg: str) -> None:
    if progress:
        import sys

        sys.stderr.write(msg + "\n")
        sys.stderr.flush()


def sequences_by_entity(lines: Sequence[TemplatedLine]) -> tuple[list[list[int]], list[list[int]]]:
    """Each entity's tokens and levels in line order."""
    seqs: dict[str, list[int]] = {}
    levels: dict[str, list[int]] = {}
    for tl in lines:
        e = tl.line.entity
        seqs.setdefault(e, []).append(tl.token)
        levels.setdefault(e, []).append(int(tl.line.level))
    keys = list(seqs)
    return [seqs[k] for k in keys], [levels[k] for k in keys]


def labelled_sequences(
    lines: Sequence[TemplatedLine], flags: Sequence[bool] | np.ndarray
) -> tuple[list[list[int]], list[list[int]], list[list[bool]]]:
    """Each entity's tokens, levels and labels (True = anomaly) in line order."""
    seqs: dict[str, tuple[list[int], list[int], list[bool]]] = {}
    for tl, flag in zip(lines, flags, strict=True):
        tokens, levels, labels = seqs.setdefault(tl.line.entity, ([], [], []))
        tokens.append(tl.token)
        levels.append(int(tl.line.level))
        labels.append(bool(flag))
    return [v[0] for v in seqs.values()], [v[1] for v in seqs.values()], [v[2] for v in seqs.values()]


def data_hash(records: Sequence[Record]) -> str:
    """SHA-256 of the training lines, recorded in the manifest."""
    h = hashlib.sha256()
    for r in records:
        h.update(r.line.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shaped the bundle."""
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class TrainingSet:
    """The data half's result: the assembled training set every model is fitted, judged and
    calibrated on, with the statistics the bundle stores. One process builds it from every
    parsed line (`assemble_in_process`); a Dask cluster from its workers' counts, columns and
    samples, without bringing a parsed line to the driver (`assemble_on_cluster`)."""

    log_format: str
    lines: int
    train_lines: int
    held_back_lines: int
    miner: TemplateMiner  # the training miner (frozen)
    served: TemplateMiner  # the whole history's miner (`trainer/whole_history.py`)
    vocab: dict[int, int]
    history: HistoryReport
    normal_ids: frozenset[int]  # operator feedback: templates labelled normal
    problem: dict[int, str]  # operator feedback: templates labelled a problem
    served_suspect: frozenset[int]
    unmatched: int
    extractor: FeatureExtractor
    x_train: np.ndarray
    x_val: np.ndarray
    profile: dict[str, Any]  # over the training lines (feature ranges are added by `train`)
    train_seqs: list[list[int]]
    train_levels: list[list[int]]
    val_seqs: list[list[int]]
    val_levels: list[list[int]]
    judged: Judged
    calibration: list[Record]  # the held-back normal lines the real pipeline is run over
    problem_lines: list[ParsedLine]  # the history's lines of problem templates (a sample)
    known: frozenset[int]  # templates first seen in the held-back part, served as known
    whole_profile: dict[str, Any] | None  # the profile over the whole history (when `known`)
    data_sha256: str
    distributed: dict[str, Any] | None = None
    labelled: LabelledSequences | None = None
    labels_record: dict[str, Any] | None = None


def train(
    records: Sequence[Record],
    options: TrainOptions,
    keep_line: Callable[[int], bool] | None = None,
    prepared: ClusterData | None = None,
) -> TrainResult:
    """Train every requested model on `records` and write the bundle to `options.output`.

    `keep_line(i)` (optional) says whether record i may be learned from — `eval` uses it to
    train on normal lines only; dropped lines are simply not seen. `prepared`: the data half
    started on a Dask cluster (`trainer/distributed.prepare`; `records` is then unused).
    """
    started = time.monotonic()
    if keep_line is not None and options.labels is not None:
        raise UserError("train: labels and a line filter cannot be combined")
    check_models(options)
    if options.labels is not None and options.labels.by_line and options.parser.multiline:
        # one label per input line: every line is its own record (no stack-trace joining)
        options = dataclasses.replace(options, parser=dataclasses.replace(options.parser, multiline=False))
    if prepared is None:
        from trainer.distributed import paused_gc

        data = paused_gc(assemble_in_process)(records, options, keep_line)
    else:
        data = assemble_on_cluster(prepared, options)
    return fit(data, options, started)


def check_models(options: TrainOptions) -> None:
    """Refuse model names no row of agent/models.py has."""
    unknown = [m for m in options.models if m not in ALL_MODELS]
    if unknown:
        raise UserError(f"unknown model(s) {unknown}: choose from {', '.join(ALL_MODELS)}")


def _enough(lines: int, val_fraction: float) -> int:
    """The held-back line count, refusing a history too short to learn from."""
    n_val = int(lines * val_fraction)
    if lines - n_val < 20:
        raise InputError(f"only {lines} log lines: need at least a few hundred normal lines to learn from")
    return n_val


def _feedback(
    miner: TemplateMiner, history: HistoryReport, options: TrainOptions,
) -> tuple[HistoryReport, frozenset[int], dict[int, str]]:
    """Operator feedback applied to the history check (said): the history, the templates
    labelled normal, the ones labelled a problem."""
    normal_ids, problem = feedback_templates(miner, options.feedback)
    if normal_ids:  # an operator said these are expected: never held back as suspect
        history = dataclasses.replace(
            history, suspects=tuple(s for s in history.suspects if s.template_id not in normal_ids))
    for msg in history.summary_lines() + feedback_lines(normal_ids, problem):
        _say(options.progress, msg)
    return history, normal_ids, problem


def _vocabulary(
    miner: TemplateMiner, served: TemplateMiner, served_suspect: frozenset[int],
) -> tuple[frozenset[int], dict[int, int]]:
    """The training templates left out of normal (`served_suspect` as the training miner names
    them), and the vocabulary of the others."""
    suspect = served_suspect | {t for t in miner.templates() if served.resolve(t) in served_suspect}
    vocab = {tid: i + 1 for i, tid in enumerate(sorted(t for t in miner.templates() if t not in suspect))}
    return frozenset(suspect), vocab


def _profile_vocab(served: TemplateMiner, vocab: dict[int, int], known: frozenset[int]) -> dict[int, int]:
    """The tokens the whole history's profile reads (held-back-only templates known, token 0)."""
    return {**{served.resolve(t) or t: k for t, k in vocab.items()}, **dict.fromkeys(known, 0)}


def assemble_in_process(
    records: Sequence[Record], options: TrainOptions, keep_line: Callable[[int], bool] | None = None,
) -> TrainingSet:
    """The data half in this process, from every record (see `train` for `keep_line`)."""
    if keep_line is not None:
        records = [r for i, r in enumerate(records) if keep_line(i)]
    if not records:
        raise InputError("no log lines to train on")
    _say(options.progress, f"reading {len(records):,} lines")
    parsed, fmt = parse_records(records, options.parser)
    n_val = _enough(len(parsed), options.val_fraction)
    train_part, val_part = parsed[: len(parsed) - n_val], parsed[len(parsed) - n_val :]

    # Templates an operator labelled normal join the training data even when this history lacks them
    # (with `--dask` the workers' merged miner is kept as it is: the labels still match by sample).
    expected = [lab.sample for lab in options.feedback if lab.label is Label.NORMAL and lab.sample]
    _say(options.progress, f"mining templates ({fmt} format) on {len(train_part):,} lines")
    miner = learn_templates([*(p.message for p in train_part), *expected], options.miner)
    # What the bundle serves as "seen": the templates of the whole history, held-back part
    # included (`trainer/whole_history.py`); calibration below still uses the training miner.
    served = extend_miner(miner, (p.message for p in val_part))
    # Incidents in the history must not define normal: their templates stay out of the vocabulary
    # (so the novelty rule flags them) and their lines out of every learned model. Labelled
    # training (keep_line, labels) is trusted as it is. The whole history is judged with the served
    # templates.
    if keep_line is not None or options.labels is not None:
        history = _trusted_history(len(parsed), options)
    else:
        ids = [m.template_id if (m := served.match(p.message)) is not None else -1 for p in parsed]
        history = _check_history(HistoryLines.of(parsed, ids), served, options)
    history, normal_ids, problem = _feedback(miner, history, options)
    flags = np.zeros(len(parsed), dtype=bool)
    alert_only: frozenset[int] = frozenset()
    labels_record = None
    if options.labels is not None:
        # labelled anomalies are not normal; templates seen only in them stay out of the vocabulary
        ids = [m.template_id if (m := miner.match(p.message)) is not None else -1 for p in parsed]
        flags = options.labels.flags(parsed, ids, problem)
        alert_only = only_in_anomalies(ids, flags)
        for msg in label_lines(options.labels, flags, alert_only):
            _say(options.progress, msg)
    served_suspect = history.suspect_ids | frozenset(problem) | alert_only
    suspect, vocab = _vocabulary(miner, served, served_suspect)
    if options.labels is not None:  # labelled anomalies of the held-back part never become "seen"
        served = extend_miner(miner, (p.message for p, f in zip(val_part, flags[len(train_part):], strict=True)
                                      if not f))
    n_train = len(train_part)
    all_train_tl, unmatched = template_lines(train_part, miner, vocab)
    all_val_tl, _ = template_lines(val_part, miner, vocab)
    train_flags, val_flags = flags[:n_train], flags[n_train:]
    if options.labels is not None:
        labels_record = {**options.labels.to_json(), "anomalous_lines": int(flags.sum()),
                         "anomalous_train_lines": int(train_flags.sum()),
                         "templates_only_in_anomalies": len(alert_only)}
    # what the unsupervised models learn and are judged on: normal lines only
    train_tl = [tl for i, tl in enumerate(all_train_tl) if tl.template_id not in suspect and not train_flags[i]]
    kept = [i for i, tl in enumerate(all_val_tl) if tl.template_id not in suspect and not val_flags[i]]
    # thresholds on the first half of the held-back normal lines, vote membership on the second;
    # `cut` splits the held-back part as it came (labelled anomalies included) at the same line
    half = len(kept) // 2
    cut = kept[half] if half < len(kept) else len(all_val_tl)
    val_tl = [all_val_tl[i] for i in kept[:half]]
    judge_tl = [all_val_tl[i] for i in kept[half:]]
    judge_part = [Record(val_part[i].raw, val_part[i].source) for i in kept[half:]]
    judged = Judged(judge_part, judge_tl)
    if val_flags[cut:].any():  # the held-back part's labelled anomalies judge the vote
        judged = Judged([Record(p.raw, p.source) for p in val_part[cut:]], all_val_tl[cut:], val_flags[cut:])
    _say(options.progress, f"{len(vocab)} templates; {unmatched} training lines did not match back")

    extractor, x_train = FeatureExtractor.fit(train_tl, options.features)
    x_val = np.array([extractor.update(tl)[0] for tl in val_tl], dtype=np.float32).reshape(len(val_tl), -1)
    from trainer.problem_check import problem_lines
    from trainer.profile import build_profile

    known = served_only(miner, served, served_suspect)
    whole_profile = None
    if known:  # the history's normal lines, for the served profile (`_serve_whole_history`)
        history_normal = [p for p, f in zip(train_part, train_flags, strict=True) if not f] + \
            [val_part[i] for i in kept]
        lines, _ = template_lines(history_normal, served, _profile_vocab(served, vocab, known))
        whole_profile = build_profile([tl for tl in lines if tl.template_id >= 0
                                       and tl.template_id not in served_suspect])
    train_seqs, train_levels = sequences_by_entity(train_tl)
    val_seqs, val_levels = sequences_by_entity(val_tl)
    labelled = None
    if options.labels is not None:
        labelled = LabelledSequences(*labelled_sequences(all_train_tl, train_flags),
                                     *labelled_sequences(all_val_tl[:cut], val_flags[:cut]))
    return TrainingSet(
        fmt, len(parsed), n_train, len(val_part), miner, served, vocab, history, normal_ids, problem,
        served_suspect, unmatched, extractor, x_train, x_val, build_profile(train_tl),
        train_seqs, train_levels, val_seqs, val_levels, judged, judge_part,
        problem_lines(parsed, miner, list(problem)) if problem else [], known, whole_profile,
        data_hash(records), None, labelled, labels_record)


def assemble_on_cluster(data: ClusterData, options: TrainOptions) -> TrainingSet:
    """The data half on a Dask cluster (`trainer/distributed.py`): the same training set as
    `assemble_in_process` on the same files, built from the workers' counts, columns and samples
    (no parsed line comes to this process); the garbage collector paused meanwhile (`paused_gc`)."""
    from trainer.distributed import paused_gc

    assembled: TrainingSet = paused_gc(_assemble_on_cluster)(data, options)
    return assembled


def _assemble_on_cluster(data: ClusterData, options: TrainOptions) -> TrainingSet:
    from trainer.distributed import BlockAsk

    _say(options.progress, f"read and parsed {data.lines:,} lines on {data.workers} Dask workers")
    n_val = _enough(data.lines, options.val_fraction)
    n_train, miner = data.lines - n_val, data.miner
    # the workers' merged miner is kept as it is (operator labels still match by sample)
    served = extend_miner(miner, data.held_back_messages())
    history, normal_ids, problem = _feedback(miner, _check_history(data.history_lines(served), served, options),
                                             options)
    served_suspect = history.suspect_ids | frozenset(problem)
    suspect, vocab = _vocabulary(miner, served, served_suspect)
    known = served_only(miner, served, served_suspect)
    ask = BlockAsk(n_train, suspect, vocab, frozenset(problem), served.to_state() if known else None,
                   served_suspect, _profile_vocab(served, vocab, known))
    sequences, counts = data.sequences(ask, options.features)
    unmatched = int(((sequences.lines < n_train) & (sequences.template_ids < 0)).sum())
    normal = ~np.isin(sequences.template_ids, np.fromiter(suspect, dtype=np.int64, count=len(suspect)))
    kept = np.sort(sequences.lines[(sequences.lines >= n_train) & normal])
    half = len(kept) // 2
    judged_from = int(kept[half]) if half < len(kept) else data.lines  # as `cut` in one process
    _say(options.progress, f"{len(vocab)} templates; {unmatched} training lines did not match back")
    stats = FeatureCounts.merge(counts)
    out = data.outputs(stats, options.features, judged_from, ask)
    data.close()  # what the workers hold for this run: the models are fitted here
    finish_rows(out.x_train, stats)
    set_burst_ratios(out.x_val, stats)
    from trainer.problem_check import problem_lines

    train_seqs, train_levels = sequences.select(0, n_train, suspect, vocab)
    val_seqs, val_levels = sequences.select(n_train, judged_from, suspect, vocab)
    judged = Judged(out.judged, (), given=sequences.select(judged_from, data.lines, suspect, vocab)[0])
    return TrainingSet(
        data.log_format, data.lines, n_train, n_val, miner, served, vocab, history, normal_ids, problem,
        served_suspect, unmatched, FeatureExtractor(options.features, stats), out.x_train, out.x_val,
        out.profile, train_seqs, train_levels, val_seqs, val_levels, judged, out.judged,
        problem_lines(out.problem, miner, list(problem)) if problem else [], known,
        out.whole, data.data_sha256, data.facts())


def fit(data: TrainingSet, options: TrainOptions, started: float | None = None) -> TrainResult:
    """The models fitted on the assembled training set, judged, calibrated; the bundle written
    (`started`: when training began, for the seconds reported)."""
    started = time.monotonic() if started is None else started
    miner, vocab, history, problem = data.miner, data.vocab, data.history, data.problem
    writer = BundleWriter(options.output)
    try:
        writer.add_json("drain_state.json", miner.to_state())
        writer.add_json("vocab.json", {
            "template_to_token": {str(t): k for t, k in vocab.items()},
            "templates": {str(k): miner.template(t) for t, k in vocab.items()},
            "unk": 0,
        })
        writer.add_json("features.json", data.extractor.stats.to_json())
        writer.add_json("history.json", history.to_json())
        from trainer.profile import feature_ranges

        profile = data.profile
        profile["feature_ranges"] = feature_ranges(data.x_train)  # what a model's alert is compared with
        profile["held_back"] = history.held_back()  # the history's suspects: not new, held back
        ongoing = history.ongoing()  # the suspected incident the history ends in, if any
        if ongoing is not None:
            profile["held_back_ongoing"] = ongoing
        writer.add_json("profile.json", profile)
        texts = {k: miner.template(t) or "" for t, k in vocab.items()}
        training = TrainingData(len(vocab) + 1, data.train_seqs, data.val_seqs, data.train_levels, data.val_levels,
                                data.x_train, data.x_val, data.labelled, texts)
        specs = [m for m in MODELS if m.name in options.models or m.builtin]
        kinds = _train_models(specs, training, writer, options)
        trained = list(kinds)
        from agent.ensemble import default_section

        feedback_record: dict[str, Any] = {
            "normal_templates": len(data.normal_ids),
            "problem_templates": [{"template_id": t, "template": x} for t, x in problem.items()]}
        manifest_fields: dict[str, Any] = {
            "parser": {**asdict(options.parser), "log_format": data.log_format},
            "miner": asdict(options.miner),
            "features": asdict(options.features),
            "training": {
                "lines": data.lines,
                "train_lines": data.train_lines,
                "held_back_lines": data.held_back_lines,
                "unmatched_train_lines": data.unmatched,
                "templates": len(vocab),
                "data_sha256": data.data_sha256,
                **({"distributed": data.distributed} if data.distributed is not None else {}),
                "seed": options.seed,
                "target_fpr": options.target_fpr,
                "held_back_as_suspect": {"templates": len(history.suspects), "lines": history.held_lines},
                "feedback": feedback_record,
                **({"labels": data.labels_record} if data.labels_record is not None else {}),
            },
            "libraries": library_versions(),
            "vocab_size": len(vocab) + 1,
        }
        writer.manifest["ensemble"] = default_section(kinds, target_fpr=options.target_fpr)
        notes = _judge_members(writer, manifest_fields, data.train_seqs + data.val_seqs, data.judged, options)
        alert_rate = _calibrate_ensemble(writer, manifest_fields, data.calibration, options)
        if problem:  # the operator's problem labels: held out above, they check every operating point
            from trainer.problem_check import check

            checked = check(writer.draft(**manifest_fields), data.problem_lines, options.parser, len(problem))
            feedback_record["problem_check"] = checked.to_json()
            for msg in checked.summary_lines():
                _say(options.progress, msg)
            notes += checked.summary_lines()[1:]
        first_keys: dict[str, Any] = {k: profile[k] for k in ("feature_ranges", "held_back", "held_back_ongoing")
                                      if k in profile}
        _serve_whole_history(writer, miner, data.served, vocab, data.known, data.whole_profile, first_keys)
        manifest_fields["training"]["held_back_templates"] = len(data.known)
        if data.known:
            _say(options.progress, f"{len(data.known)} template(s) first seen in the held-back part: served as known")
        out = writer.finish(**manifest_fields)
    except BaseException:
        writer.abort()
        raise
    return TrainResult(out, data.lines, data.train_lines, data.held_back_lines, len(vocab), data.unmatched, trained,
                       time.monotonic() - started, data.log_format, alert_rate, history, tuple(notes))


@dataclass(frozen=True)
class Judged:
    """The second half of the held-back lines, on which the vote's members are judged: normal
    lines only, or (given labels) every line with its label."""

    records: Sequence[Record]
    lines: Sequence[TemplatedLine]
    anomalous: np.ndarray | None = None  # given labels: True where a line is a labelled anomaly
    given: list[list[int]] | None = None  # the normal sessions, already built (by the Dask shuffle)

    def sessions(self) -> tuple[list[list[int]], list[list[int]] | None]:
        """The held-back normal sessions, and (given labels) the sessions holding a labelled anomaly."""
        if self.anomalous is None:
            return (self.given if self.given is not None else sequences_by_entity(self.lines)[0]), None
        seqs, _, flags = labelled_sequences(self.lines, self.anomalous)
        return ([s for s, f in zip(seqs, flags, strict=True) if not any(f)],
                [s for s, f in zip(seqs, flags, strict=True) if any(f)])


def _serve_whole_history(
    writer: BundleWriter, miner: TemplateMiner, served: TemplateMiner, vocab: dict[int, int],
    known: frozenset[int], profile: dict[str, Any] | None, kept: dict[str, Any],
) -> None:
    """Serve the whole history's templates (`trainer/whole_history.py`): the extended miner, its
    held-back-only templates (`known`) listed as known in the vocabulary, and the explanation
    profile over every non-suspect line of the history (`profile`, built with `known`; with the
    first profile's `kept` keys)."""
    if not known or profile is None:
        return
    writer.add_json("drain_state.json", served.to_state())
    writer.add_json("vocab.json", {
        "template_to_token": {str(t): k for t, k in vocab.items()},
        "templates": {str(k): miner.template(t) for t, k in vocab.items()},
        "known_templates": sorted(known),
        "unk": 0,
    })
    # what the Isolation Forest learnt from (the training part), and the history's held-back templates
    profile.update(kept)
    writer.add_json("profile.json", profile)


def _judge_members(
    writer: BundleWriter, manifest_fields: dict[str, Any], known: list[list[int]], judged: Judged,
    options: TrainOptions,
) -> list[str]:
    """Say which sensitivities the held-back data supports, and judge each learned detector's
    place in the vote on the second half of the held-back lines (and their sessions). `known`:
    the training and threshold-setting sessions."""
    from trainer.calibrate import level_targets
    from trainer.judging import judge
    from trainer.membership import apply_membership
    from trainer.support import sensitivity_support, support_lines

    support = sensitivity_support(writer.manifest["models"])
    manifest_fields["training"]["sensitivity_support"] = support
    judged_sessions, anomalous_sessions = judged.sessions()
    judgements, facts = judge(
        writer.draft(**manifest_fields), level_targets(options.target_fpr), sessions=judged_sessions,
        known_sessions=known, records=judged.records, parser=options.parser,
        seed=options.seed, anomalous_sessions=anomalous_sessions,
        anomalous_lines=None if judged.anomalous is None else [bool(f) for f in judged.anomalous])
    return support_lines(support) + apply_membership(writer.manifest["ensemble"], judgements, facts)


def feedback_templates(miner: TemplateMiner, labels: Sequence[Labelled]) -> tuple[frozenset[int], dict[int, str]]:
    """Operator labels as this training's template ids: the ones labelled normal, and the problem
    ones with their text. A label is matched by its sample message, else by its template text;
    a label that matches no template of this history is left out."""
    normal: set[int] = set()
    problem: dict[int, str] = {}
    for lab in labels:
        m = next((m for text in (lab.sample, lab.template) if text and (m := miner.match(text)) is not None), None)
        if m is None:
            continue
        if lab.label is Label.NORMAL:
            normal.add(m.template_id)
        else:
            problem[m.template_id] = m.template
    return frozenset(normal - set(problem)), problem


def feedback_lines(normal: frozenset[int], problem: dict[int, str]) -> list[str]:
    """What `train` prints about the operator's labels."""
    if not normal and not problem:
        return []
    out = [f"operator feedback: {len(normal)} template(s) labelled normal (learned, never held back), "
           f"{len(problem)} labelled a problem (kept out of normal training)"]
    out += [f"  labelled a problem: {text[:80]!r}" for text in problem.values()]
    return out


def _trusted_history(lines: int, options: TrainOptions) -> HistoryReport:
    """No history check: the training lines are labelled (`keep_line` or labels)."""
    reason = "the training lines are labelled" if options.labels is not None else \
        "the training lines are labelled normal"
    return HistoryReport((), lines, 0, "day", False, reason)


def _check_history(lines: HistoryLines, miner: TemplateMiner, options: TrainOptions) -> HistoryReport:
    """Incidents in the whole history (training and held-back part), by the served miner's templates
    (the training miner extended with the held-back part, `trainer/whole_history.py`): `lines`
    holds each line's time, served template, level and actor."""
    texts = {t: miner.template(t) or "" for t in np.unique(lines.ids).tolist() if t >= 0}
    return find_suspects_in(lines, texts, options.history)


def _train_models(
    specs: Sequence[ModelSpec], data: TrainingData, writer: BundleWriter, options: TrainOptions
) -> dict[str, DetectorKind]:
    """Every spec's trainer function (one calling convention), its section added to the bundle;
    the kinds of the models trained. Models that need torch are skipped, with a warning,
    when torch is not installed."""
    from trainer.torch_base import FitConfig

    torch_wanted = [m.name for m in specs if m.torch]
    if torch_wanted and importlib.util.find_spec("torch") is None:
        log.warning("torch_missing_skipping_models", models=torch_wanted)
        _say(options.progress, f"torch is not installed: skipping {', '.join(torch_wanted)}")
        specs = [m for m in specs if not m.torch]
    labelled = [m.name for m in specs if m.data is TrainingInput.LABELLED]
    if labelled and (data.labelled is None or data.labelled.anomalies == 0):
        # a supervised model learns from labels: without labelled anomalies it is not trained
        if data.labelled is not None:
            _say(options.progress, f"no training line is labelled an anomaly: not training {', '.join(labelled)}")
        log.info("no_labels_skipping_models", models=labelled)
        specs = [m for m in specs if m.data is not TrainingInput.LABELLED]
    fit = FitConfig(epochs=options.epochs, batch_size=options.batch_size, lr=options.learning_rate,
                    seed=options.seed, device=options.device, progress=options.progress,
                    max_seconds=options.max_train_seconds)
    kinds: dict[str, DetectorKind] = {}
    for spec in specs:
        _say(options.progress, f"training {spec.name}")
        opts = options.model_options.get(spec.name) or spec.default_options()
        section = spec.trainer_function()(data, writer, spec.name, opts, fit, options.target_fpr)
        writer.add_model(spec.name, section)
        kinds[spec.name] = spec.kind
    return kinds


def _calibrate_ensemble(
    writer: BundleWriter, manifest_fields: dict[str, Any], records: Sequence[Record], options: TrainOptions
) -> float:
    """Run the real agent pipeline over the held-back lines: store the score distribution the
    report compares against, and the end-to-end alert rate on normal data."""
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.types import LineResult

    if not records:
        writer.add_json("score_sample.json", {"scores": []})
        return 0.0
    pipe = Pipeline(writer.draft(**manifest_fields), PipelineConfig(parser=options.parser))
    scores: list[float] = []
    times: list[float] = []
    alerts = 0

    def observe(r: LineResult) -> None:
        nonlocal alerts
        scores.append(r.score)
        times.append(r.line.time)
        alerts += r.verdict.value != "normal"

    pipe.observers.append(observe)
    for start in range(0, len(records), 1024):
        pipe.process(records[start : start + 1024], 0.0)
    rng = np.random.default_rng(options.seed)
    sample = np.asarray(scores)
    if len(sample) > 5000:
        sample = rng.choice(sample, 5000, replace=False)
    writer.add_json("score_sample.json", {"scores": [round(float(s), 5) for s in sample]})
    rate = alerts / max(len(records), 1)
    manifest_fields["training"]["held_back_alert_rate"] = rate
    from trainer.profile import hour_multipliers

    # Seed 002's dynamic thresholds (used only when turned on): how much higher normal scores run
    # at each hour of the held-back data; hours it does not cover keep 1.0.
    writer.manifest["ensemble"]["hour_multipliers"] = hour_multipliers(times, [max(s, 1e-9) for s in scores])
    return rate
