"""The entity shuffle of the Dask data half (trainer/entity_shuffle.py) on real HDFS lines (one
entity per block id): the
per-entity sequences the owners build from the blocks' pieces (matched by the driver's key → template
tables) equal the ones one process builds, whatever the number of partitions and wherever the
blocks are cut."""

from __future__ import annotations

from pathlib import Path

from agent.parsing import ParserConfig
from agent.templates import MinerConfig, TemplateMiner, learn_templates
from trainer.distributed import _cut, _lines, _match_block, _parse, earliest_keys, key_templates
from trainer.entity_shuffle import EntitySequences, OwnedLines, Owners
from trainer.templated import template_lines
from trainer.train import sequences_by_entity


def test_shuffled_sequences_equal_one_process_for_any_partitioning(data_dir: Path) -> None:
    """Blocks of 1,000 and 700 lines into 1, 2 and 3 partitions: each entity's tokens and levels
    over a line range, suspect templates left out, equal `sequences_by_entity` on the same lines."""
    raw = (data_dir / "hdfs" / "HDFS_v1_head20k_dev.log").read_bytes().splitlines(keepends=True)[:4000]
    data = b"".join(raw)
    sample = _lines(data)[:200]
    parser = ParserConfig(log_format="hdfs", entity=r"regex:(blk_-?\d+)")
    parsed = _parse(data, "HDFS.log", parser, sample)
    config = MinerConfig()
    miner = learn_templates((p.message for p in parsed[:3200]), config)
    state = miner.to_state()
    ids = sorted(miner.templates())
    suspect = frozenset(ids[::7])  # some templates held back, as the history check does
    vocab = {t: i + 1 for i, t in enumerate(t for t in ids if t not in suspect)}
    lines, _ = template_lines(parsed, miner, vocab)
    assert len({p.entity for p in parsed}) > 50
    for size in (1000, 700):
        for parts in (1, 2, 3):
            blocks = [_parse(b"".join(raw[i : i + size]), "HDFS.log", parser, sample)
                      for i in range(0, len(raw), size)]
            starts = [sum(len(b) for b in blocks[:j]) for j in range(len(blocks))]
            cut = [_cut(b, config) for b in blocks]
            keys = [c.keys for c in cut]
            merged = TemplateMiner.from_state(state)  # the driver's miner, as the run mined it
            templates = key_templates(keys, earliest_keys(keys), merged)
            counts = {e: n for c in cut for e, n in c.keys.entities.items()}
            for owners in (Owners(parts, {}), Owners.balanced(counts, parts)):  # hashed, and placed by counts
                matched = [_match_block(c, s, t, (state, owners))
                           for c, s, t in zip(cut, starts, templates, strict=True)]
                sequences = EntitySequences.concat(
                    [OwnedLines.assemble([m.pieces[k] for m in matched]).sequences for k in range(parts)])
                assert len(sequences) == len(parsed)
                for lo, hi in ((0, 3200), (3200, 3600), (3600, len(parsed))):
                    kept = [tl for tl in lines[lo:hi] if tl.template_id not in suspect]
                    assert sequences.select(lo, hi, suspect, vocab) == sequences_by_entity(kept), (size, parts, lo)


def test_owners_even_out_the_block_work_of_runs_of_blocks(data_dir: Path) -> None:
    """8 simulated hosts of BGL lines (one entity each: the stream is the host's file), the first
    half of the blocks on one worker and the second on the other (`runs_of`): the second holds the
    held-back tail, matched but not profiled, so it owns more hosts, and each worker's total work
    (its blocks' and its hosts') ends within one host's of the other's."""
    from trainer.distributed import Block, owner_work, runs_of

    raw = b"".join((data_dir / "bgl" / "BGL_4k.log").read_bytes().splitlines(keepends=True)[:2000])
    sample = _lines(raw)[:200]
    parser = ParserConfig()
    config = MinerConfig()
    halves = [b"".join(raw.splitlines(keepends=True)[i : i + 1000]) for i in (0, 1000)]
    keys = [_cut(_parse(half, f"host-{h}.log", parser, sample), config).keys for h in range(8) for half in halves]
    starts = [sum(k.count for k in keys[:j]) for j in range(len(keys))]
    workers = ["tcp://a", "tcp://b"]
    blocks = [Block(None, f"host-{j // 2}.log", (j % 2) * len(halves[0]), len(halves[j % 2])) for j in range(16)]
    homes = [h[0] if h else None for h in runs_of(blocks, workers)]
    assert homes == ["tcp://a"] * 8 + ["tcp://b"] * 8
    n_train = (starts[-1] + keys[-1].count) * 8 // 10
    weights, base = owner_work(keys, starts, homes, workers, n_train)
    assert sorted(weights) == [f"host-{h}.log" for h in range(8)]
    assert weights["host-7.log"] < weights["host-0.log"] == weights["host-5.log"]  # the tail: judged, not featured
    assert base[0] > base[1]
    owners = Owners.balanced(weights, 2, base)
    hosts = [sum(1 for e in weights if owners.of(e) == k) for k in (0, 1)]
    assert hosts[1] > hosts[0]
    totals = [b + load for b, load in zip(base, owners.loads(weights), strict=True)]
    assert abs(totals[0] - totals[1]) <= weights["host-0.log"]
