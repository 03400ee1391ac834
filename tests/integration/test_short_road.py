"""The pipeline's short road changes no verdict: the same real stream through both roads.

One bundle with all four learned models (small settings, trained through the real trainer on
the first BGL lines, entity = component, LogBERT on its default schedule) scans the next BGL
lines twice: with the short road (`PipelineConfig.short_road`, the default) and without it.
Every line's verdict, combined score and detector scores, and every anomaly (with its
explanations and incident), incident and session verdict must be the same, in the same order;
and the short road must actually have carried a good share of the lines. Without observers (the agent's case:
no `LineResult` is built for a short-road line) the outputs must be the same too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import need

from agent.detectors.cascade import Cascade, Judged, Session, SessionMemo
from agent.ensemble import Ensemble
from agent.incidents import IncidentGrouper
from agent.models import find
from agent.parsing import ParserConfig
from agent.pipeline import Pipeline, PipelineConfig
from agent.reader import iter_records
from agent.types import (
    Anomaly,
    DetectorKind,
    Incident,
    LineResult,
    Output,
    Record,
    SessionVerdict,
    Verdict,
)

pytestmark = pytest.mark.timeout(600)

TRAIN_LINES = 2000
SCAN_LINES = 4000
PARSER = ParserConfig(log_format="bgl", entity="component", multiline=False)
SMALL: dict[str, dict[str, Any]] = {
    "deeplog": {"embed_dim": 8, "hidden": 16, "layers": 1},
    "lstm_ae": {"embed_dim": 8, "level_dim": 2, "hidden": 16, "latent": 8},
    "logbert": {"hidden": 16, "layers": 1, "heads": 2, "ff": 32, "severity_dim": 4, "parity_windows": 16},
}
MODELS = ("isolation_forest", "deeplog", "lstm_ae", "logbert")


@pytest.fixture(scope="module")
def stream(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    """A bundle trained on the first BGL lines (all four models) and the lines after them."""
    from trainer.train import TrainOptions, train

    path = data_dir / "bgl" / "BGL_14k.log"
    need(path.is_file(), f"{path} is missing")
    records = list(iter_records(path))
    options = {}
    for name, small in SMALL.items():
        spec = find(name)
        assert spec is not None
        options[name] = replace(spec.default_options(), **small)
    out = tmp_path_factory.mktemp("short-road") / "bundle"
    train(records[:TRAIN_LINES], TrainOptions(
        output=out, parser=PARSER, models=MODELS, device="cpu", seed=7, progress=False, model_options=options,
        epochs=1, learning_rate=1e-2, batch_size=128, max_train_seconds=10.0))
    return out, records[TRAIN_LINES : TRAIN_LINES + SCAN_LINES]


def _scan(bundle: Path, records: Sequence[Record], short_road: bool, observe: bool, storm_road: bool = True,
          raw: list[Output] | None = None, max_new_behaviour: int | None = None
          ) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], Pipeline]:
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(short_road=short_road, storm_road=storm_road))
    if max_new_behaviour is not None:  # the grouper forgets which incident reports a new template
        pipe.grouper = IncidentGrouper(replace(pipe.grouper.config, max_new_behaviour=max_new_behaviour),
                                       profile=pipe.bundle.read_json("profile.json"))
    lines: list[tuple[object, ...]] = []

    def seen(r: LineResult) -> None:
        lines.append((r.line.line.raw, r.line.template_id, r.verdict, r.score, r.scores))

    if observe:
        pipe.observers.append(seen)
    outputs: list[Output] = []
    for start in range(0, len(records), 1000):
        outputs.extend(pipe.process(records[start : start + 1000], 0.0))
    outputs.extend(pipe.close(0.0))
    if raw is not None:
        raw.extend(outputs)
    return lines, [_key(o) for o in outputs], pipe


def _key(o: Output) -> tuple[object, ...]:
    if isinstance(o, Anomaly):
        return ("anomaly", o.line.line.raw, o.verdict, o.score, o.scores, o.explanations, o.incident_id)
    if isinstance(o, Incident):
        return ("incident", o)
    if isinstance(o, SessionVerdict):
        return ("session", o)
    return ("line", o.line.line.raw, o.verdict, o.score)


def test_short_road_gives_every_line_the_full_roads_verdict(stream: tuple[Path, list[Record]]) -> None:
    """Line for line, the short road and the full road agree on a real BGL stream."""
    bundle, records = stream
    full_lines, full_out, full = _scan(bundle, records, short_road=False, observe=True)
    short_lines, short_out, short = _scan(bundle, records, short_road=True, observe=True)
    assert full.short_road is None
    assert short.short_road is not None
    assert len(short_lines) == len(full_lines) == len(records)
    for i, (a, b) in enumerate(zip(full_lines, short_lines, strict=True)):
        assert a == b, f"line {i}: full road {a[2:4]}, short road {b[2:4]}: {a[0]}"
    assert short_out == full_out
    anomalies = sum(1 for o in full_out if o[0] == "anomaly")
    assert anomalies > 0  # the slice has anomalies: both roads met lines the short road cannot clear
    # normal lines seen before in the same context took the short road (with observers, the
    # scores of detectors outside the vote must be known too, so fewer lines qualify)
    assert short.short_road.taken > 0.15 * len(records), short.short_road.taken
    assert short.lines == full.lines == len(records)

    # the agent's case: no observers, so no LineResult is built for a short-road line
    _, quiet_out, quiet = _scan(bundle, records, short_road=True, observe=False)
    assert quiet_out == full_out
    assert quiet.short_road is not None
    assert quiet.short_road.taken > max(0.3 * len(records), short.short_road.taken), quiet.short_road.taken


def test_sessions_judged_once_per_shape_give_the_same_outputs(stream: tuple[Path, list[Record]]) -> None:
    """Ended sessions judged through the memo (`SessionMemo`, on with the cascade) give the very
    outputs of judging every session with every detector; BGL components repeat their shapes."""
    from cascade_outputs import assert_same_outputs

    bundle, records = stream
    outputs = {}
    pipes = {}
    for cascade in (False, True):
        pipe = pipes[cascade] = Pipeline.from_bundle(bundle, PipelineConfig(cascade=cascade))
        got: list[Output] = []
        for start in range(0, len(records), 1000):
            got.extend(pipe.process(records[start : start + 1000], 0.0))
        got.extend(pipe.close(0.0))
        outputs[cascade] = got
    assert pipes[False].session_memo is None
    memo = pipes[True].session_memo
    assert memo is not None and memo.hits > 0 and memo.misses > 0, (memo.hits, memo.misses)
    assert any(isinstance(o, SessionVerdict) for o in outputs[False])
    assert_same_outputs(outputs[True], outputs[False], pipes[True].cascade.witness_names)


class CountingCascade(Cascade):
    """The pipeline's own cascade, counting its session-judging calls (the sessions in each)."""

    calls: list[int]

    def judge_sessions(self, sessions: Sequence[Session], ensemble: Ensemble, kinds: Mapping[str, DetectorKind],
                       memo: SessionMemo | None = None) -> list[Judged | None]:
        self.calls.append(len(sessions))
        return super().judge_sessions(sessions, ensemble, kinds, memo)


