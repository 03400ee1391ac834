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
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

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

    __slots__ = ("cap", "maximum", "minimum", "numbers", "prefixes", "seen", "untracked", "values")

    def __init__(self, cap: int = _VALUE_TRACK_CAP) -> None:
        self.cap = cap
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
        if value in self.values or len(self.values) < self.cap:
            self.values[value] += 1
        else:
            self.untracked += 1
        prefix = ip_prefix(value)
        if prefix is not None and (prefix in self.prefixes or len(self.prefixes) < self.cap):
            self.prefixes[prefix] += 1
        number = as_number(value)
        if number is not None:
            self.numbers += 1
            self.minimum = min(self.minimum, number)
            self.maximum = max(self.maximum, number)

    def merge(self, later: _SlotStats) -> None:
        """Add the values of a slot of later lines, as if added here one by one (exact when
        `later` tracked all its values: what this slot's cap leaves out then goes untracked)."""
        self.seen += later.seen
        self.untracked += later.untracked + _capped_update(self.values, later.values, self.cap)
        _capped_update(self.prefixes, later.prefixes, self.cap)
        self.numbers += later.numbers
        self.minimum = min(self.minimum, later.minimum)
        self.maximum = max(self.maximum, later.maximum)

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


def _capped_update(into: Counter[Any], later: Counter[Any], cap: int) -> int:
    """Add `later`'s counts to `into` in `later`'s first-seen order, tracking no more than `cap`
    keys (as counting the lines one by one does); returns the count left untracked."""
    untracked = 0
    for key, n in later.items():
        if key in into or len(into) < cap:
            into[key] += n
        else:
            untracked += n
    return untracked


T = TypeVar("T")


def _take_over(into: dict[str, T], later: dict[str, T], cap: int, add: Callable[[T, T], None]) -> None:
    """Per-actor tables of later lines into `into`, in their first-seen order: an actor's table
    taken over when `into` has none (while under `cap` actors), else added to its own."""
    for actor, table in later.items():
        mine = into.get(actor)
        if mine is None:
            if len(into) < cap:
                into[actor] = table
            continue
        add(mine, table)


def _add_counts(into: dict[str, int], later: dict[str, int]) -> None:
    for key, n in later.items():
        into[key] = into.get(key, 0) + n


def _add_hours(into: dict[str, list[int]], later: dict[str, list[int]]) -> None:
    for level, hours in later.items():
        row = into.get(level)
        if row is None:
            into[level] = hours
            continue
        for h, n in enumerate(hours):
            if n:
                row[h] += n


class _TemplateStats:
    __slots__ = ("count", "entities", "follows", "hours", "levels", "next", "next_first", "slots", "template",
                 "windows")

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
        self.next_first: dict[int, int] = {}  # successor -> position of its first count (merging)


def _day() -> list[int]:
    return [0] * 24


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
    builder = ProfileBuilder(window_secs)
    builder.add_all(lines)
    return builder.result()


