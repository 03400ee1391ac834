"""The model contract, run over EVERY row of the model table (`agent.models.MODELS`).

Registering a model is enough to have it checked here: one bundle is trained through the real
trainer (`trainer.train.train`, every registered model, small and fast settings) on normal
HDFS blocks of the dev slice, and each model is loaded back through the agent's loader. So that
the supervised model (`TrainingInput.LABELLED`) trains too, a few labelled anomalies (a FATAL
line of a template the normal blocks never show, unlike the checks' planted line) are set into
the early training lines and named by line labels (`trainer.labels.Labels`); the held-back tail
holds none, so the other models are judged as without labels.

For every model:
- a planted anomaly (a line whose template was never seen, at FATAL, inserted into normal
  blocks) scores higher than normal rows: per line for line-scoped models, per session for
  window- and session-scoped ones;
- `score_lines` returns exactly one answer per input line;
- its scores do not depend on how a stream is split into micro-batches;
- its memo is idempotent: scoring the same lines again gives the same answers and runs no
  model rows;
- a bundle section without thresholds is refused;
- the trainer's section round-trips through `from_bundle`: the served detector has the table's
  name and kind and judges against the section's thresholds at every sensitivity.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import need

from agent.bundle import Bundle, load_bundle
from agent.detectors.base import Detector, load_detector, load_detectors
from agent.detectors.section import ModelSection
from agent.errors import BundleError
from agent.features import FeatureConfig, FeatureExtractor, FeatureStats
from agent.models import MODELS, ModelSpec, Scope
from agent.onnx_session import RuntimeOptions
from agent.parsing import ParserConfig
from agent.templates import TemplateMiner
from agent.types import DetectorScore, Level, LineContext, Record, Sensitivity
from trainer.labels import Labels

PARSER = ParserConfig(log_format="hdfs", entity=r"regex:(blk_-?\d+)")
TRAIN_LINES = 5000  # normal lines the bundle learns from (the trainer holds back the last 20 %)
TEST_LINES = 2500  # later normal lines the checks score
PLANT_EVERY = 40  # one planted line per this many test lines, in the block of the line before
PLANTED = "FATAL dfs.DataNode$DataXceiver: zq kernel panic quarantined {blk} on shelf qq"
SESSIONS = 60  # normal sessions compared with their planted copies
# labelled anomalies set into the training lines (only before the held-back tail), for supervised models
LABELLED = "FATAL dfs.DataNode$DataXceiver: zq controller fenced {blk} after parity storm"
LABEL_EVERY, LABEL_BEFORE = 60, 3000
NOT_SCORED = -1e30  # where a model gives no score: below any score it gives
# torch models: a high learning rate on small batches learns these few templates in a few epochs;
# early stopping usually ends sooner, and the time budget is only a safety net
FIT = {"epochs": 6, "learning_rate": 1e-2, "batch_size": 128, "max_train_seconds": 60.0}

# One session fixture trains every model (about 35 s of CPU); on a machine shared with other
# work its wall time can approach the default per-test timeout, which counts fixture setup.
pytestmark = pytest.mark.timeout(600)

# Small settings so the whole suite trains in seconds; a model not listed trains with defaults.
SMALL: dict[str, dict[str, Any]] = {
    "deeplog": {"embed_dim": 8, "hidden": 16, "layers": 1},
    "loganomaly": {"semantic_dim": 8, "hidden": 16, "layers": 1},
    "lstm_ae": {"window": 10, "embed_dim": 8, "level_dim": 2, "hidden": 16, "latent": 8},
    "logbert": {"hidden": 16, "layers": 1, "heads": 2, "ff": 32, "severity_dim": 4, "max_len": 16,
                "parity_windows": 16, "score_every_lines": 1},  # every line: line scores are a function of the line
    "supervised_lstm": {"window": 8, "embed_dim": 8, "level_dim": 2, "hidden": 16},
}


@dataclass(frozen=True)
class World:
    """The trained bundle and the inputs every check scores."""

    bundle: Bundle
    normal: list[LineContext]  # test lines of normal blocks, in order
    planted: list[LineContext]  # the same stream with planted lines inserted
    planted_at: list[int]  # indexes of the planted lines in `planted`
    sessions: list[tuple[list[int], list[int]]]  # normal sessions (tokens, levels)
    planted_sessions: list[tuple[list[int], list[int]]]  # each with one planted line in the middle


def _with_labelled_anomalies(lines: Sequence[str]) -> tuple[list[str], Labels]:
    """The training lines with a labelled anomaly after every LABEL_EVERY-th of the first LABEL_BEFORE."""
    out: list[str] = []
    anomalous: set[int] = set()
    for i, line in enumerate(lines):
        out.append(line)
        if i < LABEL_BEFORE and i % LABEL_EVERY == LABEL_EVERY - 1:
            header = " ".join(line.split(" ", 3)[:3])
            blk = re.search(r"blk_-?\d+", line)
            anomalous.add(len(out))
            out.append(f"{header} {LABELLED.format(blk=blk.group(0) if blk else 'blk_1')}")
    return out, Labels("contract fixture", frozenset(anomalous), by_line=True)


def _normal_lines(data_dir: Path) -> list[str]:
    labels: dict[str, bool] = {}
    with (data_dir / "hdfs" / "HDFS_v1_head20k_dev_block_labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            labels[row["BlockId"]] = row["Label"] == "Normal"
    block = re.compile(r"blk_-?\d+")
    out = []
    for line in (data_dir / "hdfs" / "HDFS_v1_head20k_dev.log").read_text(errors="replace").splitlines():
        found = block.search(line)
        if found and labels.get(found.group(0), False):
            out.append(line)
    return out


def _contexts(bundle: Bundle, lines: Sequence[str]) -> list[LineContext]:
    """Lines through the agent's parser, the bundle's frozen miner and a fresh feature extractor."""
    from agent.parsing.records import parse_records
    from trainer.templated import template_lines

    parsed, _ = parse_records([Record(line, "hdfs") for line in lines], PARSER)
    vocab = {int(k): int(v) for k, v in bundle.read_json("vocab.json")["template_to_token"].items()}
    templated, _ = template_lines(parsed, TemplateMiner.from_state(bundle.read_json("drain_state.json")), vocab)
    features = FeatureExtractor(FeatureConfig(**bundle.manifest["features"]),
                                FeatureStats.from_json(bundle.read_json("features.json")))
    out = []
    for tl in templated:
        row, state = features.update(tl)
        out.append(LineContext(tl, np.asarray(row, dtype=np.float32), tuple(state.history), tuple(state.levels)))
    return out


@pytest.fixture(scope="session")
def world(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    """One bundle with every registered model, trained on normal HDFS lines, and planted anomalies."""
    from trainer.train import TrainOptions, train

    lines = _normal_lines(data_dir)
    need(len(lines) >= TRAIN_LINES + TEST_LINES, "the HDFS dev slice has too few normal lines")
    options: dict[str, Any] = {}
    for spec in MODELS:
        if spec.name in SMALL:
            options[spec.name] = replace(spec.default_options(), **SMALL[spec.name])
    out = tmp_path_factory.mktemp("contract") / "bundle"
    train_lines, labels = _with_labelled_anomalies(lines[:TRAIN_LINES])
    train([Record(line, "hdfs") for line in train_lines],
          TrainOptions(output=out, parser=PARSER, models=tuple(m.name for m in MODELS), device="cpu", seed=7,
                       progress=False, model_options=options, target_fpr=0.01, labels=labels, **FIT))
    bundle = load_bundle(out)

    test = lines[TRAIN_LINES : TRAIN_LINES + TEST_LINES]
    normal = _contexts(bundle, test)
    with_planted: list[str] = []
    planted_at: list[int] = []
    for i, line in enumerate(test):
        with_planted.append(line)
        if i % PLANT_EVERY == PLANT_EVERY - 1:
            header = " ".join(line.split(" ", 3)[:3])  # date, time, pid of the line before
            blk = re.search(r"blk_-?\d+", line)
            planted_at.append(len(with_planted))
            with_planted.append(f"{header} {PLANTED.format(blk=blk.group(0) if blk else 'blk_1')}")
    planted = _contexts(bundle, with_planted)

    by_block: dict[str, tuple[list[int], list[int]]] = {}
    for c in normal:
        tokens, levels = by_block.setdefault(c.line.line.entity, ([], []))
        tokens.append(c.line.token)
        levels.append(int(c.line.line.level))
    sessions = [s for s in by_block.values() if len(s[0]) >= 4][:SESSIONS]
    planted_sessions = []
    for tokens, levels in sessions:
        k = len(tokens) // 2
        planted_sessions.append(([*tokens[:k], 0, *tokens[k:]], [*levels[:k], int(Level.FATAL), *levels[k:]]))
    return World(bundle, normal, planted, planted_at, sessions, planted_sessions)


def _spec_params() -> list[Any]:
    return [pytest.param(m, id=m.name, marks=[pytest.mark.torch] if m.torch else []) for m in MODELS]


def _section(world: World, spec: ModelSpec) -> ModelSection:
    if spec.name not in world.bundle.models:
        need(not spec.torch, f"{spec.name} needs torch to train (pip install '.[train]')")
        pytest.fail(f"the trainer wrote no section for the registered model {spec.name!r}")
    return ModelSection.parse(spec.name, world.bundle.models[spec.name])


def _detector(world: World, spec: ModelSpec, sensitivity: Sensitivity = Sensitivity.MEDIUM) -> Detector:
    return load_detector(world.bundle, _section(world, spec), RuntimeOptions(device="cpu"), sensitivity)


def _value(score: DetectorScore | None) -> float:
    return NOT_SCORED if score is None else score.score


def _same(a: Sequence[DetectorScore | None], b: Sequence[DetectorScore | None]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None)
        if x is not None and y is not None:
            assert x.detector == y.detector and x.fired == y.fired and x.threshold == y.threshold
            assert x.score == pytest.approx(y.score, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("spec", _spec_params())
def test_planted_anomaly_scores_higher_than_normal_rows(world: World, spec: ModelSpec) -> None:
    """Planted anomalies score above nearly all normal rows (lines or sessions, by scope)."""
    det = _detector(world, spec)
    if spec.scope is Scope.LINE:
        normal = np.asarray([_value(s) for s in det.score_lines(world.normal)])
        scores = det.score_lines(world.planted)
        planted = np.asarray([_value(scores[i]) for i in world.planted_at])
        assert np.median(planted) > np.quantile(normal, 0.99), (np.median(planted), np.quantile(normal, 0.99))
        return
    normal = np.asarray([_value(det.score_session(t, lv)) for t, lv in world.sessions])
    planted = np.asarray([_value(det.score_session(t, lv)) for t, lv in world.planted_sessions])
    # (the test blocks are cut at the slice's edges, so some normal sessions already look odd)
    assert (planted >= normal).mean() >= 0.9, list(zip(normal, planted, strict=True))
    assert planted.mean() > normal.mean(), (planted.mean(), normal.mean())


@pytest.mark.parametrize("spec", _spec_params())
def test_one_answer_per_line(world: World, spec: ModelSpec) -> None:
    """score_lines returns exactly one answer per line, also for empty batches."""
    det = _detector(world, spec)
    assert det.score_lines([]) == []
    for n in (1, 7, 256):
        assert len(det.score_lines(world.planted[:n])) == n


@pytest.mark.parametrize("spec", _spec_params())
def test_scores_do_not_depend_on_batch_splitting(world: World, spec: ModelSpec) -> None:
    """The same stream scores the same whole or split into odd-sized batches."""
    stream = world.planted[:1200]
    whole = _detector(world, spec).score_lines(stream)
    split = _detector(world, spec)
    pieces: list[DetectorScore | None] = []
    start, sizes, k = 0, (1, 7, 64, 3, 256), 0
    while start < len(stream):
        pieces.extend(split.score_lines(stream[start : start + sizes[k % len(sizes)]]))
        start += sizes[k % len(sizes)]
        k += 1
    _same(whole, pieces)


@pytest.mark.parametrize("spec", _spec_params())
def test_memo_is_idempotent(world: World, spec: ModelSpec) -> None:
    """Scoring twice gives the same answers, the second time from the memo."""
    det = _detector(world, spec)
    stream = world.planted[:600]
    first = det.score_lines(stream)
    sessions = [det.score_session(t, lv) for t, lv in world.planted_sessions[:10]]
    rows = det.stats().get("rows")
    _same(first, det.score_lines(stream))
    _same(sessions, [det.score_session(t, lv) for t, lv in world.planted_sessions[:10]])
    if rows is not None:
        assert det.stats()["rows"] == rows  # the second time, every answer came from the memo
    _same(first, _detector(world, spec).score_lines(stream))  # and the memo changed none


@pytest.mark.parametrize("spec", _spec_params())
def test_a_section_without_thresholds_is_refused(world: World, spec: ModelSpec) -> None:
    """A section without thresholds, or without one level, is refused at load."""
    raw = dict(_section(world, spec).raw)
    del raw["thresholds"]
    broken = Bundle(world.bundle.path, {**world.bundle.manifest, "models": {spec.name: raw}})
    with pytest.raises(BundleError, match="threshold"):
        load_detectors(broken)
    raw["thresholds"] = {"low": 1.0, "high": 1.0}
    with pytest.raises(BundleError, match="medium"):
        ModelSection.parse(spec.name, raw)


@pytest.mark.parametrize("spec", _spec_params())
def test_the_trainers_section_round_trips_through_from_bundle(world: World, spec: ModelSpec) -> None:
    """The trainer's section loads into the registered class at each sensitivity and serves its thresholds."""
    section = _section(world, spec)
    assert section.type == spec.name
    for sensitivity in Sensitivity:
        det = _detector(world, spec, sensitivity)
        assert isinstance(det, spec.serving_class())
        assert det.name == spec.name and det.kind is spec.kind
        lines = [s for s in det.score_lines(world.planted[:400]) if s is not None]
        for s in lines:
            assert s.detector == spec.name and s.threshold == section.threshold(sensitivity)
        judged = [det.score_session(t, lv) for t, lv in world.planted_sessions[:10]]
        for s in judged:
            if s is not None:
                assert s.threshold == section.session_threshold(sensitivity)
        assert lines or any(s is not None for s in judged), f"{spec.name} judged nothing"


