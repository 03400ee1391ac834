"""Counts in the user's words ("1 line", "2 lines", "1,204 anomalies") and text cut to fit
("Have quorum of supporters; starting up and setting last…", never "…last pro…")."""

from __future__ import annotations

import re

_IRREGULAR = {"anomaly": "anomalies", "entity": "entities"}


def plural(count: int | float, word: str, many: str | None = None) -> str:
    """`count` with thousands separators and `word` in the singular or the plural.

    The plural is `many` when given, else the last word of the phrase inflected: a known
    irregular form or + "s" ("anomalous line" → "anomalous lines").
    """
    head, _, last = word.rpartition(" ")
    form = word if count == 1 else many or f"{head + ' ' if head else ''}{_IRREGULAR.get(last, last + 's')}"
    number = f"{count:,}" if isinstance(count, int) else f"{count:,.0f}"
    return f"{number} {form}"


def burst_more(anomaly_count: int, line_count: int) -> str:
    """What an incident counts beyond its anomalous lines: a burst raises one alert (and one per
    doubling), its other lines are counted in `line_count`, not raised (" (+42 more lines of its
    burst)"); empty when there are none."""
    more = line_count - anomaly_count
    return f" (+{plural(more, 'more line')} of its burst)" if more > 0 else ""


# Where a cut may fall: at a space, or at a separator inside a long token (a path, a URL, a
# dotted name, a key=value list, a call's arguments).
_BREAK = re.compile(r"[\s/\\,;:|=.(\[{]")
_OPEN_MASK = re.compile(r"<[A-Z*]*$")  # a cut inside a placeholder such as <NUM> or <*>
_TRAILING = " ,;:-=/|.…"
_WORD = re.compile(r"[\w-]")


def clip(text: str, limit: int, mark: str = "…") -> str:
    """`text` on one line, cut to at most `limit` characters with `mark` after it.

    The cut falls at a word boundary (a space, or a separator in a long path or URL) when one
    lies in the last half of the room, never inside a template placeholder ("<NU…"), and what
    it leaves ends in no punctuation or ellipsis of its own ("instead of type ……", "instruction...…").
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    room = max(limit - len(mark), 1)
    cut = _OPEN_MASK.sub("", text[:room]).rstrip(_TRAILING)
    if cut and _WORD.match(text[len(cut)]) and _WORD.match(cut[-1]):  # the cut splits a word
        breaks = [m.start() for m in _BREAK.finditer(cut)]
        if breaks and breaks[-1] >= room // 2:
            cut = _OPEN_MASK.sub("", cut[: breaks[-1]]).rstrip(_TRAILING)
    return (cut or text[:room]) + mark
