"""Training statistics the explainer quotes: how often, when, how bursty, with which values.

`build_profile` runs once at training over the templated training lines and returns a plain
JSON-safe dict (stored in the bundle as `profile.json`). The agent's `Explainer` compares a live
line with it, so every number an explanation prints ("normal: 9 AM - 6 PM", "normal p99: 4 per
2 minutes", "P(next) = 0.82") comes from here.

The size is bounded whatever the input: at most `MAX_TEMPLATES` templates (the most frequent),
`MAX_SLOTS` parameter slots per template, `MAX_VALUES` values per slot, `MAX_NEXT` successors per
template and `MAX_ENTITIES` entities; what falls outside a cap is still counted. "Entity" here
is the actor of `agent.lines.actor_of`: the configured entity, else the component.

Hours are UTC hours of the line's timestamp. Lines whose time came from their arrival
(`time_from_arrival`) say nothing about when things happen, so they are left out of the hour
histograms and the burst statistics (and counted as `untimed`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from agent.lines import actor_of, as_number, ip_prefix
from agent.types import Level, TemplatedLine

PROFILE_VERSION = 1
MAX_TEMPLATES = 5000
MAX_SLOTS = 16
MAX_VALUES = 50
MAX_NEXT = 10
MAX_ENTITIES = 500
MAX_TEMPLATE_CHARS = 300
MAX_VALUE_CHARS = 80
PATH_LENGTH = 3
MAX_FOLLOWS = 5
# Lines of two templates logged within this many seconds of each other, one right after the
# other in the stream, are "companions" (an auth failure and the web's 401 a few ms later):
# incidents use it to relate different actors' anomalies.
FOLLOW_SECS = 2.0
# Per-slot value counters stop growing (new values are then only counted) past this many
# distinct values, so a slot full of request ids cannot take memory proportional to the input.
_VALUE_TRACK_CAP = 5000
_ENTITY_TRACK_CAP = 50_000


class _SlotStats:
    """Values seen in one parameter slot, bounded."""

    __slots__ = ("maximum", "minimum", "numbers", "prefixes", "seen", "untracked", "values")

    def __init__(self) -> None:
        self.values: Counter[str] = Counter()
        self.seen = 0
        self.untracked = 0
        self.prefixes: Counter[str] = Counter()
        self.minimum = math.inf
        self.maximum = -math.inf
        self.numbers = 0

    def add(self, value: str) -> None:
        self.seen += 1
        value = value[:MAX_VALUE_CHARS]
        if value in self.values or len(self.values) < _VALUE_TRACK_CAP:
            self.values[value] += 1
        else:
            self.untracked += 1
        prefix = ip_prefix(value)
        if prefix is not None and (prefix in self.prefixes or len(self.prefixes) < _VALUE_TRACK_CAP):
            self.prefixes[prefix] += 1
        number = as_number(value)
        if number is not None:
            self.numbers += 1
            self.minimum = min(self.minimum, number)
            self.maximum = max(self.maximum, number)

    def to_json(self) -> dict[str, Any]:
        top = self.values.most_common(MAX_VALUES)
        out: dict[str, Any] = {
            "seen": self.seen,
            "distinct": len(self.values) + (1 if self.untracked else 0),
            "distinct_capped": bool(self.untracked),
            "values": dict(top),
            # Share of occurrences the stored top values cover: near 1.0 means the slot is
            # categorical (a handful of hosts, codes), so an unseen value is news.
            "coverage": (sum(c for _, c in top) / self.seen) if self.seen else 0.0,
        }
        if self.prefixes:
            top_prefixes = self.prefixes.most_common(MAX_VALUES)
            out["ip_prefixes"] = dict(top_prefixes)
            out["ip_seen"] = sum(self.prefixes.values())
            out["ip_prefix_coverage"] = sum(c for _, c in top_prefixes) / max(1, sum(self.prefixes.values()))
        if self.numbers:
            out["numeric"] = {"count": self.numbers, "min": self.minimum, "max": self.maximum}
        return out


class _TemplateStats:
    __slots__ = ("count", "entities", "follows", "hours", "levels", "next", "slots", "template", "windows")

    def __init__(self, template: str) -> None:
        self.template = template[:MAX_TEMPLATE_CHARS]
        self.count = 0
        self.levels: Counter[str] = Counter()
        self.hours = [0] * 24
        self.windows: Counter[int] = Counter()  # window index -> lines of this template
        self.slots: list[_SlotStats] = []
        self.next: Counter[int] = Counter()
        self.follows: Counter[int] = Counter()
        self.entities: Counter[str] = Counter()


def _hour(t: float) -> int:
    return int((t // 3600) % 24)


def _burst_stats(windows: Counter[int], active_windows: int) -> dict[str, float]:
    """Lines per window over the ACTIVE windows of the training span (windows with any line).

    Counting only active windows keeps gaps (a weekend with logging off, concatenated
    samples months apart) from diluting the normal rate to nothing.
    """
    n = max(active_windows, len(windows), 1)
    nonzero = sorted(float(c) for c in windows.values())
    total = sum(nonzero)
    mean = total / n
    var = max(0.0, sum(c * c for c in nonzero) / n - mean * mean)
    zeros = n - len(nonzero)

    def q(p: float) -> float:
        rank = max(0, math.ceil(p * n) - 1)
        return 0.0 if rank < zeros else nonzero[rank - zeros]

    # The spread of counts in windows where the template occurs at all: a template that comes
    # in bursts (BGL's assertion storms) has a high p99 here even when it is absent 99% of the time.
    present = nonzero[max(0, math.ceil(0.99 * len(nonzero)) - 1)] if nonzero else 0.0
    return {
        "mean": mean,
        "p99_present": present,
        "std": math.sqrt(var),
        "p50": q(0.5),
        "p99": q(0.99),
        "max": nonzero[-1] if nonzero else 0.0,
        "windows": float(n),
    }


def _most_common_path(start: int, nexts: dict[int, Counter[int]]) -> list[int]:
    path = [start]
    current = start
    for _ in range(PATH_LENGTH - 1):
        successors = nexts.get(current)
        if not successors:
            break
        current = successors.most_common(1)[0][0]
        path.append(current)
    return path


def build_profile(
    lines: Sequence[TemplatedLine] | Iterable[TemplatedLine], window_secs: float = 120.0
) -> dict[str, Any]:
    """Per-template and per-level statistics of the training lines (JSON-safe, bounded)."""
    if not window_secs > 0:
        window_secs = 120.0
    stats: dict[int, _TemplateStats] = {}
    level_hours: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    level_counts: Counter[str] = Counter()
    entity_levels: dict[str, Counter[str]] = {}
    # actor -> level -> hour histogram, for WARN and worse only (what UNUSUAL_TIME quotes).
    actor_hours: dict[str, dict[str, list[int]]] = {}
    tokens: dict[int, int] = {}
    active: set[int] = set()
    last_by_entity: dict[str, int] = {}
    last_line: tuple[int, float] | None = None  # (template, time) of the previous line in the stream
    total = 0
    untimed = 0
    first_time = math.inf
    last_time = -math.inf

    for tl in lines:
        total += 1
        tid = tl.template_id
        st = stats.get(tid)
        if st is None:
            st = stats[tid] = _TemplateStats(tl.template)
        st.count += 1
        level = tl.line.level.name
        st.levels[level] += 1
        level_counts[level] += 1
        # Per actor (the entity, or the component when the entity is only the stream): a stream
        # interleaves every service, so its "previous line" says nothing about order.
        entity = actor_of(tl.line)
        if entity in entity_levels or len(entity_levels) < _ENTITY_TRACK_CAP:
            entity_levels.setdefault(entity, Counter())[level] += 1
        if tl.token and tl.token not in tokens:
            tokens[tl.token] = tid
        if tl.time_from_arrival or not math.isfinite(tl.time):
            untimed += 1
        else:
            hour = _hour(tl.time)
            st.hours[hour] += 1
            level_hours[level][hour] += 1
            if tl.line.level >= Level.WARN and (entity in actor_hours or len(actor_hours) < _ENTITY_TRACK_CAP):
                actor_hours.setdefault(entity, {}).setdefault(level, [0] * 24)[hour] += 1
            window = int(tl.time // window_secs)
            st.windows[window] += 1
            active.add(window)
            first_time = min(first_time, tl.time)
            last_time = max(last_time, tl.time)
            if last_line is not None and last_line[0] != tid and 0 <= tl.time - last_line[1] <= FOLLOW_SECS:
                before = stats.get(last_line[0])
                if before is not None and (tid in before.follows or len(before.follows) < _VALUE_TRACK_CAP):
                    before.follows[tid] += 1
            last_line = (tid, tl.time)
        for i, value in enumerate(tl.params[:MAX_SLOTS]):
            if i >= len(st.slots):
                st.slots.append(_SlotStats())
            st.slots[i].add(value)
        previous = last_by_entity.get(entity)
        if previous is not None and previous in stats:
            stats[previous].next[tid] += 1
        if entity in last_by_entity or len(last_by_entity) < _ENTITY_TRACK_CAP:
            last_by_entity[entity] = tid

    kept = sorted(stats.items(), key=lambda item: (-item[1].count, item[0]))[:MAX_TEMPLATES]
    nexts = {tid: st.next for tid, st in stats.items()}
    templates: dict[str, Any] = {}
    for tid, st in kept:
        next_total = sum(st.next.values())
        top_next = st.next.most_common(MAX_NEXT)
        templates[str(tid)] = {
            "template": st.template,
            "count": st.count,
            "frequency": st.count / total if total else 0.0,
            "levels": dict(st.levels),
            "hours": st.hours,
            "burst": _burst_stats(st.windows, len(active)),
            "params": [slot.to_json() for slot in st.slots],
            "next_total": next_total,
            "next": {str(n): c / next_total for n, c in top_next} if next_total else {},
            # Share of successors the stored ones cover: only near 1.0 is an unlisted one "never".
            "next_coverage": sum(c for _, c in top_next) / next_total if next_total else 0.0,
            "path": _most_common_path(tid, nexts),
            "follows": {str(n): c / st.count for n, c in st.follows.most_common(MAX_FOLLOWS)},
        }
    top_entities = sorted(entity_levels.items(), key=lambda item: -sum(item[1].values()))[:MAX_ENTITIES]
    return {
        "version": PROFILE_VERSION,
        "window_secs": float(window_secs),
        "totals": {
            "lines": total,
            "templates": len(stats),
            "templates_kept": len(templates),
            "untimed": untimed,
            "first_time": first_time if math.isfinite(first_time) else None,
            "last_time": last_time if math.isfinite(last_time) else None,
            "active_windows": len(active),
        },
        "levels": {
            name: {"count": count, "hours": level_hours.get(name, [0] * 24)} for name, count in level_counts.items()
        },
        "entities": {name: dict(levels) for name, levels in top_entities},
        "entity_hours": {name: actor_hours[name] for name, _ in top_entities if name in actor_hours},
        "tokens": {str(token): tid for token, tid in sorted(tokens.items())},
        "templates": templates,
    }


def hour_multipliers(
    times: Sequence[float],
    scores: Sequence[float],
    quantile: float = 0.99,
    min_samples: int = 200,
    clip: tuple[float, float] = (0.5, 2.0),
) -> list[float]:
    """Seed 002's dynamic thresholds: per UTC hour, how much higher (or lower) normal scores run.

    From held-back NORMAL lines' times and ensemble scores (higher = more anomalous, positive):
    multiplier[h] = quantile of the scores at hour h / that quantile at the typical hour, averaged
    with the neighbouring hours (an hour's sample is noisy), clipped to `clip`. An hour with fewer
    than `min_samples` scores, or scores that are not all positive, gets 1.0. The agent multiplies
    its threshold by multiplier[hour of the line] when dynamic thresholds are turned on, so a
    nightly batch job that always scores high does not page anyone at 02:00.
    """
    pairs = [(t, s) for t, s in zip(times, scores, strict=False) if math.isfinite(t) and math.isfinite(s)]
    if not pairs or min(s for _, s in pairs) <= 0:
        return [1.0] * 24

    def q(values: list[float]) -> float:
        values.sort()
        return values[min(len(values) - 1, max(0, math.ceil(quantile * len(values)) - 1))]

    by_hour: list[list[float]] = [[] for _ in range(24)]
    for t, s in pairs:
        by_hour[_hour(t)].append(s)
    per_hour = {h: q(v) for h, v in enumerate(by_hour) if len(v) >= min_samples}
    if not per_hour:
        return [1.0] * 24
    # The typical hour is the reference (the median of the hourly quantiles): against the
    # overall quantile, a few loud hours would set the bar and every other hour look quiet.
    typical = sorted(per_hour.values())[(len(per_hour) - 1) // 2]
    raw = [per_hour[h] / typical if h in per_hour else 1.0 for h in range(24)]
    low, high = clip
    return [round(min(high, max(low, (raw[(h - 1) % 24] + raw[h] + raw[(h + 1) % 24]) / 3)), 4) for h in range(24)]


def feature_ranges(rows: np.ndarray) -> dict[str, list[float]]:
    """Each feature's [min, max] over the training rows: an Isolation Forest alert names the
    features furthest outside them."""
    from agent.features import FEATURE_NAMES

    x = np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURE_NAMES))
    if not len(x):
        return {}
    return {name: [float(x[:, i].min()), float(x[:, i].max())] for i, name in enumerate(FEATURE_NAMES)}
