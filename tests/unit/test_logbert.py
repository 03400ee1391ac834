"""LogBERT(-severity): training, ONNX export and parity, serving rules and bad input.

Tiny models (hidden 32, 1 layer, 2 epochs) on real data subsets keep this file well under its
120 s budget; the full-size figures come from `python -m trainer.eval.logbert`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.bundle import BundleWriter, load_bundle
from agent.detectors.logbert import LogBertDetector, sanitise
from agent.detectors.section import ModelLoad, ModelSection
from agent.errors import ModelError
from agent.types import Level, LineContext, ParsedLine, TemplatedLine

pytestmark = pytest.mark.torch

MAX_LEN = 16
BGL_LEVELS = {"INFO": Level.INFO, "WARNING": Level.WARN, "ERROR": Level.ERROR, "SEVERE": Level.ERROR,
              "FAILURE": Level.FATAL, "FATAL": Level.FATAL}


def _options(use_severity: bool) -> Any:
    from trainer.logbert import LogBertOptions

    return LogBertOptions(hidden=32, layers=1, heads=2, ff=64, severity_dim=8, max_len=MAX_LEN,
                          top_k=4, use_severity=use_severity, score_every_lines=3, parity_windows=32)


def _train(tmp: Path, name: str, seqs: list[list[int]], levels: list[list[int]] | None,
           val: list[list[int]], val_levels: list[list[int]] | None, vocab: int,
           use_severity: bool) -> Path:
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData, train_one

    data = TrainingData.of_sequences(seqs, vocab, val, levels, val_levels)
    return train_one("logbert", data, tmp / name, _options(use_severity),
                     FitConfig(epochs=2, batch_size=128, progress=False, seed=7), name=name)


def _hdfs_sessions(data_dir: Path) -> list[list[int]]:
    with (data_dir / "hdfs" / "deeplog" / "hdfs_train").open() as fh:
        return [[int(x) for x in line.split()] for line in fh if line.strip()]


@pytest.fixture(scope="module")
def hdfs_bundle(data_dir: Path, torch_available: bool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained on 1,500 real HDFS sessions (no levels: neutral severity), calibrated on 300 more."""
    sessions = _hdfs_sessions(data_dir)
    vocab = max(max(s) for s in sessions) + 1
    return _train(tmp_path_factory.mktemp("hdfs"), "logbert", sessions[:1500], None,
                  sessions[1500:1800], None, vocab, use_severity=True)


