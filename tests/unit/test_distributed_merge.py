"""The merge of the Dask data half (trainer/distributed.py) on real BGL lines: the merged miner's
input does not depend on how the lines were cut into blocks, and mining it gives the templates
a single process mines from every line."""

from __future__ import annotations

from pathlib import Path

from agent.parsing import ParserConfig
from agent.templates import MinerConfig, learn_templates
from trainer.distributed import _first_keys, _lines, _parse, merge_first_keys


def test_merge_is_the_same_for_any_blocks_and_mines_the_single_process_templates(data_dir: Path) -> None:
    """Blocks of 1,000 lines, of 333 lines, and one block: the same messages to mine; their
    templates equal one process's mined from all training lines in order."""
    data = (data_dir / "bgl" / "BGL_4k.log").read_bytes()
    lines = data.splitlines(keepends=True)
    sample = _lines(data)[:200]
    config = MinerConfig()
    parser = ParserConfig()
    n_train = 3200

    def merged(size: int) -> list[str]:
        blocks = [b"".join(lines[i : i + size]) for i in range(0, len(lines), size)]
        parts = [_first_keys(_parse(block, "BGL_4k.log", parser, sample), config) for block in blocks]
        return merge_first_keys(parts, n_train)

    by_1000, by_333, whole = merged(1000), merged(333), merged(len(lines))
    assert by_1000 == by_333 == whole
    single = learn_templates(p.message for p in _parse(data, "BGL_4k.log", parser, sample)[:n_train])
    assert learn_templates(whole, config).templates() == single.templates()
