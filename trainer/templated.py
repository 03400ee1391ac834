"""Lines matched the way the agent will match them: one `TemplatedLine` per parsed line, from
its match against the frozen training miner (unknown → UNK token 0). One process templates every
line here (`template_lines`); distributed training templates each block's lines on its worker
with the same function (`templated_line`, trainer/distributed.py)."""

from __future__ import annotations

from collections.abc import Sequence

from agent.templates import TemplateMiner
from agent.types import ParsedLine, TemplatedLine

# (template id, template text, params) of a line's match; None: no template matched.
Match = tuple[int, str, tuple[str, ...]] | None


def match_of(miner: TemplateMiner, message: str) -> Match:
    """A message's match against `miner`, as a plain tuple."""
    found = miner.match(message)
    return None if found is None else (found.template_id, found.template, found.params)


def templated_line(p: ParsedLine, m: Match, vocab: dict[int, int]) -> TemplatedLine:
    """A parsed line with its match (`m`) and model token (`vocab`; unknown → UNK token 0)."""
    params: tuple[str, ...]
    if m is None:
        tid, template, params, token = -1, p.message, (), 0
    else:
        tid, template, params = m
        token = vocab.get(tid, 0)
    t = p.timestamp if p.timestamp is not None else 0.0
    return TemplatedLine(p, tid, template, params, token, token == 0, t, p.timestamp is None)


def template_lines(
    lines: Sequence[ParsedLine], miner: TemplateMiner, vocab: dict[int, int],
) -> tuple[list[TemplatedLine], int]:
    """Match lines the way the agent does (frozen miner); unknown → UNK token 0. Returns the
    templated lines and how many matched no template."""
    out = [templated_line(p, match_of(miner, p.message), vocab) for p in lines]
    return out, sum(1 for tl in out if tl.template_id < 0)
