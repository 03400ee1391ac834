"""Incidents in the training history: which templates must not define "normal".

A user's history is last week's logs, incidents included. Without labels, decide the way an
operator would: a template that recurs steadily across the history is routine; a SEVERE template
that shows up on only a few of the history's days, or whose lines sit mostly in a few bursts,
is an incident and is set aside (the vocabulary leaves it out, so the novelty rule flags it, and
no learned model sees its lines).

    per template: lines, days (or hours) it occurs on, bursts (runs split by a quiet gap),
                  share of its lines in its 3 largest bursts, entities, severity
    suspect   ⇐ severe  and  (dispersion < min_dispersion  or  top-3-burst share ≥ max_burst_share)
    severe    ⇐ most of its lines are FATAL, or most are ERROR and it is rare (< rare_share of the
                history: an ERROR template that makes up a visible share of every day is chronic,
                not an incident) and ERROR is not this system's everyday level (below)
    detail    ⇐ suspect, and four fifths of its lines arrive inside episodes of at least
                `report_templates` distinct suspect templates that another template opened

An episode is a run of suspect lines (any suspect template) with no quiet gap longer than
`burst_gap_secs` (an hour: `agent/episodes.py`, the same definition the agent's incidents use).
When one episode holds many distinct severe templates at once, it is one event
reported over many lines (a crash's register dump: `instruction address: …`, `machine check: …`,
`data address: …`, one line each per node): the template that opens the episode is the incident,
the others are its detail. Detail templates are not held back on their own (a dump without its
opening failure is the system describing its state, and the opening line already flags the
incident); `history.json` lists them under the incident that opened them, so nothing is hidden.
A template that also shows up on its own, or opens episodes, keeps being held back.

ERROR is a system's *everyday level* when the templates the check keeps (the steady ones, not held
back) log at least `everyday_error_share` (one line in ten) of the history at ERROR or worse:
Apache's mod_jk writes 29 % of its lines as `[error] mod_jk child workerEnv in error state 6`, BGL
22 % as FATAL. There an ERROR line says nothing an INFO line does not, and a rare ERROR template is
judged like a routine-severity one: not held back (a FATAL one still is). Measured on the 15
Loghub-2k histories only Apache's and BGL's are such; the other thirteen log at most 1.3 % at ERROR
or worse. In the BGL samples every ERROR- and SEVERE-level line is labelled normal (1,227 of them).

Parameters come from general principles, not from a test set: "steady" means present on at least
one bucket in ten; "concentrated" means four fifths of the lines in three bursts; "rare" is the 0.5 %
share of the plain rarity rule (BASELINES.md). A history shorter than `min_buckets` buckets cannot
show what recurs, so nothing is set aside then (and the result says so).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from agent.episodes import EPISODE_GAP_SECS, split_episodes
from agent.types import Level, ParsedLine

DAY = 86400.0
HOUR = 3600.0
FATAL_REASON = "FATAL"  # the severity reason of a template whose lines are mostly FATAL


@dataclass(frozen=True)
class HistoryOptions:
    """How the history check judges templates (the defaults are argued in the module docstring)."""

    enabled: bool = True
    min_dispersion: float = 0.1  # share of the history's buckets a severe template must occur on
    max_burst_share: float = 0.8  # a severe template with this share of lines in 3 bursts is an incident
    burst_gap_secs: float = EPISODE_GAP_SECS  # a quiet gap this long ends a burst (`agent/episodes.py`)
    rare_share: float = 0.005  # an ERROR template below this share of the history is rare
    # ERROR is the everyday level when the steady templates log this share of the history at ERROR
    # or worse: then ERROR alone marks no incident (FATAL still does)
    everyday_error_share: float = 0.1
    min_buckets: int = 10  # fewer buckets of history than this: too short to judge
    report_templates: int = 10  # an episode with this many distinct suspect templates is one report
    detail_share: float = 0.8  # a suspect with this share of lines following another's opening is detail
    storm_tail: float = 0.25  # a storm that began in this last share of the history's time span ...
    storm_share: float = 0.5  # ... whose new WARN-or-worse templates log this share of the lines since ...
    storm_min_lines: int = 20  # ... and at least this many lines


@dataclass(frozen=True)
class Burst:
    """A run of one template's lines with no quiet gap longer than `burst_gap_secs`."""

    start: float
    end: float
    lines: int


