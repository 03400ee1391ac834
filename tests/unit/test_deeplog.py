"""DeepLog: training on real HDFS sessions, ONNX parity, serving rules and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog

from agent.bundle import load_bundle
from agent.detectors.base import load_detectors
from agent.detectors.deeplog import DeepLogDetector, DeepLogScorer, window_before
from agent.detectors.section import ModelLoad, ModelSection
from agent.errors import ModelError
from agent.onnx_session import OnnxModel, RuntimeOptions
from agent.types import Level, LineContext, ParsedLine, TemplatedLine
from trainer.sequences import encode, next_token_rows

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def bundle(hdfs: tuple[list[list[int]], dict[int, int]], tmp_path_factory: pytest.TempPathFactory,
           torch_available: bool) -> Any:
    """A DeepLog bundle trained briefly on real HDFS sessions."""
    from trainer.deeplog import DeepLogOptions
    from trainer.torch_base import FitConfig
    from trainer.training_data import TrainingData, train_one

    tokens, vocab = hdfs
    data = TrainingData.of_sequences(tokens[:600], len(vocab) + 1, tokens[1500:1800])
    return load_bundle(train_one("deeplog", data, tmp_path_factory.mktemp("deeplog") / "bundle",
                                 DeepLogOptions(embed_dim=8, hidden=24),
                                 FitConfig(epochs=3, batch_size=128, progress=False, device="cpu")))


def detector(bundle: Any, **overrides: Any) -> DeepLogDetector:
    """The served DeepLog detector, with section values overridden."""
    section = {**bundle.models["deeplog"], **overrides}
    return DeepLogDetector.from_bundle(ModelLoad(bundle, ModelSection.parse("deeplog", section)))


def context(history: list[int]) -> LineContext:
    """A line context whose entity history is `history`."""
    parsed = ParsedLine(raw="x", message="x", timestamp=0.0, level=Level.INFO, entity="blk_1")
    line = TemplatedLine(parsed, 1, "x", (), history[-1] if history else 0, False, 0.0)
    return LineContext(line, np.zeros(1, dtype=np.float32), tuple(history), (int(Level.INFO),) * len(history))


def test_manifest_section_records_what_serving_needs(bundle: Any) -> None:
    """The section names the file, window, top-g, vocabulary, thresholds and parity."""
    s = bundle.models["deeplog"]
    assert s["type"] == "deeplog" and (bundle.path / s["file"]).is_file()
    assert (s["window"], s["top_g"], s["vocab_size"], s["opset"]) == (10, 9, 15, 17)
    assert set(s["session_thresholds"]) == {"low", "medium", "high"}
    assert s["parity_max_abs_diff"] <= 1e-4
    assert (bundle.path / s["curve"]).stat().st_size > 1000
    assert s["rare"]["tokens"], "HDFS has templates below the 0.1 % cut (E6, E16, E18, E25)"


def test_torch_and_onnx_runtime_agree_on_real_windows(
    hdfs: tuple[list[list[int]], dict[int, int]], tmp_path: Path, torch_available: bool
) -> None:
    """Parity on random real windows at several batch sizes; a changed model is refused."""
    import torch

    from trainer.deeplog import DeepLogOptions, DeepLogTrainer
    from trainer.export import check_parity, export_torch
    from trainer.torch_base import FitConfig

    tokens, vocab = hdfs
    x, y, c = next_token_rows(tokens[:300], 10, len(vocab) + 1)
    trainer = DeepLogTrainer(len(vocab) + 1, DeepLogOptions(embed_dim=8, hidden=16),
                             FitConfig(epochs=1, progress=False, device="cpu"))
    trainer.fit(x, y, c)
    path = tmp_path / "m.onnx"
    export_torch(trainer.model, (torch.as_tensor(x[:2]),), path, ["window"], ["probs"])
    rng = np.random.default_rng(0)
    for n in (1, 37, 300):
        rows = x[rng.choice(len(x), size=min(n, len(x)), replace=False)]
        assert check_parity(trainer.model, path, {"window": rows}, "probs") <= 1e-4
    with torch.no_grad():  # (a constant added to every logit would not change the softmax)
        trainer.model.head.weight.add_(torch.randn_like(trainer.model.head.weight))
    with pytest.raises(ModelError):
        check_parity(trainer.model, path, {"window": x[:50]}, "probs")


def test_normal_sessions_are_quiet_and_unknown_templates_miss(
    bundle: Any, hdfs: tuple[list[list[int]], dict[int, int]]
) -> None:
    """Held-out normal sessions rarely miss; an unknown template id becomes UNK and misses."""
    tokens, vocab = hdfs
    det = detector(bundle)
    held_out = tokens[3000:3300]
    misses = [det.score_session(s, []).details[0][1] for s in held_out]  # type: ignore[union-attr]
    assert np.mean([m == 0 for m in misses]) > 0.7  # a 3-epoch model; the full one: > 0.99
    plain = encode([[5, 5, 5, 22, 11, 9]], vocab)[0]
    odd = encode([[5, 5, 5, 22, 99, 11, 9]], vocab)[0]
    assert odd[4] == 0  # template id 99 was never seen: UNK
    base, score = det.score_session(plain, []), det.score_session(odd, [])
    assert base is not None and score is not None and dict(score.details)["unknown"] == 1
    assert score.score >= base.score + 1  # the UNK line itself is a miss
    assert det.score_session(odd * 3, []).fired  # type: ignore[union-attr]


def test_empty_and_short_sessions(bundle: Any) -> None:
    """An empty session is judged (its END), a session shorter than the window is padded."""
    det = detector(bundle)
    empty = det.score_session([], [])
    assert empty is not None and dict(empty.details)["positions"] == 1
    short = det.score_session([4, 4], [])
    assert short is not None and dict(short.details)["positions"] == 3
    assert window_before([7, 8], 2, 5, 16) == (16, 16, 16, 7, 8)
    assert det.score_lines([context([])]) == [None]


def test_score_lines_one_call_per_micro_batch_memoised(
    bundle: Any, hdfs: tuple[list[list[int]], dict[int, int]]
) -> None:
    """Many entities' lines: one ONNX call per `max_batch` distinct windows, repeated windows
    answered from the memo, and the explainer's facts (expected next tokens with probabilities,
    the actual token)."""
    tokens, _ = hdfs
    det = detector(bundle)
    contexts = [context(s[: k + 1]) for s in tokens[:40] for k in range(len(s))]
    before, before_rows = det.scorer.calls, det.scorer.rows
    out = det.score_lines(contexts)
    assert det.scorer.calls - before == -(-(det.scorer.rows - before_rows) // det.scorer.max_batch)
    assert all(o is not None for o in out)
    assert 0 < det.scorer.rows - before_rows < len(contexts) / 3  # duplicates ran once
    again = det.score_lines([context(s[: k + 1]) for s in tokens[40:80] for k in range(len(s))])
    assert all(o is not None for o in again)
    stats = det.stats()
    assert stats["cache_hits"] > 0 and 0 < stats["hit_ratio"] < 1
    first = dict(out[0].details)  # type: ignore[union-attr]
    assert first["actual"] == contexts[0].history[-1]
    assert len(first["expected"]) == 5 and all(0.0 <= p <= 1.0 for _, p in first["expected"])
    assert sum(o.fired for o in out if o is not None) < 0.05 * len(out)


def test_manifest_window_disagreeing_with_onnx_is_refused(bundle: Any) -> None:
    """A bundle whose ONNX input shape disagrees with the manifest fails at load, clearly."""
    model = OnnxModel(bundle.file("deeplog.onnx"))
    with pytest.raises(ModelError, match="windows of 10"):
        DeepLogScorer(model, {**bundle.models["deeplog"], "window": 7})
    with pytest.raises(ModelError, match="no input"):
        DeepLogScorer(model, {**bundle.models["deeplog"], "input": "tokens"})


def test_cuda_request_without_cuda_falls_back_with_one_warning(bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device cuda` on a CPU-only host serves on CPU and warns once, not per model."""
    import agent.onnx_session as onnx_session

    monkeypatch.setattr(onnx_session, "_warned_no_cuda", False)
    with structlog.testing.capture_logs() as logs:
        dets = load_detectors(bundle, RuntimeOptions(device="cuda"))
        load_detectors(bundle, RuntimeOptions(device="cuda"))
    assert isinstance(dets[0], DeepLogDetector)
    assert dets[0].scorer.model.provider == onnx_session.CPU
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["cuda_unavailable"]


def test_training_cuda_request_falls_back_to_cpu(torch_available: bool) -> None:
    """Asking for CUDA without one trains on CPU and logs why."""
    from trainer.torch_base import choose_device

    with structlog.testing.capture_logs() as logs:
        assert choose_device("cuda") == "cpu"
    assert any(e["event"] == "cuda_unavailable_training_on_cpu" for e in logs)
