"""AutoLog dense autoencoder: trained on held-back HDFS sessions with DeepLog's scores as an input,
served from ONNX; anomalous HDFS blocks score above normal ones; inputs are shared, not rescored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.bundle import BundleWriter, load_bundle
from agent.detectors.autolog import AutoLogDetector
from agent.detectors.base import judge_session, load_detectors
from agent.detectors.section import ModelLoad
from agent.types import Level, Sensitivity

pytestmark = pytest.mark.torch

FIT = {"epochs": 4, "batch_size": 128, "lr": 3e-3, "progress": False, "device": "cpu"}


def _train(out: Path, train: list[list[int]], val: list[list[int]], vocab_size: int) -> Path:
    """A bundle with a small DeepLog and an AutoLog reading its scores, by their trainer functions."""
    from trainer.autolog import AutoLogOptions
    from trainer.autolog import fit_and_export as autolog_fit
    from trainer.deeplog import DeepLogOptions
    from trainer.deeplog import fit_and_export as deeplog_fit
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData

    info = int(Level.INFO)
    data = TrainingData.of_sequences(train, vocab_size, val, [[info] * len(s) for s in train],
                                     [[info] * len(s) for s in val])
    writer = BundleWriter(out)
    fit = FitConfig(**FIT)  # type: ignore[arg-type]
    writer.add_model("deeplog", deeplog_fit(data, writer, "deeplog", DeepLogOptions(embed_dim=8, hidden=16,
                                                                                     layers=1), fit, 0.01))
    writer.add_model("autolog", autolog_fit(data, writer, "autolog", AutoLogOptions(), fit, 0.01))
    return writer.finish()


@pytest.fixture(scope="module")
def bundle(hdfs: tuple[list[list[int]], dict[int, int]], tmp_path_factory: pytest.TempPathFactory,
           torch_available: bool) -> Any:
    """DeepLog trained on 400 normal HDFS sessions; AutoLog on 400 later ones DeepLog never saw."""
    import torch

    tokens, vocab = hdfs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread is faster, and the machine is shared
    try:
        return load_bundle(_train(tmp_path_factory.mktemp("autolog") / "bundle", tokens[:400], tokens[1500:1900],
                                  len(vocab) + 1))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def labelled(data_dir: Path, hdfs: tuple[list[list[int]], dict[int, int]]) -> tuple[list[list[int]], np.ndarray]:
    """300 labelled HDFS blocks (about half anomalous) as model tokens."""
    from trainer.sequences import encode, read_labelled

    seqs, labels = read_labelled(data_dir / "hdfs" / "deeplog" / "robust_log_train.csv")
    rng = np.random.default_rng(3)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == k), 150, replace=False) for k in (0, 1)]))
    return encode([seqs[i] for i in pick], hdfs[1]), labels[pick]


def _detector(bundle: Any) -> AutoLogDetector:
    return AutoLogDetector.from_bundle(ModelLoad.of(bundle, "autolog"))


def test_section_records_held_back_fit_inputs_and_parity(bundle: Any) -> None:
    """Fitted on held-back sessions with DeepLog's scores normalised; parity and thresholds recorded."""
    s = bundle.models["autolog"]
    assert s["training"]["fitted_on"] == "held-back" and s["calibration"]["on"] == "held-back"
    assert [x["name"] for x in s["inputs"]] == ["deeplog"]
    assert s["inputs"][0]["line"][1] > 0 and s["inputs"][0]["session"][1] > 0
    assert s["parity_max_abs_diff"] <= 1e-4
    assert s["thresholds"]["low"] >= s["thresholds"]["medium"] >= s["thresholds"]["high"]
    assert s["session_thresholds"]["low"] >= s["session_thresholds"]["high"]


