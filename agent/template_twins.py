"""The training template a never-seen one repeats but for a word or two.

A template the miner never saw is often a known message with one word changed: OpenSSH_2k's
"Disconnecting: Too many authentication failures for admin [preauth]" (the history had it "for
root" twice, too few lines for the miner to make the user a parameter), Mac_2k's "PM response
took <NUM> ms (<NUM>, WeChat)" ("…, powerd)" 7 times), Zookeeper's election "Notification: …
FOLLOWING (n.state)" ("LOOKING"). "Never seen before" is true of the text, and a person deciding
whether to care needs the rest: which known message it is like and what differs. `TemplateTwins`
finds it: a training template with the same number of tokens whose literal words agree at 3 or
more positions and differ at no more than 2 (and fewer than half as many as agree); a
placeholder (`<NUM>`, `<*>`, …) on either side agrees with anything. The closest (fewest
differences, then most training lines) wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.text_memo import remember

MIN_AGREEING = 3  # literal words in the same places
MAX_DIFFERING = 2
MAX_TOKENS = 64  # longer templates are not compared (a field dump is no message with a word changed)
_MEMO_ENTRIES = 4096
_MEMO_CHARS = 512
_PLACEHOLDER = re.compile(r"^<[A-Z_*]*>$")
_EDGE = "()[]{}<>,;:.'\""  # punctuation around a differing word, left out when it is said


@dataclass(frozen=True, slots=True)
class Twin:
    """A training template a new one repeats, and the words that differ (new, training)."""

    template_id: int
    count: int  # its training lines
    differs: tuple[tuple[str, str], ...]


class TemplateTwins:
    """The training templates by token count, and a memo of the twins found."""

    def __init__(self, templates: Mapping[int, Mapping[str, Any]]) -> None:
        self._by_length: dict[int, list[tuple[int, int, tuple[str | None, ...]]]] = {}
        for tid, entry in templates.items():
            tokens = _tokens(str(entry.get("template", "")))
            if MIN_AGREEING <= len(tokens) <= MAX_TOKENS:
                self._by_length.setdefault(len(tokens), []).append((int(tid), int(entry.get("count", 0)), tokens))
        self._memo: dict[str, Twin | None] = {}

    def find(self, template: str) -> Twin | None:
        """The training template `template` repeats but for at most two words, or None."""
        if template in self._memo:
            return self._memo[template]
        tokens = _tokens(template)
        best: tuple[int, int, int] | None = None
        found: Twin | None = None
        for tid, count, known in self._by_length.get(len(tokens), ()) if len(tokens) <= MAX_TOKENS else ():
            agree, differs = 0, []
            for new, old in zip(tokens, known, strict=True):
                if new is None or old is None:
                    continue
                if new == old:
                    agree += 1
                else:
                    differs.append((new, old))
                    if len(differs) > MAX_DIFFERING:
                        break
            if agree < MIN_AGREEING or len(differs) > MAX_DIFFERING or 2 * len(differs) >= agree:
                continue
            rank = (len(differs), -count, tid)
            if best is None or rank < best:
                best = rank
                found = Twin(tid, count, tuple((_core(a, b), _core(b, a)) for a, b in differs))
        if len(template) <= _MEMO_CHARS:
            remember(self._memo, template, found, _MEMO_ENTRIES)
        return found


def _tokens(template: str) -> tuple[str | None, ...]:
    """The template's whitespace tokens, None for a placeholder."""
    return tuple(None if _PLACEHOLDER.match(t) else t for t in template.split())


def _core(word: str, other: str) -> str:
    """`word` without the punctuation it shares at its edges with `other` ("WeChat)" against
    "powerd)" says "WeChat")."""
    room = min(len(word), len(other))
    start = 0
    while start < room and word[start] == other[start] and word[start] in _EDGE:
        start += 1
    end = 0
    while end < room - start and word[-1 - end] == other[-1 - end] and word[-1 - end] in _EDGE:
        end += 1
    return word[start : len(word) - end] or word
