"""Features on real logs: the same code at training and serving, with bounded state."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.features import (
    BACKLOG_LINES,
    FEATURE_NAMES,
    FeatureConfig,
    FeatureExtractor,
    FirstLine,
    feature_index,
)
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


def _bgl_lines(data_dir: Path) -> list[TemplatedLine]:
    """BGL_2k lines keyed by node (most nodes log one line), token = the first 3 words' key."""
    levels = {"INFO": Level.INFO, "WARNING": Level.WARN, "ERROR": Level.ERROR, "SEVERE": Level.ERROR,
              "FATAL": Level.FATAL}
    out = []
    tokens: dict[str, int] = {}
    for raw in (data_dir / "loghub_2k/BGL/BGL_2k.log").read_text().splitlines():
        parts = raw.split(" ", 9)
        msg = parts[9] if len(parts) > 9 else ""
        key = " ".join(msg.split()[:3])
        tok = tokens.setdefault(key, len(tokens) + 1)
        pl = ParsedLine(raw, msg, float(parts[1]), levels.get(parts[8], Level.UNKNOWN), parts[3], "bgl")
        out.append(TemplatedLine(pl, tok, key, (), tok if tok % 7 else 0, tok % 7 == 0, pl.timestamp or 0.0))
    return out


def test_first_lines_without_a_window_read_as_a_whole_state(data_dir: Path) -> None:
    """An entity's first line keeps no window or deques (`FirstLine`); its second builds the whole
    state. Rows, histories, levels and ended sessions are exactly what whole states give from
    the first line on (BGL nodes: most log one line), with eviction over the entity cap and
    idle ends between lines."""
    lines = _bgl_lines(data_dir)
    half = len(lines) // 2
    cfg = FeatureConfig(max_entities=50, max_window_lines=8, idle_secs=3600.0)
    fitted, _ = FeatureExtractor.fit(lines[:half], cfg)
    lean, whole = FeatureExtractor(cfg, fitted.stats), FeatureExtractor(cfg, fitted.stats)
    whole._first = False  # the reference: a whole state from an entity's first line
    firsts = 0
    for i, tl in enumerate(lines[half:]):
        p = tl.line
        args = (p.entity, p.source, tl.time, tl.token, int(p.level), len(p.message), i % 3, tl.is_new,
                tl.template_id, i % 5 != 0)
        (row, state), (expected_row, expected) = lean.advance(*args), whole.advance(*args)
        firsts += isinstance(state, FirstLine)
        assert row == expected_row
        if args[-1]:  # read with a row (without one, a whole state's history waits in its backlog)
            assert (tuple(state.history), tuple(state.levels)) == (tuple(expected.history), tuple(expected.levels))
        if i % 50 == 0:
            assert lean.end_idle(tl.time, i % 2 * 2) == whole.end_idle(tl.time, i % 2 * 2)
        assert list(lean.entities) == list(whole.entities)
    assert lean.evicted_over_cap == whole.evicted_over_cap > 0
    assert lean.end_all() == whole.end_all()
    assert firsts > 0.3 * (len(lines) - half)


def test_lines_without_a_row_wait_in_their_entitys_backlog(data_dir: Path) -> None:
    """Without a row, a line's window and recent history wait in its entity's backlog (at most
    BACKLOG_LINES, then taken in): the rows and histories read with a row, the LRU order and the
    ended sessions are exactly those of an extractor that builds every line's row (HDFS blocks,
    and one busy entity whose backlog fills between rows)."""
    lines = _lines(data_dir)
    cfg = FeatureConfig(max_entities=50, max_window_lines=8)
    fitted, _ = FeatureExtractor.fit(lines[:1000], cfg)
    lean, every = FeatureExtractor(cfg, fitted.stats), FeatureExtractor(cfg, fitted.stats)
    full = 0
    for i, tl in enumerate(lines[1000:]):
        p = tl.line
        entity = "busy" if i % 2 else p.entity
        args = (entity, p.source, tl.time, tl.token, int(p.level), len(p.message), i % 3, tl.is_new, tl.template_id)
        with_row = i % 200 == 0 or (i % 7 == 0 and entity != "busy")
        (row, state), (expected_row, expected) = lean.advance(*args, with_row), every.advance(*args)
        if with_row:
            assert row == expected_row
            assert (tuple(state.history), tuple(state.levels)) == (tuple(expected.history), tuple(expected.levels))
        backlog = len(getattr(state, "backlog", ()))
        assert backlog < BACKLOG_LINES
        full += entity == "busy" and not with_row and backlog == 0
        assert list(lean.entities) == list(every.entities)
    assert full > 0  # the busy entity's backlog filled and was taken in without a row
    assert lean.end_all() == every.end_all()


