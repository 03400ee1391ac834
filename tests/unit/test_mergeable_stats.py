"""The training statistics distributed training computes in pieces (trainer/distributed.py) on
real HDFS lines (one entity per block id, a few thousand lines): the explanation profile built
per run of consecutive lines and merged in line order, and the feature statistics and rows
counted per entity owner and merged, equal what one process computes over all the lines."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from agent.features import (
    FeatureConfig,
    FeatureCounts,
    FeatureExtractor,
    feature_input,
    finish_rows,
    rows_before_stats,
    training_rows,
    with_stats,
)
from agent.parsing import ParserConfig
from agent.templates import learn_templates
from agent.types import TemplatedLine
from trainer.distributed import _lines, _parse
from trainer.entity_shuffle import owner
from trainer.profile import ProfileBuilder, build_profile
from trainer.templated import template_lines


def _templated(data_dir: Path) -> list[TemplatedLine]:
    raw = (data_dir / "hdfs" / "HDFS_v1_head20k_dev.log").read_bytes().splitlines(keepends=True)[:4000]
    data = b"".join(raw)
    parser = ParserConfig(log_format="hdfs", entity=r"regex:(blk_-?\d+)")
    parsed = _parse(data, "HDFS.log", parser, _lines(data)[:200])
    miner = learn_templates(p.message for p in parsed[:3200])
    ids = sorted(miner.templates())
    vocab = {t: i + 1 for i, t in enumerate(ids[1:])}  # one template unknown (token 0)
    lines, _ = template_lines(parsed, miner, vocab)
    return lines


def test_profile_merged_from_runs_of_lines_equals_one_pass(data_dir: Path) -> None:
    """Runs cut anywhere (an entity's lines in several runs, a follow across a cut): the merged
    profile is the one-pass profile, byte for byte, merged one by one or pairwise first."""
    lines = _templated(data_dir)
    whole = json.dumps(build_profile(lines))
    for cuts in ((1000, 2500), (1, 777, 778, 3999), (2000,), (500, 1000, 1500, 2000, 2500, 3000)):
        edges = [0, *cuts, len(lines)]

        def parts(edges: list[int] = edges) -> list[ProfileBuilder]:
            out = []
            for lo, hi in itertools.pairwise(edges):
                part = ProfileBuilder(partial=True)
                part.add_all(lines[lo:hi])
                out.append(part)
            return out

        merged = ProfileBuilder()
        for part in parts():
            merged.merge(part)
        assert json.dumps(merged.result()) == whole, cuts
        level = parts()  # merged pairwise first (a tree, as the workers do), then into one
        while len(level) > 1:
            for first, then in zip(level[::2], level[1::2], strict=False):
                first.merge(then)
            level = level[::2]
        merged = ProfileBuilder()
        merged.merge(level[0])
        assert json.dumps(merged.result()) == whole, ("tree", cuts)


def test_features_counted_per_entity_owner_equal_fit(data_dir: Path) -> None:
    """1, 2 and 3 owners: the merged statistics and the rows (put back in line order) equal
    `FeatureExtractor.fit` over every line."""
    lines = _templated(data_dir)
    assert len({tl.line.entity for tl in lines}) > 50
    fitted, rows = FeatureExtractor.fit(lines)
    cfg = FeatureConfig()
    inputs = [feature_input(tl) for tl in lines]
    for parts in (1, 2, 3):
        mine = [[i for i, x in enumerate(inputs) if owner(x[0], parts) == k] for k in range(parts)]
        counted = [FeatureCounts.count([inputs[i] for i in idx]) for idx in mine]
        stats = FeatureCounts.merge([c for c, _ in counted])
        out = np.zeros_like(rows)
        for idx, (_, prevs) in zip(mine, counted, strict=True):
            out[idx] = training_rows([inputs[i] for i in idx], prevs, stats, cfg)
        finish_rows(out, stats)
        assert np.array_equal(out, rows), parts
        assert stats.to_json() == fitted.stats.to_json(), parts


def test_rows_before_the_statistics_then_filled_equal_the_rows_with_them(data_dir: Path) -> None:
    """Per owner (1, 2, 3 of them), rows computed before the merged statistics and then filled
    (`rows_before_stats`, `with_stats`) equal `training_rows` for the training lines, and a fresh
    extractor's rows with the statistics for the lines after them (the threshold lines)."""
    lines = _templated(data_dir)
    cfg = FeatureConfig()
    inputs = [feature_input(tl) for tl in lines]
    train, later = inputs[:3200], inputs[3200:]
    for parts in (1, 2, 3):
        mine = [[x for x in train if owner(x[0], parts) == k] for k in range(parts)]
        counted = [FeatureCounts.count(m) for m in mine]
        stats = FeatureCounts.merge([c for c, _ in counted])
        for m, (_, prevs) in zip(mine, counted, strict=True):
            rows, seen = rows_before_stats(m, cfg)
            with_stats(rows, seen, stats, np.array([-1 if p is None else p for p in prevs], dtype=np.int64))
            assert np.array_equal(rows, training_rows(m, prevs, stats, cfg)), parts
        for k in range(parts):
            m = [x for x in later if owner(x[0], parts) == k]
            rows, seen = rows_before_stats(m, cfg)
            with_stats(rows, seen, stats)
            served = FeatureExtractor(cfg, stats)
            expected = np.array([served.advance(*x)[0] for x in m], dtype=np.float32).reshape(len(m), -1)
            assert np.array_equal(rows, expected), parts