def test_anomalous_hdfs_blocks_score_above_normal_ones(bundle: Any,
                                                       labelled: tuple[list[list[int]], np.ndarray]) -> None:
    """Labelled anomalous blocks: session errors and worst window errors above the normal blocks'."""
    from trainer.autolog import contexts_of

    det = _detector(bundle)
    seqs, labels = labelled
    info = int(Level.INFO)
    sessions = np.asarray([det.score_session(s, [info] * len(s)).score for s in seqs])  # type: ignore[union-attr]
    worst_window = []
    for k, s in enumerate(seqs):
        scores = det.score_lines(contexts_of(s, [info] * len(s), f"blk_{k}", 0, len(s)))
        worst_window.append(max(x.score for x in scores if x is not None))
    windows = np.asarray(worst_window)
    for scores, min_auc in ((sessions, 0.85), (windows, 0.65)):  # measured: 0.98 and 0.74 (DeepLog: 0.95, 0.66)
        normal, anomalous = scores[labels == 0], scores[labels == 1]
        assert np.median(anomalous) > np.quantile(normal, 0.75), (np.median(anomalous), np.quantile(normal, 0.75))
        # ranking: how often an anomalous block outscores a normal one (AUC)
        auc = (anomalous[:, None] > normal[None, :]).mean()
        assert auc >= min_auc, auc


def test_served_in_a_bundle_it_shares_deeplog_and_scores_the_same(
        bundle: Any, labelled: tuple[list[list[int]], np.ndarray]) -> None:
    """Loaded with the bundle, AutoLog reads the served DeepLog (no second DeepLog run; at session
    close, DeepLog's session score just computed) and gives the scores it gives served alone."""
    from trainer.autolog import contexts_of

    seqs, _ = labelled
    info = int(Level.INFO)
    contexts = [c for k, s in enumerate(seqs[:40]) for c in contexts_of(s, [info] * len(s), f"b{k}", 0, len(s))]
    served = {d.name: d for d in load_detectors(bundle)}
    autolog, deeplog = served["autolog"], served["deeplog"]
    assert isinstance(autolog, AutoLogDetector) and autolog.shared["deeplog"] is deeplog
    deeplog.score_lines(contexts)  # the pipeline scores DeepLog first ...
    rows = deeplog.stats()["rows"]
    together = autolog.score_lines(contexts)
    assert deeplog.stats()["rows"] == rows  # ... and AutoLog's read of it ran no DeepLog rows
    alone = _detector(bundle).score_lines(contexts)
    assert [s.score if s else None for s in together] == pytest.approx([s.score if s else None for s in alone])
    # at session close it reads DeepLog's session score from the ones just computed
    for s in seqs[:10]:
        judged = {x.detector: x for x in judge_session(list(served.values()), s, [0] * len(s))}
        assert judged["autolog"].score == pytest.approx(_detector(bundle).score_session(s, [0] * len(s)).score)  # type: ignore[union-attr]


def test_without_held_back_data_it_reads_no_other_model(hdfs: tuple[list[list[int]], dict[int, int]],
                                                       tmp_path: Path, torch_available: bool) -> None:
    """No held-back sessions: counts only (another model's scores on its own training data would leak)."""
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData, train_one

    tokens, vocab = hdfs
    data = TrainingData.of_sequences(tokens[:200], len(vocab) + 1)
    s = load_bundle(train_one("autolog", data, tmp_path / "b", fit=FitConfig(**FIT))).models["autolog"]  # type: ignore[arg-type]
    assert s["inputs"] == [] and s["training"]["fitted_on"] == "training"


def test_an_alert_names_the_entry_rebuilt_worst(bundle: Any, labelled: tuple[list[list[int]], np.ndarray]) -> None:
    """A fired window says which entry it rebuilt worst, and the explanation quotes it."""
    from agent.explain_models import ModelExplainer
    from trainer.autolog import contexts_of

    det = AutoLogDetector.from_bundle(ModelLoad.of(bundle, "autolog", sensitivity=Sensitivity.HIGH))
    seqs, labels = labelled
    info = int(Level.INFO)
    explainer = ModelExplainer({}, lambda t: f"template E{t}", lambda token: token, {"autolog": "autolog"})
    said = []
    for k in np.flatnonzero(labels == 1)[:40]:
        s = seqs[k]
        contexts = contexts_of(s, [info] * len(s), f"blk_{k}", 0, len(s))
        for ctx, score in zip(contexts, det.score_lines(contexts), strict=True):
            if score is not None and score.fired:
                details = dict(score.details)
                assert details["worst_entry"] in ("template_token", "level", "input")
                said += [e.text for e in explainer.explain(ctx, [score])]
    # The first line (what an event body quotes) says what it rebuilt worst.
    assert said and all(t.startswith("WINDOW PROFILE: AutoLog rebuilt worst ") for t in said)
    assert any("Rebuilt worst: the count of" in t or "Rebuilt worst: deeplog's score" in t for t in said), said[:3]