def test_session_verdicts_say_what_each_model_saw(world: World) -> None:
    """Every registered model that fires on a planted session explains it in the session's own
    terms (DeepLog: where it first went wrong, what it expected there; the LSTM-AE: the line
    ending its worst window and its template; the rules: the unseen lines, the unseen set),
    never as "flagged by X"; the session event's body carries it."""
    from agent.events import session_event
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.types import SessionVerdict, Verdict

    pipe = Pipeline(world.bundle, PipelineConfig(runtime=RuntimeOptions(device="cpu")))
    expected_words = {"deeplog": "Expected there: ", "loganomaly": "Expected there: ",
                      "lstm_ae": "Worst rebuilt: the window ending at line", "logbert": "this session",
                      "novelty": "have a template never seen in training", "novel_set": "no training session held",
                      "autolog": "could not rebuild this session's template and level counts",
                      "supervised_lstm": "That window ends at line"}
    # One planted line in the middle, and three leading ones (DeepLog at medium allows one miss).
    candidates = [*world.planted_sessions,
                  *(([0, 0, 0, *t], [int(Level.FATAL)] * 3 + lv) for t, lv in world.sessions)]
    explained: set[str] = set()
    for det in pipe.detectors:
        for tokens, levels in candidates:
            score = det.score_session(tokens, levels)
            if score is None or not score.fired:
                continue
            (e,) = pipe.explainer.explain_session(tokens, [score])
            assert "flagged by" not in e.text
            assert expected_words.get(det.name, "") in e.text, e.text
            event = session_event(SessionVerdict("blk_1", tuple(tokens), (score,), 2.0, Verdict.WATCH, 0.0, (e,)),
                                  0.0, "cpu")
            assert e.text.splitlines()[0] in event["body"]
            explained.add(det.name)
            break
    assert {"novelty", "novel_set"} <= explained
    trained = {m.name for m in MODELS if m.name in world.bundle.models}
    assert not (trained & {"deeplog", "lstm_ae"}) - explained


