"""Records of a file → parsed lines, the way `train` reads them: stitched, then parsed."""

from __future__ import annotations

from collections.abc import Iterable

from agent.errors import InputError
from agent.multiline import Stitcher
from agent.parsing.config import ParserConfig
from agent.parsing.parser import LineParser
from agent.types import ParsedLine, Record


def parse_records(records: Iterable[Record], config: ParserConfig) -> tuple[list[ParsedLine], str]:
    """Stitch multi-line records and parse them with the agent's parser; (lines, format)."""
    recs = list(records)
    if config.multiline:
        stitcher = Stitcher()
        stitched: list[Record] = []
        for r in recs:
            stitched.extend(stitcher.feed(r))
        stitched.extend(stitcher.flush())
        recs = stitched
    parser = LineParser(config, [r.line for r in recs[:200]])
    parsed = [parser.parse(r, i + 1) for i, r in enumerate(recs)]
    if config.log_format not in ("auto", "raw") and parsed and parser.stats.unparsed > 0.9 * len(parsed):
        raise InputError(
            f"--log-format {config.log_format}: {parser.stats.unparsed:,} of {len(parsed):,} lines do not "
            f"look like that format (first: {recs[0].line[:80]!r}); try --log-format auto"
        )
    return parsed, parser.format
