"""LSTM autoencoder: training on real HDFS sessions, ONNX parity, serving and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.bundle import load_bundle
from agent.detectors.lstm_ae import LstmAeScorer, LstmAutoencoderDetector, window_ending
from agent.detectors.section import ModelLoad
from agent.errors import ModelError
from agent.onnx_session import OnnxModel
from agent.types import Level, LineContext, ParsedLine, TemplatedLine
from trainer.sequences import encode, reconstruction_rows

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def bundle(hdfs: tuple[list[list[int]], dict[int, int]], tmp_path_factory: pytest.TempPathFactory,
           torch_available: bool) -> Any:
    """An LSTM-autoencoder bundle trained briefly on real HDFS sessions."""
    from trainer.lstm_ae import LstmAeOptions
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData, train_one

    tokens, vocab = hdfs
    levels = [[int(Level.INFO)] * len(s) for s in tokens[:400]]
    data = TrainingData.of_sequences(tokens[:400], len(vocab) + 1, tokens[1500:1700], levels)
    return load_bundle(train_one("lstm_ae", data, tmp_path_factory.mktemp("lstm_ae") / "bundle",
                                 LstmAeOptions(embed_dim=8, level_dim=2, hidden=24, latent=12),
                                 FitConfig(epochs=3, batch_size=128, lr=3e-3, progress=False, device="cpu")))


def detector(bundle: Any) -> LstmAutoencoderDetector:
    """The served LSTM-autoencoder detector."""
    return LstmAutoencoderDetector.from_bundle(ModelLoad.of(bundle, "lstm_ae"))


def context(history: list[int]) -> LineContext:
    """A line context whose entity history is `history`."""
    parsed = ParsedLine(raw="x", message="x", timestamp=0.0, level=Level.INFO, entity="blk_1")
    line = TemplatedLine(parsed, 1, "x", (), history[-1] if history else 0, False, 0.0)
    return LineContext(line, np.zeros(1, dtype=np.float32), tuple(history), (int(Level.INFO),) * len(history))


def test_section_and_parity(bundle: Any) -> None:
    """Window, vocabulary, line and session thresholds, and torch/ORT parity are recorded."""
    s = bundle.models["lstm_ae"]
    assert (s["type"], s["window"], s["vocab_size"], s["inputs"]) == ("lstm_ae", 20, 15, ["tokens", "levels"])
    assert s["parity_max_abs_diff"] <= 1e-4
    assert s["thresholds"]["low"] >= s["thresholds"]["medium"] >= s["thresholds"]["high"]
    assert set(s["session_thresholds"]) == {"low", "medium", "high"}


def test_parity_on_random_real_windows(hdfs: tuple[list[list[int]], dict[int, int]], tmp_path: Path,
                                       torch_available: bool) -> None:
    """Torch and ONNX Runtime agree within 1e-4 on real windows at several batch sizes."""
    import torch

    from trainer.export import check_parity, export_torch
    from trainer.lstm_ae import LstmAeOptions, LstmAeTrainer
    from trainer.torch_base import FitConfig

    tokens, vocab = hdfs
    toks, lvls, counts = reconstruction_rows(tokens[:200], None, 20, len(vocab) + 1)
    trainer = LstmAeTrainer(len(vocab) + 1, LstmAeOptions(hidden=16, latent=8),
                            FitConfig(epochs=1, progress=False, device="cpu"))
    trainer.fit(toks, lvls, counts)
    path = tmp_path / "ae.onnx"
    export_torch(trainer.model, (torch.as_tensor(toks[:2]), torch.as_tensor(lvls[:2])), path,
                ["tokens", "levels"], ["error"])
    rng = np.random.default_rng(1)
    for n in (1, 19, 256):
        idx = rng.choice(len(toks), size=min(n, len(toks)), replace=False)
        assert check_parity(trainer.model, path, {"tokens": toks[idx], "levels": lvls[idx]}, "error") <= 1e-4


def test_unknown_template_rebuilds_worse(bundle: Any, hdfs: tuple[list[list[int]], dict[int, int]]) -> None:
    """Replacing one template of normal sessions with UNK (an unknown template id) raises the error."""
    tokens, vocab = hdfs
    det = detector(bundle)
    worse = 0
    for s in tokens[2000:2050]:
        odd = encode([[99 if k == len(s) // 2 else t for k, t in enumerate(s)]], {**vocab})[0]
        assert 0 in odd
        a, b = det.score_session(s, []), det.score_session(odd, [])
        assert a is not None and b is not None
        worse += b.score > a.score
    assert worse >= 45


def test_empty_short_and_lines(bundle: Any, hdfs: tuple[list[list[int]], dict[int, int]]) -> None:
    """Empty and short sessions are scored (padded); lines without history are not; a micro-batch
    of many entities runs one ONNX call per `max_batch` distinct windows."""
    tokens, _ = hdfs
    det = detector(bundle)
    empty = det.score_session([], [])
    assert empty is not None and np.isfinite(empty.score)
    short = det.score_session([4, 4, 11], [3, 3, 3])
    assert short is not None and dict(short.details)["windows"] == 3
    assert window_ending([5, 6], [3], 2, 4, 16) == ((16, 16, 5, 6), (0, 0, 0, 0))  # misaligned levels: unknown
    contexts = [context(s[: k + 1]) for s in tokens[:40] for k in range(len(s))]
    before, rows_before = det.scorer.calls, det.scorer.rows
    out = det.score_lines([context([]), *contexts])
    assert out[0] is None and all(o is not None for o in out[1:])
    rows = det.scorer.rows - rows_before
    assert det.scorer.calls - before == -(-rows // det.scorer.max_batch)
    assert rows < len(contexts)


def test_manifest_window_disagreeing_with_onnx_is_refused(bundle: Any) -> None:
    """A manifest window or input list that disagrees with the ONNX graph is refused."""
    model = OnnxModel(bundle.file("lstm_ae.onnx"))
    with pytest.raises(ModelError, match="windows of 20"):
        LstmAeScorer(model, {**bundle.models["lstm_ae"], "window": 12})
    with pytest.raises(ModelError, match="no input"):
        LstmAeScorer(model, {**bundle.models["lstm_ae"], "inputs": ["tokens", "severity"]})


def test_warm_up_changes_no_score(bundle: Any, hdfs: tuple[list[list[int]], dict[int, int]]) -> None:
    """A session run once on zeros at load (`OnnxModel.warm_up`, as `ModelLoad.onnx` does) gives
    bit-identical outputs on real windows to a cold one, at several batch sizes."""
    tokens, vocab = hdfs
    toks, lvls, _ = reconstruction_rows(tokens[200:260], None, 20, len(vocab) + 1)
    warm, cold = OnnxModel(bundle.file("lstm_ae.onnx")), OnnxModel(bundle.file("lstm_ae.onnx"))
    assert warm.warm_up()
    for n in (1, 3, 64):
        feeds = {"tokens": toks[:n], "levels": lvls[:n]}
        for got, expected in zip(warm.run(feeds), cold.run(feeds), strict=True):
            assert np.array_equal(got, expected)