@dataclass(frozen=True)
class Suspect:
    """One template held back as an incident, with the evidence an operator can check."""

    template_id: int
    template: str
    lines: int
    buckets: int  # days (or hours) it occurs on
    history_buckets: int
    bucket: str  # "day" or "hour"
    bursts: tuple[Burst, ...]  # largest first
    top_entities: tuple[tuple[str, int], ...]
    entities: int
    level: str
    reasons: tuple[str, ...]

    def describe(self) -> str:
        """One operator-readable line: lines, bursts, where, and why."""
        where = ", ".join(f"{e} ({n})" for e, n in self.top_entities)
        more = f" and {self.entities - len(self.top_entities)} more" if self.entities > len(self.top_entities) else ""
        return (f"{self.template[:80]!r}: {self.lines:,} {self.level} lines in {len(self.bursts)} "
                f"burst{'s' if len(self.bursts) != 1 else ''} on {where}{more} — {'; '.join(self.reasons)}")

    def brief(self) -> str:
        """What a scanned line of this template says about its history (`profile.json` `held_back`):
        how many lines, on how many buckets, and when the last one came."""
        last = max(b.end for b in self.bursts) if self.bursts else None
        when = f", the last on {datetime.fromtimestamp(last, UTC):%Y-%m-%d}" if last is not None else ""
        return (f"{self.lines:,} {self.level} line{'s' if self.lines != 1 else ''} on {self.buckets} of "
                f"{self.history_buckets} {self.bucket}s{when}")

    def to_json(self) -> dict[str, object]:
        """As stored in the bundle's history.json."""
        return {
            "template_id": self.template_id, "template": self.template, "lines": self.lines,
            "buckets": self.buckets, "history_buckets": self.history_buckets, "bucket": self.bucket,
            "bursts": [{"start": b.start, "end": b.end, "lines": b.lines} for b in self.bursts],
            "entities": self.entities, "top_entities": [list(e) for e in self.top_entities],
            "level": self.level, "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Period:
    """A suspect period: held-back lines (any suspect template) with no quiet gap longer than
    `burst_gap_secs` — what an operator would call one incident of the history."""

    start: float
    end: float
    lines: int
    templates: tuple[tuple[str, int], ...]  # the period's templates, most lines first (at most 3)
    template_count: int
    entities: int
    counts: tuple[tuple[int, int], ...] = ()  # every template's id and lines in the period, most first

    def describe(self) -> str:
        """One operator-readable line: when, how much, what."""
        def stamp(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")

        what = ", ".join(f"{t[:60]!r} ({n:,})" for t, n in self.templates)
        extra = self.template_count - len(self.templates)
        more = f" and {extra} more" if extra > 0 else ""
        return (f"{stamp(self.start)} – {stamp(self.end)} UTC: {self.lines:,} line{'s' if self.lines != 1 else ''} "
                f"on {self.entities:,} entit{'ies' if self.entities != 1 else 'y'}: {what}{more}")

    def to_json(self) -> dict[str, object]:
        """As stored in the bundle's history.json."""
        return {"start": self.start, "end": self.end, "lines": self.lines, "template_count": self.template_count,
                "templates": [list(t) for t in self.templates], "entities": self.entities,
                "template_ids": [list(c) for c in self.counts], "text": self.describe()}


@dataclass(frozen=True)
class Detail:
    """A severe template that arrived as part of another incident's multi-line report (not held back)."""

    template_id: int
    template: str
    lines: int
    following: int  # of its lines, how many followed another template's opening of a report
    opener: str  # the template that opened most of those reports

    def to_json(self) -> dict[str, object]:
        """As stored in the bundle's history.json."""
        return {"template_id": self.template_id, "template": self.template, "lines": self.lines,
                "following": self.following, "opened_by": self.opener}


@dataclass(frozen=True)
class HistoryReport:
    """The history check's result: the suspects, and whether the history could be judged at all."""

    suspects: tuple[Suspect, ...]  # most lines first
    lines: int
    history_buckets: int
    bucket: str
    judged: bool  # False: history too short (or cleaning turned off), nothing set aside
    note: str = ""
    details: tuple[Detail, ...] = ()  # severe templates that only arrived as another incident's detail
    periods: tuple[Period, ...] = ()  # the suspect periods, in time order
    end: float = math.nan  # the history's last timestamped line

    @property
    def suspect_ids(self) -> frozenset[int]:
        """Template ids held back as suspect."""
        return frozenset(s.template_id for s in self.suspects)

    @property
    def held_lines(self) -> int:
        """Lines of the history held back."""
        return sum(s.lines for s in self.suspects)

    def to_json(self) -> dict[str, object]:
        """As stored in the bundle's history.json."""
        return {"judged": self.judged, "note": self.note, "lines": self.lines, "held_lines": self.held_lines,
                "history_buckets": self.history_buckets, "bucket": self.bucket,
                "suspects": [s.to_json() for s in self.suspects],
                "details": [d.to_json() for d in self.details],
                "periods": [p.to_json() for p in self.periods]}

    def held_back(self) -> dict[str, str]:
        """Template id (as text) -> `Suspect.brief`, for the explanation of a scanned line whose
        template the history held back (`profile.json` `held_back`): it is not new, and the
        operator is told where the history has it."""
        return {str(s.template_id): s.brief() for s in self.suspects}

    def ongoing(self, gap: float = EPISODE_GAP_SECS) -> dict[str, object] | None:
        """The suspected incident the history ends in (`profile.json` `held_back_ongoing`): its last
        suspect period when no quiet gap of `gap` seconds separates it from the history's last
        line, so the incident may still be going on when the scanned lines begin. Its held-back
        templates with their lines in it, its start, end and lines; None when the history ends
        quiet (or holds no suspect period)."""
        if not self.periods or not math.isfinite(self.end) or self.end - self.periods[-1].end > gap:
            return None
        period = self.periods[-1]
        held = self.suspect_ids
        counts = {tid: n for tid, n in period.counts if tid in held}
        if not counts:
            return None
        return {"templates": {str(tid): n for tid, n in counts.items()}, "lines": sum(counts.values()),
                "start": period.start, "end": period.end}

    def summary_lines(self, limit: int = 12) -> list[str]:
        """What `train` prints: the incidents found in the history, largest first (all of them
        are in the bundle's history.json)."""
        if not self.judged:
            return [f"history not checked for incidents: {self.note}"]
        said = [f"  {self.note}"] if self.note else []
        if not self.suspects:
            return [f"no incidents found in your history ({self.history_buckets} {self.bucket}s checked)", *said]
        out = [f"incidents found in your history: {len(self.periods)} suspect period(s), {len(self.suspects)} "
               f"template(s), {self.held_lines:,} of {self.lines:,} lines held back as suspect (not learned as normal)"]
        largest = sorted(self.periods, key=lambda p: -p.lines)[:limit]
        out += [f"  suspect period {p.describe()}" for p in sorted(largest, key=lambda p: p.start)]
        if len(self.periods) > limit:
            out.append(f"  ... and {len(self.periods) - limit} smaller period(s) "
                       "(history.json in the bundle lists them all)")
        out += [f"  held back as suspect: {s.describe()}" for s in self.suspects[:limit]]
        rest = self.suspects[limit:]
        if rest:
            out.append(f"  ... and {len(rest)} more template(s), {sum(s.lines for s in rest):,} lines "
                       "(history.json in the bundle lists them all)")
        if self.details:
            openers = Counter(d.opener for d in self.details).most_common(2)
            out.append(f"  {len(self.details)} more severe template(s), {sum(d.lines for d in self.details):,} lines, "
                       "arrived as the detail of those incidents' multi-line reports (opened by "
                       + ", ".join(repr(o[:60]) for o, _ in openers) + "); learned, not held back on their own")
        return out + said


def _bursts(times: Sequence[float], gap: float) -> list[Burst]:
    runs = split_episodes(sorted(times), float, gap)
    return sorted((Burst(r[0], r[-1], len(r)) for r in runs), key=lambda b: -b.lines)


def _level_name(levels: Counter[int]) -> str:
    return Level(levels.most_common(1)[0][0]).name


@dataclass(frozen=True)
class HistoryLines:
    """What the history check reads of each line, as columns: its time, template id, level and
    actor (the component, else the entity). Distributed training has each block's worker build
    its lines' columns and concatenates them (trainer/distributed.py); one process builds them
    from its parsed lines (`of`)."""

    times: np.ndarray  # float64, per line; NaN: the line has no timestamp
    ids: np.ndarray  # int64, per line; < 0: no template matched
    levels: np.ndarray  # int8, per line
    actors: np.ndarray  # int32, per line: index into `names`
    names: tuple[str, ...]

    @classmethod
    def of(cls, lines: Sequence[ParsedLine], template_ids: Sequence[int] | np.ndarray) -> HistoryLines:
        """The columns of `lines`, matched to `template_ids`."""
        names: dict[str, int] = {}
        actors = np.fromiter((names.setdefault(p.component or p.entity, len(names)) for p in lines),
                             dtype=np.int32, count=len(lines))
        times = np.fromiter((math.nan if p.timestamp is None else p.timestamp for p in lines), dtype=np.float64,
                            count=len(lines))
        levels = np.fromiter((int(p.level) for p in lines), dtype=np.int8, count=len(lines))
        return cls(times, np.asarray(template_ids, dtype=np.int64).reshape(-1), levels, actors, tuple(names))

    @classmethod
    def concat(cls, parts: Sequence[HistoryLines]) -> HistoryLines:
        """The parts' lines one after the other (actor names merged)."""
        names: dict[str, int] = {}
        actors = []
        for part in parts:
            remap = np.array([names.setdefault(n, len(names)) for n in part.names], dtype=np.int32)
            actors.append(remap[part.actors] if len(part.actors) else np.empty(0, dtype=np.int32))

        def joined(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)

        return cls(joined([p.times for p in parts], np.float64), joined([p.ids for p in parts], np.int64),
                   joined([p.levels for p in parts], np.int8), joined(actors, np.int32), tuple(names))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class _Stamped:
    """The lines with a timestamp and a template, in line order, grouped by template."""

    times: np.ndarray
    ids: np.ndarray
    levels: np.ndarray
    actors: np.ndarray
    names: tuple[str, ...]
    groups: dict[int, np.ndarray]  # template -> its lines' indices, templates by first line

    @classmethod
    def of(cls, lines: HistoryLines) -> _Stamped:
        keep = ~np.isnan(lines.times) & (lines.ids >= 0)
        ids = lines.ids[keep]
        order = np.argsort(ids, kind="stable")
        unique, starts = np.unique(ids[order], return_index=True)
        runs = np.split(order, starts[1:]) if len(order) else []
        firsts = np.array([r[0] for r in runs], dtype=np.int64)
        groups = {int(unique[j]): runs[j] for j in np.argsort(firsts, kind="stable")}
        return cls(lines.times[keep], ids, lines.levels[keep], lines.actors[keep], lines.names, groups)

    def stamps(self, tid: int) -> list[float]:
        return self.times[self.groups[tid]].tolist()  # type: ignore[no-any-return]

    def level_counts(self, tid: int) -> Counter[int]:
        return Counter(self.levels[self.groups[tid]].tolist())

    def entities(self, tid: int) -> Counter[str]:
        names = self.names
        return Counter(names[a] for a in self.actors[self.groups[tid]].tolist())


def find_suspects(
    lines: Sequence[ParsedLine], template_ids: Sequence[int], texts: dict[int, str], options: HistoryOptions
) -> HistoryReport:
    """Score every template of the history (ids < 0 are lines no template matched: skipped)."""
    return find_suspects_in(HistoryLines.of(lines, template_ids), texts, options)


def find_suspects_in(lines: HistoryLines, texts: dict[int, str], options: HistoryOptions) -> HistoryReport:
    """`find_suspects` on the lines' columns."""
    if not options.enabled:
        return HistoryReport((), len(lines), 0, "day", False, "turned off")
    stamped = _Stamped.of(lines)
    if not len(stamped.ids):
        return HistoryReport((), len(lines), 0, "day", False, "the lines carry no timestamps")
    start, end = float(stamped.times.min()), float(stamped.times.max())
    span = end - start
    width, bucket = (DAY, "day") if span >= 7 * DAY else (HOUR, "hour")
    history_buckets = len(np.unique(np.floor_divide(stamped.times, width)))
    storm = _late_storm(stamped, texts, start, end, history_buckets, bucket, options)
    if history_buckets < options.min_buckets:
        note = (f"it covers {history_buckets} {bucket}(s); at least {options.min_buckets} are needed to tell "
                "steady behaviour from bursts")
        if not storm:
            return HistoryReport((), len(lines), history_buckets, bucket, False, note)
        return HistoryReport(tuple(storm), len(lines), history_buckets, bucket, True,
                             note + " (only a storm at its end was looked for)",
                             periods=_periods(stamped, {s.template_id: s.template for s in storm},
                                              options.burst_gap_secs), end=end)
    suspects: list[Suspect] = list(storm)
    storm_ids = {s.template_id for s in storm}
    for tid in stamped.groups:
        if tid in storm_ids:
            continue
        suspect = _judge(tid, stamped, texts, width, bucket, history_buckets, options)
        if suspect is not None:
            suspects.append(suspect)
    note = ""
    everyday = _everyday_error_share(stamped, {s.template_id for s in suspects})
    released = [s for s in suspects if s.template_id not in storm_ids and FATAL_REASON not in s.reasons]
    if everyday >= options.everyday_error_share and released:
        suspects = [s for s in suspects if s not in released]
        note = (f"ERROR is this history's everyday level ({everyday:.0%} of its lines are ERROR or worse, from "
                f"templates that recur): {len(released)} rare ERROR template(s) not held back")
    details = _details(stamped, {s.template_id: s for s in suspects}, options)
    kept = [s for s in suspects if s.template_id not in {d.template_id for d in details}]
    kept.sort(key=lambda s: -s.lines)
    return HistoryReport(tuple(kept), len(lines), history_buckets, bucket, True, note, details=details,
                         periods=_periods(stamped, {s.template_id: s.template for s in kept}, options.burst_gap_secs),
                         end=end)


def _judge(
    tid: int, stamped: _Stamped, texts: dict[int, str], width: float, bucket: str, history_buckets: int,
    options: HistoryOptions,
) -> Suspect | None:
    """One template of the history: a Suspect with its reasons, or None when it is routine."""
    total = len(stamped.ids)
    n = len(stamped.groups[tid])
    levels = stamped.level_counts(tid)
    fatal = sum(k for lv, k in levels.items() if lv >= Level.FATAL) / n
    error = sum(k for lv, k in levels.items() if lv >= Level.ERROR) / n
    rare = n / total < options.rare_share
    if not (fatal >= 0.5 or (error >= 0.5 and rare)):
        return None  # routine severities never mark an incident on their own
    stamps = stamped.stamps(tid)
    buckets = len({int(t // width) for t in stamps})
    bursts = _bursts(stamps, options.burst_gap_secs)
    top3 = sum(b.lines for b in bursts[:3]) / n
    reasons: list[str] = []
    # n lines can fill at most n buckets: one line on each of n buckets is as spread as a
    # template of that size can be (Loghub BGL's "ciod: Error loading …", 4 lines on 4 days of
    # 42, in 4 bursts, recurs; it is not an incident). A single line cannot show that it
    # recurs: it keeps the plain test.
    steady = options.min_dispersion * history_buckets
    if buckets < (steady if n == 1 else min(steady, n)):
        reasons.append(f"on {buckets} of {history_buckets} {bucket}s")
    if top3 >= options.max_burst_share and len(bursts) > 0 and n >= 2:
        reasons.append(f"{top3:.0%} of its lines in its {min(3, len(bursts))} largest burst(s)")
    if not reasons:
        return None
    reasons.append(FATAL_REASON if fatal >= 0.5 else f"ERROR and rare ({n / total:.2%} of lines)")
    entities = stamped.entities(tid)
    return Suspect(tid, texts.get(tid, ""), n, buckets, history_buckets, bucket, tuple(bursts),
                   tuple(entities.most_common(3)), len(entities), _level_name(levels), tuple(reasons))


def _everyday_error_share(stamped: _Stamped, suspect: set[int]) -> float:
    """The share of the history's lines logged at ERROR or worse by the templates not held back
    (the steady ones): how much of an ordinary day is ERROR here."""
    total = len(stamped.ids)
    if not total:
        return 0.0
    held = np.isin(stamped.ids, np.fromiter(suspect, dtype=np.int64, count=len(suspect)))
    return int(((stamped.levels >= Level.ERROR) & ~held).sum()) / total


def _late_storm(
    stamped: _Stamped, texts: dict[int, str], start: float, end: float,
    history_buckets: int, bucket: str, options: HistoryOptions,
) -> list[Suspect]:
    """An incident still going on when the history ends: WARN-or-worse templates first logged in
    its last `storm_tail` of time that make up at least `storm_share` of every line logged since
    the first of them (and `storm_min_lines`). Then every template first logged since that moment
    is part of the storm, whatever its level, and is held back: the history is too recent on it
    to call it normal, and tomorrow's logs will show whether it goes on. On the 15 Loghub-2k
    histories this finds one storm, Hadoop's (WARN "Address change detected" / "Failed to renew
    lease", then "ERROR IN CONTACTING RM" and "Retrying connect to server": 87 % of its last
    1.5 minutes); elsewhere a template new at the end is at most 2 % of the lines since."""
    span = end - start
    if span <= 0:
        return []
    groups = stamped.groups
    first = {t: float(stamped.times[g].min()) for t, g in groups.items()}
    cut = end - options.storm_tail * span
    severe = [t for t, g in groups.items()
              if first[t] >= cut and int((stamped.levels[g] >= Level.WARN).sum()) >= 0.5 * len(g)]
    if not severe:
        return []
    began = min(first[t] for t in severe)
    since = int((stamped.times >= began).sum())
    lines = sum(len(groups[t]) for t in severe)
    if lines < options.storm_min_lines or lines < options.storm_share * since:
        return []
    stamp = datetime.fromtimestamp(began, UTC).strftime("%Y-%m-%d %H:%M:%S")
    why = (f"first logged at the history's end, in a storm of new WARN-or-worse lines since {stamp} UTC "
           f"({lines:,} of the {since:,} lines since)")
    out = []
    for tid in sorted((t for t in groups if first[t] >= began), key=lambda t: -len(groups[t])):
        stamps = stamped.stamps(tid)
        levels = stamped.level_counts(tid)
        width = DAY if bucket == "day" else HOUR
        entities = stamped.entities(tid)
        out.append(Suspect(tid, texts.get(tid, ""), len(groups[tid]), len({int(t // width) for t in stamps}),
                           history_buckets, bucket, tuple(_bursts(stamps, options.burst_gap_secs)),
                           tuple(entities.most_common(3)), len(entities), _level_name(levels), (why,)))
    return out


def _held(stamped: _Stamped, held: Iterable[int]) -> np.ndarray:
    """Indices of the stamped lines of the `held` templates, in line order."""
    wanted = np.fromiter(held, dtype=np.int64)
    return np.flatnonzero(np.isin(stamped.ids, wanted))


def _periods(stamped: _Stamped, held: dict[int, str], gap: float) -> tuple[Period, ...]:
    """The held-back lines split where no suspect line came for `gap` seconds."""
    idx = _held(stamped, held)
    idx = idx[np.argsort(stamped.times[idx], kind="stable")]
    names = stamped.names
    lines = list(zip(stamped.times[idx].tolist(), stamped.ids[idx].tolist(),
                     [names[a] for a in stamped.actors[idx].tolist()], strict=True))
    groups = split_episodes(lines, lambda x: x[0], gap)
    out = []
    for g in groups:
        templates = Counter(t for _, t, _ in g)
        out.append(Period(g[0][0], g[-1][0], len(g), tuple((held[t], n) for t, n in templates.most_common(3)),
                          len(templates), len({e for _, _, e in g}), tuple(templates.most_common())))
    return tuple(out)


def _details(stamped: _Stamped, suspects: dict[int, Suspect], options: HistoryOptions) -> tuple[Detail, ...]:
    """Suspects that mostly arrive after another template opened a many-template episode."""
    idx = _held(stamped, suspects)
    idx = idx[np.lexsort((stamped.ids[idx], stamped.times[idx]))]
    times = list(zip(stamped.times[idx].tolist(), stamped.ids[idx].tolist(), strict=True))
    episodes = [[tid for _, tid in run] for run in split_episodes(times, lambda x: x[0], options.burst_gap_secs)]
    following: Counter[int] = Counter()
    openers: dict[int, Counter[int]] = {}
    for ep in episodes:
        if len(set(ep)) < options.report_templates:
            continue
        for tid in ep:
            if tid != ep[0]:
                following[tid] += 1
                openers.setdefault(tid, Counter())[ep[0]] += 1
    out = [Detail(tid, suspects[tid].template, suspects[tid].lines, n,
                  suspects[openers[tid].most_common(1)[0][0]].template)
           for tid, n in following.items() if n >= options.detail_share * suspects[tid].lines]
    return tuple(sorted(out, key=lambda d: -d.lines))
