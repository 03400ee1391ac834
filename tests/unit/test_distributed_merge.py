"""The merge of the Dask data half (trainer/distributed.py) on real BGL lines: the merged miner's
input does not depend on how the lines were cut into blocks, and mining it gives the templates
a single process mines from every line."""

from __future__ import annotations

from pathlib import Path

from agent.parsing import ParserConfig
from agent.templates import MinerConfig, learn_templates
from trainer.distributed import _cut, _lines, _parse, list_blocks, merge_first_keys


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
        parts = [_cut(_parse(block, "BGL_4k.log", parser, sample), config).keys for block in blocks]
        return merge_first_keys(parts, n_train)

    by_1000, by_333, whole = merged(1000), merged(333), merged(len(lines))
    assert by_1000 == by_333 == whole
    single = learn_templates(p.message for p in _parse(data, "BGL_4k.log", parser, sample)[:n_train])
    assert learn_templates(whole, config).templates() == single.templates()


def test_blocks_are_equal_and_hold_every_line_once(data_dir: Path) -> None:
    """A file is cut into the fewest blocks of at most `blocksize` bytes, all of one size (equal
    tasks for the workers), and the blocks' whole lines are the file's lines, each once."""
    path = data_dir / "bgl" / "BGL_4k.log"
    size = path.stat().st_size
    blocks, _ = list_blocks([str(path)], size // 3 - 1000)  # 3 blocks and a bit: 4 equal ones
    assert len(blocks) == 4
    assert max(b.length for b in blocks) - min(b.length for b in blocks) <= 1
    assert b"".join(b.read() for b in blocks) == path.read_bytes()