class ProfileBuilder:
    """`build_profile`'s statistics, line by line. A builder over consecutive runs of lines
    (`partial=True`: nothing capped, successor positions kept) merges into the builder of the
    lines before them exactly as if it had read them itself (`merge`): distributed training
    profiles each block of lines on its worker and merges the blocks in line order
    (trainer/distributed.py). Exact while the actors stay under `_ENTITY_TRACK_CAP`."""

    def __init__(self, window_secs: float = 120.0, partial: bool = False) -> None:
        if not window_secs > 0:
            window_secs = 120.0
        self.window_secs = window_secs
        self.partial = partial
        self.cap = sys.maxsize if partial else _VALUE_TRACK_CAP
        self.entity_cap = sys.maxsize if partial else _ENTITY_TRACK_CAP
        self.stats: dict[int, _TemplateStats] = {}
        self.level_hours: dict[str, list[int]] = defaultdict(_day)
        self.level_counts: Counter[str] = Counter()
        self.entity_levels: dict[str, dict[str, int]] = {}  # actor -> level -> lines (plain dicts: cheap to ship)
        # actor -> level -> hour histogram, for WARN and worse only (what UNUSUAL_TIME quotes).
        self.actor_hours: dict[str, dict[str, list[int]]] = {}
        self.tokens: dict[int, int] = {}
        self.active: set[int] = set()
        self.last_by_entity: dict[str, int] = {}
        self.last_line: tuple[int, float] | None = None  # (template, time) of the previous line in the stream
        self.first_line: tuple[int, float] | None = None  # (template, time) of the first timed line
        self.entries: list[tuple[str, int, int]] = []  # (actor, template, position): an actor's first line here
        self.total = 0
        self.untimed = 0
        self.first_time = math.inf
        self.last_time = -math.inf

    def add_all(self, lines: Iterable[TemplatedLine]) -> None:
        """Count the lines that follow the ones already counted."""
        stats, level_hours, level_counts = self.stats, self.level_hours, self.level_counts
        entity_levels, actor_hours, tokens, active = self.entity_levels, self.actor_hours, self.tokens, self.active
        last_by_entity, last_line, window_secs = self.last_by_entity, self.last_line, self.window_secs
        cap, entity_cap, partial = self.cap, self.entity_cap, self.partial
        total, untimed, first_time, last_time = self.total, self.untimed, self.first_time, self.last_time
        for tl in lines:
            position = total
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
            levels = entity_levels.get(entity)
            if levels is None and len(entity_levels) < entity_cap:
                levels = entity_levels[entity] = {}
            if levels is not None:
                levels[level] = levels.get(level, 0) + 1
            if tl.token and tl.token not in tokens:
                tokens[tl.token] = tid
            if tl.time_from_arrival or not math.isfinite(tl.time):
                untimed += 1
            else:
                hour = _hour(tl.time)
                st.hours[hour] += 1
                level_hours[level][hour] += 1
                if tl.line.level >= Level.WARN and (entity in actor_hours or len(actor_hours) < entity_cap):
                    actor_hours.setdefault(entity, {}).setdefault(level, [0] * 24)[hour] += 1
                window = int(tl.time // window_secs)
                st.windows[window] += 1
                active.add(window)
                first_time = min(first_time, tl.time)
                last_time = max(last_time, tl.time)
                if last_line is not None and last_line[0] != tid and 0 <= tl.time - last_line[1] <= FOLLOW_SECS:
                    before = stats.get(last_line[0])
                    if before is not None and (tid in before.follows or len(before.follows) < cap):
                        before.follows[tid] += 1
                elif last_line is None:
                    self.first_line = (tid, tl.time)
                last_line = (tid, tl.time)
            for i, value in enumerate(tl.params[:MAX_SLOTS]):
                if i >= len(st.slots):
                    st.slots.append(_SlotStats(cap))
                st.slots[i].add(value)
            previous = last_by_entity.get(entity)
            if previous is not None and previous in stats:
                nexts = stats[previous].next
                if partial and tid not in nexts:
                    stats[previous].next_first[tid] = position
                nexts[tid] += 1
            elif previous is None and partial:
                self.entries.append((entity, tid, position))
            if entity in last_by_entity or len(last_by_entity) < entity_cap:
                last_by_entity[entity] = tid
        self.last_line = last_line
        self.total, self.untimed, self.first_time, self.last_time = total, untimed, first_time, last_time

    def merge(self, later: ProfileBuilder) -> None:
        """Count a partial builder of the lines that follow these (see the class docstring)."""
        stats = self.stats
        # the stream's previous line for the later run's first timed line
        if later.first_line is not None and self.last_line is not None:
            (before_id, before_time), (tid, t) = self.last_line, later.first_line
            before = stats.get(before_id)
            if before_id != tid and 0 <= t - before_time <= FOLLOW_SECS and before is not None and (
                    tid in before.follows or len(before.follows) < self.cap):
                before.follows[tid] += 1
        # each actor's previous line for its first line in the later run, in line order with
        # the later run's own successors (the first counted decides the order ties keep)
        successions: dict[int, list[tuple[int, int, int]]] = {}  # template -> (position, successor, count)
        last_by_entity = self.last_by_entity
        for entity, tid, position in later.entries:
            previous = last_by_entity.get(entity)
            if previous is not None and previous in stats:
                successions.setdefault(previous, []).append((position, tid, 1))
        crossing = set(successions)  # templates whose successors need putting in line order
        for tid, other in later.stats.items():
            st = stats.get(tid)
            if st is None:
                st = stats[tid] = _TemplateStats(other.template)
            st.count += other.count
            st.levels.update(other.levels)
            st.hours = [a + b for a, b in zip(st.hours, other.hours, strict=True)]
            st.windows.update(other.windows)
            for i, slot in enumerate(other.slots):
                if i >= len(st.slots):
                    st.slots.append(_SlotStats(self.cap))
                st.slots[i].merge(slot)
            _capped_update(st.follows, other.follows, self.cap)
            if other.next:
                successions.setdefault(tid, []).extend(
                    (other.next_first[n], n, c) for n, c in other.next.items())
        for tid, events in successions.items():
            st = stats[tid]
            # positions are distinct (one line, one successor): tuples sort by position
            for position, n, c in (sorted(events) if tid in crossing else events):
                if self.partial and n not in st.next:
                    st.next_first[n] = self.total + position
                st.next[n] += c
        if self.partial:
            self.entries += [(e, t, self.total + p) for e, t, p in later.entries
                             if e not in self.last_by_entity]
        self.level_counts.update(later.level_counts)
        for level, hours in later.level_hours.items():
            mine = self.level_hours[level]
            self.level_hours[level] = [a + b for a, b in zip(mine, hours, strict=True)]
        # per actor (`later` is consumed: its tables are taken over, not copied)
        cap = self.entity_cap
        _take_over(self.entity_levels, later.entity_levels, cap, _add_counts)
        _take_over(self.actor_hours, later.actor_hours, cap, _add_hours)
        for token, tid in later.tokens.items():
            self.tokens.setdefault(token, tid)
        self.active |= later.active
        if len(last_by_entity) + len(later.last_by_entity) <= cap:
            last_by_entity.update(later.last_by_entity)
        else:
            for entity, tid in later.last_by_entity.items():
                if entity in last_by_entity or len(last_by_entity) < cap:
                    last_by_entity[entity] = tid
        if self.first_line is None:
            self.first_line = later.first_line
        if later.last_line is not None:
            self.last_line = later.last_line
        self.total += later.total
        self.untimed += later.untimed
        self.first_time = min(self.first_time, later.first_time)
        self.last_time = max(self.last_time, later.last_time)

    def result(self) -> dict[str, Any]:
        """The profile (what `build_profile` returns)."""
        stats, total, active = self.stats, self.total, self.active
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
        top_entities = sorted(self.entity_levels.items(), key=lambda item: -sum(item[1].values()))[:MAX_ENTITIES]
        first_time, last_time = self.first_time, self.last_time
        return {
            "version": PROFILE_VERSION,
            "window_secs": float(self.window_secs),
            "totals": {
                "lines": total,
                "templates": len(stats),
                "templates_kept": len(templates),
                "untimed": self.untimed,
                "first_time": first_time if math.isfinite(first_time) else None,
                "last_time": last_time if math.isfinite(last_time) else None,
                "active_windows": len(active),
            },
            "levels": {
                name: {"count": count, "hours": self.level_hours.get(name, [0] * 24)}
                for name, count in self.level_counts.items()
            },
            "entities": {name: dict(levels) for name, levels in top_entities},
            "entity_hours": {name: self.actor_hours[name] for name, _ in top_entities if name in self.actor_hours},
            "tokens": {str(token): tid for token, tid in sorted(self.tokens.items())},
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
