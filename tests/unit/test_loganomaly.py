"""LogAnomaly: template vectors from the user's own templates, and never-seen templates judged by
their nearest training template, on real HDFS sessions and loghub's HDFS template texts."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.bundle import load_bundle
from agent.detectors.loganomaly import LogAnomalyDetector
from agent.detectors.section import ModelLoad, ModelSection
from agent.errors import BundleError
from agent.template_vectors import TemplateVectors, template_words
from agent.types import Level, LineContext, ParsedLine, TemplatedLine

pytestmark = pytest.mark.torch

TERMINATING = 11  # loghub E11: "<*>PacketResponder <*> for block <*> terminating<*>"
UNRELATED = "zq kernel panic quarantined <*> on shelf qq"  # no word HDFS ever wrote but "on"


def hdfs_texts(data_dir: Path, vocab: dict[int, int]) -> dict[int, str]:
    """Model token → loghub's HDFS template text (E-numbers are the session files' numbers)."""
    with (data_dir / "loghub_2k" / "HDFS" / "HDFS_templates.csv").open(newline="", encoding="utf-8") as fh:
        rows = [(int(r["EventId"].lstrip("E")), r["EventTemplate"]) for r in csv.DictReader(fh)]
    return {vocab[e]: text for e, text in rows if e in vocab}


@pytest.fixture(scope="module")
def trained(hdfs: tuple[list[list[int]], dict[int, int]], data_dir: Path, tmp_path_factory: pytest.TempPathFactory,
            torch_available: bool) -> tuple[Any, dict[int, str]]:
    """A LogAnomaly bundle trained briefly on real HDFS sessions, with the template texts."""
    from trainer.loganomaly import LogAnomalyOptions
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData, train_one

    tokens, vocab = hdfs
    texts = hdfs_texts(data_dir, vocab)
    data = TrainingData.of_sequences(tokens[:600], len(vocab) + 1, tokens[1500:1800], templates=texts)
    path = train_one("loganomaly", data, tmp_path_factory.mktemp("loganomaly") / "bundle",
                     LogAnomalyOptions(semantic_dim=16, hidden=24, layers=1),
                     FitConfig(epochs=3, batch_size=128, lr=1e-2, progress=False, device="cpu"))
    return load_bundle(path), texts


def detector(bundle: Any) -> LogAnomalyDetector:
    """The served detector at medium sensitivity."""
    return LogAnomalyDetector.from_bundle(ModelLoad.of(bundle, "loganomaly"))


def line(history: tuple[int, ...], template: str, level: Level = Level.INFO) -> LineContext:
    """A line of entity blk_1 with this history (ending with its own token), template text and level."""
    parsed = ParsedLine(raw=template, message=template, timestamp=0.0, level=level, entity="blk_1")
    tl = TemplatedLine(parsed, 1, template, (), history[-1], history[-1] == 0, 0.0)
    return LineContext(tl, np.zeros(1, dtype=np.float32), history, (int(Level.INFO),) * len(history))


def test_words_are_split_as_a_person_reads_them() -> None:
    """Masks and values drop out; camelCase and punctuation split; case folds."""
    assert template_words("<*>PacketResponder <*> for block <BLK> terminating<*>") == [
        "packet", "responder", "for", "block", "terminating"]
    assert template_words("BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.0.0.1:50010") == [
        "block", "name", "system", "add", "stored", "block", "block", "map", "updated"]


def test_section_and_vectors_ship_in_the_bundle_without_pickle(trained: tuple[Any, dict[int, str]]) -> None:
    """The words file is a plain npz read with pickles refused; every template has a unit vector."""
    bundle, texts = trained
    s = bundle.models["loganomaly"]
    assert s["type"] == "loganomaly" and s["parity_max_abs_diff"] <= 1e-4
    assert s["semantic"]["templates_with_text"] == len(texts) == s["vocab_size"] - 1
    vectors = TemplateVectors.load(bundle.file(s["semantic"]["file"]))
    norms = np.linalg.norm(vectors.templates, axis=1)
    assert norms[0] == 0.0 and np.allclose(norms[1:], 1.0, atol=1e-5)
    assert {"packet", "responder", "terminating", "block"} <= set(vectors.words)
    no_semantic = {k: v for k, v in s.items() if k != "semantic"}
    with pytest.raises(BundleError, match="template vectors"):
        LogAnomalyDetector.from_bundle(ModelLoad(bundle, ModelSection.parse("loganomaly", no_semantic)))


def test_a_template_one_word_away_from_a_known_one_is_judged_as_its_neighbour(
    trained: tuple[Any, dict[int, str]], hdfs: tuple[list[list[int]], dict[int, int]],
) -> None:
    """After training, a PacketResponder line ends with `closing` instead of `terminating`: a
    never-seen template (token 0). LogAnomaly judges it as E11 — the rank E11 has at that place
    of a real session, within top-g — while an unrelated never-seen template is a miss."""
    bundle, texts = trained
    tokens, vocab = hdfs
    known = vocab[TERMINATING]
    changed = texts[known].replace("terminating", "closing")
    det = detector(bundle)
    # real held-out sessions: the first position where E11 is logged and expected there
    cases: list[tuple[int, ...]] = []
    for session in tokens[2000:2400]:
        for i, t in enumerate(session):
            if t == known and i >= 3:
                cases.append(tuple(session[: i + 1]))
                break
    assert len(cases) >= 50
    as_known = det.score_lines([line(h, texts[known]) for h in cases])
    near = det.score_lines([line((*h[:-1], 0), changed) for h in cases])
    far = det.score_lines([line((*h[:-1], 0), UNRELATED) for h in cases])
    for k, n, f in zip(as_known, near, far, strict=True):
        assert k is not None and n is not None and f is not None
        details = dict(n.details)
        assert details["path"] == "approximated" and details["nearest_template"] == known
        assert details["similarity"] >= 0.85
        assert n.score == k.score  # scored by its neighbour, not as novelty
        assert n.score < f.score and f.fired and dict(f.details)["path"] == "unknown"
    assert sum(not n.fired for n in near) >= 0.95 * len(cases)
    assert det.stats()["neighbour_cache_hit_ratio"] > 0.9  # two texts, looked up once each


def test_a_never_seen_template_above_its_neighbours_levels_is_not_approximated(
    trained: tuple[Any, dict[int, str]], hdfs: tuple[list[list[int]], dict[int, int]],
) -> None:
    """The one-word variant of E11 passes for E11 at INFO, the highest level E11 had in training;
    logged at FATAL it is unknown and fires. The trainer records each token's highest level."""
    from trainer.loganomaly import max_levels
    from trainer.training_data import TrainingData

    assert max_levels(TrainingData.of_sequences([[1, 2, 1]], 3, train_levels=[[3, 6, 2]]), 3) == [0, 3, 6]
    assert max_levels(TrainingData.of_sequences([[1, 2]], 3), 3) == []  # no levels: not gated
    bundle, texts = trained
    tokens, vocab = hdfs
    known = vocab[TERMINATING]
    raw = dict(bundle.models["loganomaly"])
    raw["semantic"] = {**raw["semantic"], "max_level": [int(Level.INFO)] * raw["vocab_size"]}
    det = LogAnomalyDetector.from_bundle(ModelLoad(bundle, ModelSection.parse("loganomaly", raw)))
    session = next(s for s in tokens[2000:2400] if known in s[3:])
    history = (*session[: session.index(known, 3)], 0)
    changed = texts[known].replace("terminating", "closing")
    info, fatal, as_known = det.score_lines([line(history, changed), line(history, changed, Level.FATAL),
                                             line((*history[:-1], known), texts[known])])
    assert info is not None and fatal is not None and as_known is not None
    assert dict(info.details)["path"] == "approximated" and info.score == as_known.score
    assert dict(fatal.details)["path"] == "unknown" and fatal.fired and fatal.score > info.score