def _counting(pipe: Pipeline) -> list[int]:
    cascade = CountingCascade(pipe.cascade.detectors, pipe.cascade.witness_names)
    object.__setattr__(cascade, "calls", [])
    pipe.cascade = cascade
    return cascade.calls


def test_sessions_ending_in_one_micro_batch_are_judged_together(stream: tuple[Path, list[Record]]) -> None:
    """The sessions the log clock ends during a micro-batch are judged in one call after its loop
    (`Pipeline._judge_ended`), not one call per sweep: the stream scanned as `logdetect scan`
    batches it and one record per `process` call (each sweep's sessions then judged alone, as
    before) gives the same outputs, with fewer judging calls."""
    bundle, records = stream
    records = records[:2000]
    runs: dict[int, tuple[list[tuple[object, ...]], list[int]]] = {}
    for step in (1000, 1):
        pipe = Pipeline.from_bundle(bundle, PipelineConfig())
        calls = _counting(pipe)
        outputs: list[Output] = []
        for start in range(0, len(records), step):
            outputs.extend(pipe.process(records[start : start + step], 0.0))
        outputs.extend(pipe.close(0.0))
        runs[step] = [_key(o) for o in outputs], calls
    (batched, together), (alone_out, alone) = runs[1000], runs[1]
    # (a micro-batch's session verdicts go out before its lines' outputs, at any batching)
    sessions = [o for o in batched if o[0] == "session"]
    assert sessions == [o for o in alone_out if o[0] == "session"]
    assert sessions
    assert [o for o in batched if o[0] != "session"] == [o for o in alone_out if o[0] != "session"]
    assert sum(together) == sum(alone) > 0  # every ended session judged, once
    assert len(together) < len(alone), (len(together), len(alone))


