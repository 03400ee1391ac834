"""Counts in the user's words: "1 line", "2 lines", "1,204 anomalies"."""

from __future__ import annotations

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