def _bgl_windows(data_dir: Path) -> tuple[list[list[int]], list[list[int]], int]:
    """BGL_2k as 10-line windows of (EventId tokens, levels) from the loghub structured CSV."""
    with (data_dir / "loghub_2k" / "BGL" / "BGL_2k.log_structured.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = sorted({r["EventId"] for r in rows}, key=lambda e: int(e[1:]))
    token = {e: i + 1 for i, e in enumerate(ids)}
    toks = [token[r["EventId"]] for r in rows]
    levs = [int(BGL_LEVELS.get(r["Level"], Level.UNKNOWN)) for r in rows]
    seqs = [toks[i : i + 10] for i in range(0, len(toks), 10)]
    levels = [levs[i : i + 10] for i in range(0, len(levs), 10)]
    return seqs, levels, len(ids) + 1


@pytest.fixture(scope="module")
def bgl_bundle(data_dir: Path, torch_available: bool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LogBERT-severity bundle trained briefly on real BGL windows."""
    seqs, levels, vocab = _bgl_windows(data_dir)
    return _train(tmp_path_factory.mktemp("bgl"), "logbert", seqs[:160], levels[:160],
                  seqs[160:], levels[160:], vocab, use_severity=True)


def _detector(bundle_path: Path, name: str = "logbert") -> LogBertDetector:
    bundle = load_bundle(bundle_path)
    section = bundle.models[name]
    return LogBertDetector.from_bundle(ModelLoad(bundle, ModelSection.parse(name, section)))


def test_manifest_section_records_layout_thresholds_and_parity(hdfs_bundle: Path) -> None:
    """The section carries vocabulary, severity vocabulary, masking, top-k, thresholds, centre."""
    section = load_bundle(hdfs_bundle).models["logbert"]
    assert section["type"] == "logbert"
    assert section["max_len"] == MAX_LEN and section["top_k"] == 4
    assert section["mask_ratio"] == pytest.approx(1 / section["mask_variants"])
    assert section["severity_vocab_size"] == len(Level)
    assert section["parity"]["max_abs_diff"] <= 1e-4
    for key in ("miss_thresholds", "distance_thresholds", "cosine_thresholds"):
        assert set(section[key]) == {"low", "medium", "high"}
        assert section[key]["low"] >= section[key]["high"]  # low sensitivity = fewer alerts
    assert len(section["centre"]) == len(section["window_centre"]) == 32
    assert (hdfs_bundle / "logbert_curve.png").stat().st_size > 0


def test_flags_anomalous_hdfs_sessions_more_than_normal_ones(hdfs_bundle: Path, data_dir: Path) -> None:
    """On labelled sessions the model fires far more on anomalies than on normal sessions."""
    with (data_dir / "hdfs" / "deeplog" / "robust_log_train.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[::4]  # the file is sorted by label: sample both
    det = _detector(hdfs_bundle)
    fired = np.array([det.score_session([int(x) for x in r["Sequence"].split()], []).fired  # type: ignore[union-attr]
                      for r in rows])
    label = np.array([r["label"] == "1" for r in rows])
    recall, fpr = fired[label].mean(), fired[~label].mean()
    assert recall > 0.3
    assert fpr < 0.1
    assert det.stats()["hit_ratio"] > 0.3  # HDFS sessions repeat: the memo cache answers most


def test_one_onnx_call_holds_every_masked_variant(hdfs_bundle: Path) -> None:
    """A session within max_len is one ONNX call of mask_variants + 1 rows; a repeat is a cache hit."""
    det = _detector(hdfs_bundle)
    session = [5, 5, 5, 22, 11, 9, 11, 9, 11, 9, 26, 26, 26]
    first = det.score_session(session, [])
    stats = det.stats()
    assert stats["calls"] == 1 and stats["rows"] == det.layout.mask_variants + 1
    again = det.score_session(session, [])
    assert det.stats()["calls"] == 1 and det.stats()["cache_hits"] == 1
    assert first == again


def test_sessions_ending_together_are_scored_in_few_calls(hdfs_bundle: Path, data_dir: Path) -> None:
    """Sessions that end together: their chunks go to the model in calls of up to `max_tokens`
    (`prefetch_sessions`), and each session's score is the one it gets judged alone."""
    sessions = _hdfs_sessions(data_dir)[2000:2040]
    alone = _detector(hdfs_bundle)
    expected = [alone.score_session(s, []) for s in sessions]
    together = _detector(hdfs_bundle)
    together.prefetch_sessions([(s, []) for s in sessions])
    assert [together.score_session(s, []) for s in sessions] == expected
    assert together.stats()["calls"] < alone.stats()["calls"] / 4


def test_long_session_is_split_into_chunks_and_scores_as_its_worst(hdfs_bundle: Path) -> None:
    """A session longer than max_len is scored in chunks and takes its worst chunk's score."""
    det = _detector(hdfs_bundle)
    normal = [5, 5, 5, 22, 11, 9, 11, 9, 11, 9, 26, 26, 26, 23, 23, 23, 21, 21, 21]
    long = (normal * 4)[: 3 * MAX_LEN + 5]
    result = det.score_session(long, [])
    assert result is not None
    assert dict(result.details)["chunks"] == 4
    parts = [det.score_session(long[i : i + MAX_LEN], []) for i in range(0, len(long), MAX_LEN)]
    assert result.score == pytest.approx(max(p.score for p in parts if p is not None))
    # The explanation's anchor: where the worst chunk starts in the session.
    worst = max(range(len(parts)), key=lambda k: parts[k].score)  # type: ignore[union-attr]
    assert dict(result.details)["chunk_start"] == worst * MAX_LEN


def test_unknown_templates_count_as_misses(hdfs_bundle: Path) -> None:
    """Tokens outside the vocabulary (or negative) are UNK, and UNK is always a miss."""
    det = _detector(hdfs_bundle)
    vocab = det.layout.vocab_size
    toks, _ = sanitise([5, vocab, vocab + 40, -3, 9], None, det.layout)
    assert toks == (5, 0, 0, 0, 9)
    result = det.score_session([vocab + 1] * 10, [])
    assert result is not None and result.fired
    details = dict(result.details)
    assert details["unknown_templates"] == 10 and details["misses"] == 10
    normal = [5, 5, 5, 22, 11, 9, 11, 9, 11, 9, 26, 26, 26, 23, 23, 23]
    one_new = det.score_session([*normal[:7], vocab + 7, *normal[7:12]], [])
    assert one_new is not None and one_new.fired  # unknown_fires: one new template is enough
    assert dict(one_new.details)["unknown_templates"] == 1
    # The missed positions (what the explanation names) are the misses, the new line among them.
    missed = dict(one_new.details)["missed_positions"]
    assert len(missed) == dict(one_new.details)["misses"] and 7 in missed
    assert dict(result.details)["missed_positions"] == tuple(range(10))


def test_unknown_severities_become_the_neutral_token(bgl_bundle: Path) -> None:
    """Unknown or missing severities score like the neutral severity."""
    det = _detector(bgl_bundle)
    window = [1, 2, 3, 1, 2]
    odd = det.score_session(window, [99, -1, 3, 1000, 3])
    neutral = det.score_session(window, [Level.UNKNOWN, Level.UNKNOWN, 3, Level.UNKNOWN, 3])
    assert odd == neutral
    short = det.score_session(window, [3])  # fewer levels than lines: the rest are unknown
    assert short == det.score_session(window, [3, 0, 0, 0, 0])


def test_severity_is_an_input_of_the_severity_model_only(bgl_bundle: Path, data_dir: Path,
                                                         tmp_path: Path) -> None:
    """The ablation model has no `levels` input; the severity model's scores depend on levels."""
    seqs, levels, vocab = _bgl_windows(data_dir)
    plain = _train(tmp_path, "plain", seqs[:160], levels[:160], seqs[160:], levels[160:], vocab,
                   use_severity=False)
    det_plain = _detector(plain, "plain")
    assert "levels" not in det_plain.scorer.model.input_names
    assert det_plain.score_session([1, 2, 3], [7, 7, 7]) == det_plain.score_session([1, 2, 3], [3, 3, 3])
    det = _detector(bgl_bundle)
    assert "levels" in det.scorer.model.input_names
    a = det.score_windows([((1, 2, 3, 4), (3, 3, 3, 3))])[0]
    b = det.score_windows([((1, 2, 3, 4), (7, 7, 7, 7))])[0]
    assert a.distance != b.distance


def _contexts(entity: str, tokens: list[int]) -> Iterator[LineContext]:
    for i in range(len(tokens)):
        parsed = ParsedLine(raw="x", message="x", timestamp=None, level=Level.INFO, entity=entity)
        line = TemplatedLine(parsed, template_id=tokens[i], template="t", params=(), token=tokens[i],
                             is_new=False, time=0.0)
        yield LineContext(line, np.zeros(1, dtype=np.float32), tuple(tokens[: i + 1]),
                          (int(Level.INFO),) * (i + 1))


def test_score_lines_scores_every_n_lines_per_entity_or_when_asked(hdfs_bundle: Path) -> None:
    """Lines are scored every n lines of an entity, or at once when the entity is requested."""
    det = _detector(hdfs_bundle)  # score_every_lines = 3 in the manifest
    a = list(_contexts("blk_a", [5, 5, 5, 22, 11, 9, 11]))
    b = list(_contexts("blk_b", [5, 22]))
    out = det.score_lines([a[0], b[0], a[1], b[1], a[2]])
    assert [o is not None for o in out] == [False, False, False, False, True]
    assert det.score_lines([a[3]]) == [None]
    det.request("blk_a")
    asked = det.score_lines([a[4]])[0]
    assert asked is not None and dict(asked.details)["positions"] == 5
    long = list(_contexts("blk_c", [5, 22, 11, 9] * 10))  # history longer than max_len: last max_len
    for ctx in long[:-1]:
        det.score_lines([ctx])
    det.request("blk_c")
    last = det.score_lines([long[-1]])[0]
    assert last is not None and dict(last.details)["positions"] == MAX_LEN


def _rewrite_section(src: Path, dst: Path, name: str, change: dict[str, Any]) -> Path:
    """A bundle whose ONNX file is `src`'s but whose manifest section says otherwise."""
    bundle = load_bundle(src)
    section = dict(bundle.models[name]) | change
    writer = BundleWriter(dst)
    (writer.path_for(section["file"])).write_bytes((src / section["file"]).read_bytes())
    writer.add_model(name, section)
    return writer.finish()


def test_onnx_file_that_does_not_match_the_manifest_is_refused(hdfs_bundle: Path, tmp_path: Path) -> None:
    """An ONNX file whose vocabulary or inputs differ from the manifest is refused."""
    vocab = load_bundle(hdfs_bundle).models["logbert"]["vocab_size"]
    wrong_vocab = _rewrite_section(hdfs_bundle, tmp_path / "v", "logbert", {"vocab_size": vocab + 5})
    with pytest.raises(ModelError, match="vocab_size"):
        _detector(wrong_vocab)
    no_severity = _rewrite_section(hdfs_bundle, tmp_path / "s", "logbert", {"use_severity": False})
    with pytest.raises(ModelError, match="inputs"):
        _detector(no_severity)
    wrong_len = _rewrite_section(hdfs_bundle, tmp_path / "l", "logbert", {"max_len": 64})
    with pytest.raises(ModelError, match="max_len"):
        _detector(wrong_len)
    json.loads((hdfs_bundle / "manifest.json").read_text())  # the original stays valid
    _detector(hdfs_bundle)