def test_an_observer_that_comes_late_sees_what_one_there_from_the_start_sees(
        stream: tuple[Path, list[Record]]) -> None:
    """Without observers and without a keyed member in the vote, the short road builds no keys
    (no feature row, no context ids: `ShortRoad.needs_keys`); an observer attached later makes it
    rebuild them from each entity's history (`ShortRoad.track`). The lines after it get exactly
    the verdicts and scores that an observer there from the start sees, and the outputs are the
    same."""
    bundle, records = stream
    early_lines, early_out, _ = _scan(bundle, records, short_road=True, observe=True)
    pipe = Pipeline.from_bundle(bundle, PipelineConfig())
    assert pipe.short_road is not None
    late_lines: list[tuple[object, ...]] = []
    outputs: list[Output] = []
    keyless = 0
    for start in range(0, len(records), 1000):
        if start == 2000:
            pipe.observers.append(lambda r: late_lines.append((r.line.line.raw, r.line.template_id, r.verdict,
                                                               r.score, r.scores)))
        outputs.extend(pipe.process(records[start : start + 1000], 0.0))
        keyless += not pipe.short_road.tracking
    outputs.extend(pipe.close(0.0))
    assert [_key(o) for o in outputs] == early_out
    assert late_lines == early_lines[2000:]
    # context ids are kept only while a context-keyed score votes (or someone observes)
    assert keyless == (0 if pipe.short_road.needs_ids(False) else 2)


def test_context_ids_are_kept_only_for_a_voter_keyed_by_them(stream: tuple[Path, list[Record]]) -> None:
    """A vote whose only keyed member is the Isolation Forest (keyed by the feature row) checks
    and teaches the short road by the row alone: no context ids are advanced for it
    (`ShortRoad.needs_ids`); a sequence model in the vote, or an observer, needs them."""
    from agent.short_road import ROW, Keyed

    bundle, _ = stream
    road = Pipeline.from_bundle(bundle, PipelineConfig()).short_road
    assert road is not None and road.contexts  # the bundle's sequence models are keyed by contexts
    forest = [k for k in road.keyed if k.slot == ROW]
    sequence = [k for k in road.keyed if k.slot != ROW]
    assert forest and sequence
    road.members = [Keyed(k.name, k.slot, True) for k in forest]
    assert road.needs_keys(False) and not road.needs_ids(False)
    assert road.needs_ids(True)  # observers want every detector's score
    road.members.append(Keyed(sequence[0].name, sequence[0].slot, True))
    assert road.needs_ids(False)


def test_a_forest_voting_alone_settles_unknown_rows_with_their_batch(stream: tuple[Path, list[Record]]) -> None:
    """With the Isolation Forest the vote's only learned member (as on the incident day at
    medium), a line whose feature row's score is not known yet waits for its batch's one forest
    call (`ShortRoad.settles_rows`, `Pipeline._settle`): only the lines whose row is not clear take
    the full road, in their place; a line due for LogBERT (a witness here) takes the short road
    (`ShortRoad.due_matters`). Without observers the outputs are the full road's, and every row
    the short road holds as clear is clear by the forest's whole ONNX graph, scored afresh."""
    import numpy as np

    from agent.bundle import Bundle, load_bundle
    from agent.short_road import ROW

    path, records = stream
    loaded = load_bundle(path)
    ensemble = loaded.manifest["ensemble"]
    members = {name: ({**m, "levels": ["low", "medium", "high"]} if name == "isolation_forest" else m)
               for name, m in ensemble["members"].items()}
    bundle = Bundle(loaded.path, {**loaded.manifest, "ensemble": {**ensemble, "members": members}})

    def scan(short_road: bool) -> tuple[list[tuple[object, ...]], Pipeline]:
        pipe = Pipeline(bundle, PipelineConfig(short_road=short_road))
        outputs: list[Output] = []
        for start in range(0, len(records), 1000):
            outputs.extend(pipe.process(records[start : start + 1000], 0.0))
        outputs.extend(pipe.close(0.0))
        return [_key(o) for o in outputs], pipe

    full_out, _ = scan(short_road=False)
    short_out, short = scan(short_road=True)
    road = short.short_road
    assert road is not None and [k.name for k in road.members] == ["isolation_forest"]
    assert road.settles_rows(False) and not road.settles_rows(True)
    assert not road.due_matters(False) and road.scheduled  # LogBERT is scheduled, and a witness
    assert short_out == full_out
    assert sum(1 for o in full_out if o[0] == "anomaly") > 0
    assert road.settled > 0.1 * len(records), road.settled
    assert road.taken > 0.8 * len(records), road.taken

    # the rows held clear (taught by the full road or settled with their batch), scored again by
    # the whole ONNX graph in a fresh pipeline: none fired, the vote on each alone NORMAL
    (k,) = road.members
    assert k.slot == ROW and k.scores
    forest = next(d for d in Pipeline(bundle, PipelineConfig()).detectors if d.name == k.name)
    forest.scorer.trees = None  # type: ignore[attr-defined]  # the whole graph, not the numpy trees
    rows = list(k.scores)
    again = forest.score_rows(rows)  # type: ignore[attr-defined]
    for row, s in zip(rows, again, strict=True):
        assert not s.fired and short.ensemble.combine((s,), short.kinds)[1] is Verdict.NORMAL, row
        assert np.float32(s.score) == np.float32(k.scores[row].score)