def test_fit_matches_serving(data_dir: Path) -> None:
    """The rows `fit` returns are exactly what a fresh extractor computes line by line, except the
    transition probability, which leaves the row's own transition out (a pair seen once in
    training reads 0, as a new pair does when served)."""
    lines = _lines(data_dir)
    fitted, rows = FeatureExtractor.fit(lines)
    assert rows.shape == (len(lines), len(FEATURE_NAMES))
    replay = np.array([fitted.update(tl)[0] for tl in lines], dtype=np.float32)
    trans = feature_index("transition_prob")
    others = [i for i in range(len(FEATURE_NAMES)) if i != trans]
    np.testing.assert_allclose(replay[:, others], rows[:, others], rtol=1e-6)
    assert (rows[:, trans] <= replay[:, trans] + 1e-6).all()  # one count fewer can only lower it


def test_training_transitions_leave_their_own_pair_out(data_dir: Path) -> None:
    """Counted in, every training transition has been seen, so 0 never occurs in training rows
    and a model learns that any new pair is out of range. Left out: a pair that occurs once in
    training reads 0 in its training row, exactly as a pair never seen reads when served."""
    lines = _lines(data_dir)
    _, rows = FeatureExtractor.fit(lines)
    trans = rows[:, feature_index("transition_prob")]
    pairs: dict[tuple[str, int], int] = {}
    prev: dict[str, int] = {}
    keys: list[tuple[str, int] | None] = []
    for tl in lines:
        p = prev.get(tl.line.entity)
        keys.append(None if p is None else (f"{p}", tl.token))
        if p is not None:
            pairs[(f"{p}", tl.token)] = pairs.get((f"{p}", tl.token), 0) + 1
        prev[tl.line.entity] = tl.token
    once = [i for i, k in enumerate(keys) if k is not None and pairs[k] == 1]
    assert len(once) >= 5
    assert (trans[once] == 0.0).all()
    first = [i for i, k in enumerate(keys) if k is None]
    assert (trans[first] == 1.0).all()


def test_calendar_features_need_the_history_to_cover_their_cycle(data_dir: Path) -> None:
    """HDFS_2k's lines here span 2,000 seconds: neither the hour of day nor the day of week can
    be learned from it, so both are 0 in training and when served (a model cannot split on a
    calendar it never saw). Spread over three weeks, both are kept; a bundle from before the
    span was recorded serves them as it always did."""
    from agent.features import FeatureStats

    lines = _lines(data_dir)
    fitted, rows = FeatureExtractor.fit(lines)
    assert fitted.stats.span_secs is not None and fitted.stats.span_secs < 86400
    hour, dow = feature_index("hour_of_day"), feature_index("day_of_week")
    assert (rows[:, [hour, dow]] == 0.0).all()
    later = TemplatedLine(lines[0].line, 1, "x", (), 1, False, lines[0].time + 5 * 86400 + 7 * 3600)
    row, _ = fitted.update(later)
    assert row[hour] == 0.0 and row[dow] == 0.0
    spread = [TemplatedLine(tl.line, tl.template_id, tl.template, (), tl.token, False, tl.time + 1000.0 * i)
              for i, tl in enumerate(lines)]  # 2,000 lines over 23 days
    _, wide_rows = FeatureExtractor.fit(spread)
    assert len(set(wide_rows[:, hour].tolist())) == 24 and len(set(wide_rows[:, dow].tolist())) == 7
    old = FeatureStats.from_json({k: v for k, v in fitted.stats.to_json().items() if k != "span_secs"})
    assert old.clock_used("hour_of_day") and old.clock_used("day_of_week")


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
        assert isinstance(state, FirstLine) or len(state.window) <= 8
    assert len(fitted.entities) <= 50
    assert fitted.evicted_over_cap > 0
    ended = fitted.end_idle(lines[-1].time + 11.0)
    assert ended and not fitted.entities
    assert all(len(s.tokens) >= 1 for s in ended)


def test_an_unusual_combination_never_names_a_feature_constant_in_training(data_dir: Path) -> None:
    """HDFS_2k's 2,000 seconds leave hour of day and day of week at 0 in every training row: an
    Isolation Forest alert with every feature in range names the window features, not them."""
    from agent.explain_models import ModelExplainer
    from agent.types import DetectorScore, LineContext
    from trainer.profile import feature_ranges

    lines = _lines(data_dir)
    fitted, rows = FeatureExtractor.fit(lines)
    explainer = ModelExplainer({"feature_ranges": feature_ranges(rows)}, lambda t: f"T{t}", lambda token: token,
                               {"isolation_forest": "isolation_forest"})
    row, _ = fitted.update(lines[100])
    score = DetectorScore("isolation_forest", 0.2, 0.1, True)
    (said,) = explainer.explain(LineContext(lines[100], np.array(row, dtype=np.float32), (), ()), [score])
    assert "unusual combination" in said.text
    assert "hour of day" not in said.text and "day of week" not in said.text
