"""Features on real logs: the same code at training and serving, with bounded state."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.features import FEATURE_NAMES, FeatureConfig, FeatureExtractor, feature_index
from agent.types import Level, ParsedLine, TemplatedLine


def _lines(data_dir: Path, n: int = 2000) -> list[TemplatedLine]:
    """HDFS_2k lines keyed by block id, with a crude template key (first 4 words) as token."""
    import re

    out = []
    tokens: dict[str, int] = {}
    for i, raw in enumerate((data_dir / "loghub_2k/HDFS/HDFS_2k.log").read_text().splitlines()[:n]):
        parts = raw.split(" ", 5)
        msg = parts[5]
        blk = re.search(r"blk_-?\d+", msg)
        key = " ".join(msg.split()[:3])
        tok = tokens.setdefault(key, len(tokens) + 1)
        level = Level.WARN if parts[3] == "WARN" else Level.INFO
        pl = ParsedLine(raw, msg, 1_226_000_000.0 + i, level, blk.group(0) if blk else "none")
        out.append(TemplatedLine(pl, tok, key, (), tok, False, pl.timestamp or 0.0))
    return out


def test_fit_matches_serving(data_dir: Path) -> None:
    """The rows `fit` returns are exactly what a fresh extractor computes line by line."""
    lines = _lines(data_dir)
    fitted, rows = FeatureExtractor.fit(lines)
    assert rows.shape == (len(lines), len(FEATURE_NAMES))
    replay = np.array([fitted.update(tl)[0] for tl in lines], dtype=np.float32)
    np.testing.assert_allclose(replay, rows, rtol=1e-6)


def test_transition_probability_and_novelty(data_dir: Path) -> None:
    """Transition probabilities lie in [0, 1] and an unseen template is novel."""
    lines = _lines(data_dir)
    fitted, rows = FeatureExtractor.fit(lines)
    trans = rows[:, feature_index("transition_prob")]
    assert ((trans >= 0) & (trans <= 1)).all()
    for tl in lines[:6]:
        fitted.update(tl)
    unseen = TemplatedLine(lines[5].line, 999, "x", (), 0, True, lines[5].time)
    row, _ = fitted.update(unseen)
    assert row[feature_index("new_template")] == 1.0
    assert row[feature_index("transition_prob")] == 0.0


def test_state_is_bounded(data_dir: Path) -> None:
    """Entity cap, window cap and idle eviction hold whatever the input."""
    lines = _lines(data_dir)
    cfg = FeatureConfig(max_entities=50, max_window_lines=8, idle_secs=10.0)
    fitted, _ = FeatureExtractor.fit(lines, cfg)
    for tl in lines:
        _, state = fitted.update(tl)
        assert len(state.window) <= 8
    assert len(fitted.entities) <= 50
    assert fitted.evicted_over_cap > 0
    ended = fitted.end_idle(lines[-1].time + 11.0)
    assert ended and not fitted.entities
    assert all(len(s.tokens) >= 1 for s in ended)