def test_a_storms_repeats_take_the_storm_road_and_change_nothing_else(
        stream: tuple[Path, list[Record]], data_dir: Path) -> None:
    """BGL's `iar … dear …` storm (a template never seen in training, on hundreds of nodes within
    minutes): with the storm road (`PipelineConfig.storm_road`, the default) a repeat its incident
    will only count gets no explanation text, no witness score and no event (without observers:
    no line object and no model or ensemble call either, the counted road), yet every line's
    verdict and scores, every anomaly event (explanations, incident id), incident and session
    verdict are the full road's, with and without observers. The storm is one story: few anomaly
    events for many anomalous lines over many nodes, and the counts agree everywhere."""
    from loghub_halves import assert_incident_counts_agree

    bundle, _ = stream
    # BGL_14k's lines 9,000-10,499: the start of its `iar … dear …` storm (from line 9,175)
    records = list(iter_records(data_dir / "bgl" / "BGL_14k.log"))[9000:10500]
    full_lines, full_out, full = _scan(bundle, records, short_road=True, observe=True, storm_road=False)
    storm_lines, storm_out, storm = _scan(bundle, records, short_road=True, observe=True)
    assert storm_lines == full_lines and storm_out == full_out
    assert full.storm_counted == 0 and storm.storm_counted > 0.5 * storm.anomalies, storm.storm_counted
    raw: list[Output] = []
    _, quiet_out, quiet = _scan(bundle, records, short_road=True, observe=False, raw=raw)
    assert quiet_out == full_out
    # Without observers most of them took the counted road (agent/counted_road.py: the vote is the
    # novelty rule's alone, so a never-seen line's verdict is known from its token; no line object,
    # no model, no ensemble); with observers none did (every line's scores are wanted).
    assert quiet.counted_road > 0.9 * quiet.storm_counted, (quiet.counted_road, quiet.storm_counted)
    assert storm.counted_road == 0 and full.counted_road == 0
    # each counted-road line counted once by the novelty rule, as scoring it would have
    assert quiet.detector_stats()["novelty"]["new_lines"] == storm.detector_stats()["novelty"]["new_lines"]
    assert_incident_counts_agree(quiet, raw)
    anomalies = [o for o in raw if isinstance(o, Anomaly)]
    iar_events = [a for a in anomalies if "iar" in a.line.template]
    incidents = {o.incident_id: o for o in raw if isinstance(o, Incident)}
    (inc,) = {incidents[a.incident_id] for a in iar_events if a.incident_id is not None}
    nodes = {a.line.line.entity for a in iar_events}
    # one incident holds the storm: ≥ 300 anomalous lines on more than 50 nodes (50 named, "+N
    # more"), a handful of anomaly events (the first 3, then at 4, 8, 16, ... lines), the rest counted
    assert inc.anomaly_count >= 300 and len(iar_events) <= 20, (inc.anomaly_count, len(iar_events))
    assert len(inc.entities) == 51 and inc.entities[-1].startswith("+"), inc.entities
    assert len(nodes) == len(iar_events)  # each emitted one on a node of its own here



def test_a_counted_road_line_emitted_after_all_takes_the_full_road_in_its_turn(
        stream: tuple[Path, list[Record]], data_dir: Path) -> None:
    """A never-seen line whose template no incident reports yet when its batch is read is only
    predicted counted (its first line in the batch opens or joins the incident); in its turn it is
    counted, or takes the full road it would have taken. A grouper that remembers one new
    template's incident at a time (`max_new_behaviour`) makes the first line of a storm's batch
    join an incident that already counts the template, so some predictions fail: the outputs are
    still the full road's."""
    bundle, _ = stream
    records = list(iter_records(data_dir / "bgl" / "BGL_14k.log"))[9000:10500]
    _, full_out, _ = _scan(bundle, records, short_road=True, observe=False, storm_road=False, max_new_behaviour=1)
    _, quiet_out, quiet = _scan(bundle, records, short_road=True, observe=False, max_new_behaviour=1)
    assert quiet_out == full_out
    assert quiet.counted_road > 0 and quiet.counted_late > 0, (quiet.counted_road, quiet.counted_late)