def _scan(bundle: Bundle, records: list[Record], sensitivity: Sensitivity, cascade: bool) -> tuple[Any, list[Any]]:
    from agent.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline(bundle, PipelineConfig(parser=PARSER, sensitivity=sensitivity, cascade=cascade))
    out = []
    for start in range(0, len(records), 1024):
        out.extend(pipe.process(records[start : start + 1024], 0.0))
    out.extend(pipe.close(0.0))
    return pipe, out


def test_the_cascade_changes_no_output(world: World) -> None:
    """Real HDFS lines with planted anomalies, every registered model: the pipeline emits the same
    outputs (`tests/cascade_outputs.py`) with and without the cascade, at every sensitivity, with
    the bundle's own vote and with DeepLog and the LSTM-AE voting (then their sessions are judged
    in batches and the other learned models only explain)."""
    from cascade_outputs import assert_same_outputs

    records = [Record(c.line.line.raw, "hdfs") for c in world.planted]
    ensemble = world.bundle.manifest.get("ensemble", {})
    voting = {"deeplog", "lstm_ae"} & set(world.bundle.models)
    mixed = {**ensemble, "members": {name: ({**m, "levels": ["low", "medium", "high"]} if name in voting else m)
                                     for name, m in ensemble.get("members", {}).items()}}
    bundles = [world.bundle, Bundle(world.bundle.path, {**world.bundle.manifest, "ensemble": mixed})]
    witnessed = 0
    for bundle in bundles:
        for sensitivity in Sensitivity:
            _, expected = _scan(bundle, records, sensitivity, cascade=False)
            pipe, got = _scan(bundle, records, sensitivity, cascade=True)
            assert_same_outputs(got, expected, pipe.cascade.witness_names)
            assert not voting & pipe.cascade.witness_names or bundle is world.bundle
            witnessed += len(pipe.cascade.witness_names)
    assert witnessed > 0
