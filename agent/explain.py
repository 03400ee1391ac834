"""Why a line is anomalous: facts computed from the training profile, each with its numbers.

The `Explainer` holds the profile that `trainer.profile.build_profile` wrote at training and a
small amount of live state (per-template counts in a sliding window, fed by `observe` for every
line). `explain` turns a flagged line into typed `Explanation`s whose `facts` carry the numbers
and whose `text` renders to seed 002's "Anomaly Factors" lines; `is_notable` says when the facts
alone are strong enough to call a line anomalous even though no model fired.

Explanations that depend on time (UNUSUAL_TIME, BURST) are not computed for a line whose time is
its arrival time (`time_from_arrival`): a batch scan of an untimed file "arrives" in a second, so
every template would look like a burst. Every explanation of such a line says so in its facts.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.episodes import EPISODE_GAP_SECS
from agent.held_back import OngoingHistory, OngoingIncident
from agent.lines import actor_of, as_number, ip_prefix
from agent.template_twins import TemplateTwins
from agent.text_memo import remember
from agent.types import DetectorScore, Explanation, ExplanationKind, Level, LineContext, ParsedLine, TemplatedLine
from agent.wording import clip, plural


@dataclass(frozen=True)
class ExplainConfig:
    """When a line earns each explanation (rarity, burst, unusual time) — the thresholds."""

    window_secs: float = 120.0
    # A template below this share of the training lines is "rare".
    rare_frequency: float = 1e-4
    # BURST: the window count must reach min_burst, exceed burst_factor x the normal p99 (of
    # the windows where the template occurs, so bursty-by-nature templates stay quiet) and lie
    # burst_sigmas standard deviations above the normal mean.
    min_burst: int = 5
    burst_factor: float = 3.0
    burst_sigmas: float = 4.0
    # ... and only when the training history covers this many active windows: with fewer (the
    # Android and Spark histories span under a minute, Hadoop's 4.5 minutes) its counts cannot
    # say what a normal window holds, so nothing is called a burst.
    min_burst_windows: int = 30
    # A burst raises a line on its own once, not on every line past the floor (`burst_alert`):
    # on the line whose window count first passes the floor, then each time the count reaches
    # this many times the count it last raised at (the incident is updated as the burst grows).
    # The burst is over once no line of the template has been past the floor for a whole window.
    burst_escalation: float = 2.0
    # The suspected incident the history ends in goes on (`agent/held_back.py`): its lines are one
    # incident counted from the history's count, raised on its first line and at each doubling,
    # until no line of it comes for this long (an episode's quiet hour, `agent/episodes.py`).
    ongoing_gap_secs: float = EPISODE_GAP_SECS
    # UNUSUAL_TIME: this hour holds less than rare_hour_share of the template's (or level's)
    # timed training lines, judged only with at least min_hour_samples of them.
    rare_hour_share: float = 0.005
    min_hour_samples: int = 50
    # SEQUENCE from the profile: P(actual | previous) below this, with enough transitions seen
    # and the stored successors covering nearly all of them (so "not listed" means "never").
    sequence_min_prob: float = 0.01
    min_transitions: int = 30
    min_next_coverage: float = 0.99
    # SEVERITY: a WARN+ level that makes up less than this share of the template's lines.
    rare_level_share: float = 0.01
    min_level_samples: int = 50
    # UNUSUAL_PARAMETER: slot judged only when its stored values cover this share of it.
    param_coverage: float = 0.99
    min_param_seen: int = 50
    numeric_stretch: float = 2.0  # a number beyond max + stretch x (max - min) is unusual
    # Bounds on live state.
    max_tracked_templates: int = 10_000
    max_window_events: int = 10_000
    max_tokens: int = 100_000
    max_actors: int = 100_000
    max_pending: int = 20_000  # lines observed but not yet explained (a micro-batch or so)


def hour_label(hour: int) -> str:
    """An hour of the day as people say it: midnight, 9 AM, noon, 3 PM."""
    hour %= 24
    if hour == 0:
        return "midnight"
    if hour == 12:
        return "noon"
    return f"{hour} AM" if hour < 12 else f"{hour - 12} PM"


def busy_hours(hours: Sequence[int]) -> str:
    """The hours holding most lines as ranges ("9 AM - 6 PM"); the end is exclusive."""
    total = sum(hours)
    if total <= 0 or len(hours) != 24:
        return "unknown"
    busy = [h / total >= 1 / 48 for h in hours]
    if all(busy):
        return "all day"
    if not any(busy):
        return "spread thin"
    # Rotate so that the scan starts at a quiet hour; ranges that wrap midnight stay whole.
    start = busy.index(False)
    ranges: list[tuple[int, int]] = []
    run_start: int | None = None
    for step in range(25):
        h = (start + step) % 24
        if step < 24 and busy[h]:
            if run_start is None:
                run_start = h
        elif run_start is not None:
            ranges.append((run_start, h))
            run_start = None
    # Name at most the three busiest ranges, in clock order.
    mass = {r: sum(hours[h % 24] for h in range(r[0], r[1] if r[1] > r[0] else r[1] + 24)) for r in ranges}
    top = sorted(sorted(ranges, key=lambda r: -mass[r])[:3])
    text = ", ".join(f"{hour_label(a)} - {hour_label(b)}" for a, b in top)
    return text + (", …" if len(ranges) > 3 else "")


def short_template(text: str, limit: int = 48) -> str:
    """A template on one line, cut to `limit` characters with an ellipsis at a word boundary
    (`wording.clip`)."""
    return clip(text, limit)


def _hour_of(t: float) -> int:
    return int((t // 3600) % 24)


def _pct(share: float) -> str:
    if share == 0:
        return "0%"
    if share < 0.001:
        return f"{share * 100:.3f}%"
    return f"{share * 100:.1f}%"


# ---------------------------------------------------------------- the explainer


_MAX_RENAMED = 256  # lazy renames kept (`Explainer.rename_template`); then all are applied at once


class Explainer:
    """Explanations of flagged lines from the training profile and live window counts."""

    def __init__(
        self, profile: dict[str, Any], templates: Mapping[int, str], config: ExplainConfig = ExplainConfig(),
        model_types: Mapping[str, str] | None = None, witnesses: frozenset[str] = frozenset(),
    ) -> None:
        """`model_types` maps each bundle model's name to its type, so a model's alert is
        explained in its own terms (`agent.explain_models`); `witnesses` are the served models
        outside the ensemble at the served sensitivity (their explanations say so)."""
        from agent.explain_models import ModelExplainer

        self.config = config
        self.witnesses = witnesses
        self.templates = templates
        raw_templates = profile.get("templates") or {}
        self._profile: dict[int, dict[str, Any]] = {int(k): v for k, v in raw_templates.items()}
        totals = profile.get("totals") or {}
        self._training_lines = int(totals.get("lines") or 0)
        # Windows of history with any line (None: a profile that does not say).
        self._active_windows: int | None = (int(totals["active_windows"]) if "active_windows" in totals else None)
        self._levels: dict[str, dict[str, Any]] = dict(profile.get("levels") or {})
        self._entities: dict[str, dict[str, int]] = dict(profile.get("entities") or {})
        self._entity_hours: dict[str, dict[str, list[int]]] = dict(profile.get("entity_hours") or {})
        # Templates the history check held back as a suspected incident -> where the history has
        # them (`trainer/history.py`): a scanned line of one is not new, and says so.
        self._held_back: dict[int, str] = {int(k): str(v) for k, v in (profile.get("held_back") or {}).items()}
        # ... and the suspected incident the history ends in, counted as it goes on (None: none)
        ongoing = OngoingHistory.from_profile(profile)
        self.ongoing: OngoingIncident | None = (
            OngoingIncident(ongoing, config.ongoing_gap_secs, config.burst_escalation) if ongoing is not None else None)
        self._ongoing_templates: frozenset[int] = ongoing.templates if ongoing is not None else frozenset()
        self.ongoing_templates = self._ongoing_templates
        # observed line -> (whether the ongoing incident raised it, its count then) (`held_back_repeat`)
        self._ongoing_seen: dict[int, tuple[tuple[int, int, float, str], bool, int]] = {}
        # actor -> its latest template; observed line -> the template its actor logged before it.
        self._last_by_actor: OrderedDict[str, int] = OrderedDict()
        # Merged-away template id -> its survivor, for the actors' latest templates not renamed yet
        # (`rename_template`): read through when noted, so a merge costs no scan of the actors.
        self._renamed: dict[int, int] = {}
        self._previous: OrderedDict[int, tuple[tuple[int, int, float, str], int | None]] = OrderedDict()
        # observed line -> its template's window count when it arrived (later lines of the same
        # micro-batch must not count: verdicts may not depend on how input was batched).
        self._count_at: dict[int, int] = {}
        self._tokens: dict[int, int] = {int(k): int(v) for k, v in (profile.get("tokens") or {}).items()}
        self._token_cap = max(config.max_tokens, len(self._tokens))
        # template id -> recent times of its lines, newest right; LRU over templates.
        self._windows: OrderedDict[int, deque[float]] = OrderedDict()
        self._floors: dict[int, float] = {}  # template id -> burst_floor (from the profile)
        # The facts fixed by a line's template, level, actor and hour (`_fixed_facts`), by those:
        # an anomaly storm repeats a few templates, and these facts read only the profile.
        self._fixed: dict[tuple[int, str, bool, int, str, int], tuple[tuple[Explanation, ...],
                                                                     tuple[Explanation, ...]]] = {}
        # template id -> what a BURST of it says besides the count (`_burst`)
        self._burst_said: dict[int, tuple[str, float, float, float, float | None]] = {}
        self._bursts: dict[tuple[int, int], Explanation] = {}  # (template id, count) -> its BURST fact
        # template id -> [latest time a line of it was past the floor, the count it last raised at]
        self._runs: OrderedDict[int, list[float]] = OrderedDict()
        # observed line -> whether its burst raised it (`burst_alert` decides each line once)
        self._raised: dict[int, bool] = {}
        self._models = ModelExplainer(profile, self._named, self._token_template, model_types)
        self._twins: TemplateTwins | None = None  # built at the first new template (`_new_template`)

    # ---- live state

    def observe(self, line: TemplatedLine) -> None:
        """Count `line` in its template's sliding window (call for every line, in order)."""
        previous, count = self.note(line)
        self.remember(line, previous, count)

    def note(self, line: TemplatedLine) -> tuple[int | None, int]:
        """The live state every line updates (its actor's latest template, its template's window),
        without remembering the line for a later explanation: the pipeline's short road calls this
        alone for a line it judges NORMAL. Returns the template the actor logged before it and the
        template's window count with it (0 for a line timed by its arrival)."""
        return self.note_at(line.token, line.template_id, actor_of(line.line), line.time, line.time_from_arrival)

    def note_at(self, token: int, template_id: int, actor: str, t: float, time_from_arrival: bool
                ) -> tuple[int | None, int]:
        """`note` from the line's pieces (the pipeline's short road builds no line object): its
        model token, template id, actor (`agent.lines.actor_of`), time and whether that is its
        arrival time."""
        if token and token not in self._tokens and len(self._tokens) < self._token_cap:
            self._tokens[token] = template_id
        cfg = self.config
        last_by_actor = self._last_by_actor
        renamed = self._renamed
        if renamed and template_id in renamed:  # an id merged away is handed out again
            self._rename_now(template_id)
        previous = last_by_actor.get(actor)
        if renamed and previous is not None:
            previous = renamed.get(previous, previous)
        last_by_actor[actor] = template_id
        if previous is None:
            if len(last_by_actor) > cfg.max_actors:
                last_by_actor.popitem(last=False)
        else:
            last_by_actor.move_to_end(actor)  # now the most recent
        if time_from_arrival or not math.isfinite(t):
            return previous, 0
        windows = self._windows
        window = windows.get(template_id)
        if window is None:
            window = windows[template_id] = deque(maxlen=cfg.max_window_events)
            if len(windows) > cfg.max_tracked_templates:
                windows.popitem(last=False)
        else:
            windows.move_to_end(template_id)  # now the most recent
            if window and t < window[-1] - cfg.window_secs:
                window.clear()  # the clock went back by more than a window: start over
        window.append(t)
        horizon = t - cfg.window_secs
        while window and window[0] <= horizon:
            window.popleft()
        return previous, len(window)

    def remember(self, line: TemplatedLine, previous: int | None, count: int) -> None:
        """Keep what `explain` needs of a noted line: the template its actor logged before it and
        its window count on arrival (later lines of its micro-batch must not count)."""
        # Keyed by the line object's id and checked by a small fingerprint, not the line itself:
        # holding 20,000 lines (raw text, message, template) would cost up to GiBs of memory.
        self._previous[id(line)] = (_fingerprint(line), previous)
        self._previous.move_to_end(id(line))  # an id reused by a new object is fresh, not old
        if len(self._previous) > self.config.max_pending:
            old, _ = self._previous.popitem(last=False)
            self._count_at.pop(old, None)
            self._raised.pop(old, None)
            self._ongoing_seen.pop(old, None)
        self._count_at.pop(id(line), None)
        self._raised.pop(id(line), None)
        self._ongoing_seen.pop(id(line), None)
        if count and not line.time_from_arrival:
            self._count_at[id(line)] = count

    def _burst_judged(self, burst: Mapping[str, Any]) -> bool:
        """Whether the history covers enough windows (`min_burst_windows`) to call a count a burst."""
        windows = burst.get("windows", self._active_windows)
        return windows is None or float(windows) >= self.config.min_burst_windows

    def burst_floor(self, template_id: int) -> float:
        """The largest window count of this template that is no burst (`_burst_numbers`): a
        line counted at most this many is not notable for its count."""
        floor = self._floors.get(template_id)
        if floor is None:
            cfg = self.config
            burst = (self._profile.get(template_id) or {}).get("burst") or {}
            p99 = max(float(burst.get("p99", 0.0)), float(burst.get("p99_present", 0.0)))
            floor = max(cfg.min_burst - 1, cfg.burst_factor * p99,
                        float(burst.get("mean", 0.0)) + cfg.burst_sigmas * float(burst.get("std", 0.0)))
            if not self._burst_judged(burst):
                floor = math.inf  # no count is a burst on this history
            self._floors[template_id] = floor
        return floor

    def rename_template(self, old: int, new: int) -> None:
        """Template `old` was merged into `new` (the online miner): its window and the actors
        whose last line it was follow the surviving id."""
        moved = self._windows.pop(old, None)
        if moved is not None:
            kept = self._windows.get(new)
            if kept is None:
                self._windows[new] = moved
            else:
                merged = sorted((*kept, *moved))
                kept.clear()
                kept.extend(merged[-(kept.maxlen or len(merged)) :])
        # The actors whose latest template it was are renamed lazily: `note_at` reads their entry
        # through `_renamed` (an OrderedDict of thousands of actors cost up to 1 ms per scan, and a
        # BGL run merges a few times). Exactly as a scan now would: an entry already renamed is
        # renamed again along with it, and an entry of the same id written later means that id.
        renamed = self._renamed
        for stale in (old, new):  # merged away before and handed out again: their old entries first
            if stale in renamed:  # (so no survivor is itself renamed: one lookup reads an entry)
                self._rename_now(stale)
        for was, now in renamed.items():
            if now == old:
                renamed[was] = new
        renamed[old] = new
        if len(renamed) > _MAX_RENAMED:
            for was in list(renamed):
                self._rename_now(was)

    def _rename_now(self, old: int) -> None:
        """Rename the actors' latest template `old` to what it was merged into, now (a scan)."""
        new = self._renamed.pop(old)
        last_by_actor = self._last_by_actor
        for actor, tid in last_by_actor.items():
            if tid == old:
                last_by_actor[actor] = new

    def window_count(self, template_id: int) -> int:
        """Lines of the template in the window ending at its latest observed line."""
        window = self._windows.get(template_id)
        return len(window) if window is not None else 0

    # ---- lookups

    def template_text(self, template_id: int | None) -> str:
        """The text of a template, from the miners or the training profile, or a placeholder."""
        if template_id is None:
            return "unknown"
        text = self.templates.get(template_id)
        if text is None:
            text = (self._profile.get(template_id) or {}).get("template")
        return str(text) if text is not None else f"template {template_id}"

    def _token_template(self, token: int) -> int | None:
        return self._tokens.get(int(token)) if token else None

    def previous_template(self, ctx: LineContext,
                          seen: tuple[tuple[int, int, float, str], int | None] | None = None) -> int | None:
        """The template the line's actor logged just before it (from `observe`), else the one
        before it in the entity history the pipeline keeps. `seen`: the line's `_previous` entry
        when the caller looked it up."""
        if seen is None:
            seen = self._previous.get(id(ctx.line))
        if seen is not None and seen[0] == _fingerprint(ctx.line):
            return seen[1]
        return self._token_template(ctx.history[-2]) if len(ctx.history) >= 2 else None

    def _label(self, template_id: int | None) -> str:
        return f"[{short_template(self.template_text(template_id), 40)}]"

    def _named(self, template_id: int | None) -> str:
        """A template as a model's explanation names it: its id and its text, "#12 [text]"."""
        return self._label(template_id) if template_id is None else f"#{template_id} {self._label(template_id)}"

    # ---- the individual facts (None when the fact does not hold)

    def _new_template(self, line: TemplatedLine) -> Explanation | None:
        if not line.is_new and line.template_id in self._profile:
            return None
        if not line.is_new and not self._profile:
            return None  # no profile at all: nothing to compare with
        held = self._held_back.get(line.template_id) if line.is_new else None
        if held is not None:
            return Explanation(
                ExplanationKind.NEW_TEMPLATE,
                f"HELD BACK: in your history only as a suspected incident ({held}); not learned as normal",
                (("template_id", line.template_id), ("template", line.template[:300]), ("held_back", held)),
            )
        facts: tuple[tuple[str, object], ...] = (("template_id", line.template_id), ("template", line.template[:300]))
        text = "NEW TEMPLATE: Never seen before in training data"
        if self._twins is None:
            self._twins = TemplateTwins(self._profile)
        twin = self._twins.find(line.template)
        if twin is not None:
            # The known message it repeats but for a word or two (`agent.template_twins`).
            said = ", ".join(f'"{new}" where it had "{old}"' for new, old in twin.differs) or "other values"
            text += (f"; the same words as {self._named(twin.template_id)} "
                     f"({plural(twin.count, 'training line')}) but {said}")
            facts += (("like_template", twin.template_id), ("like_count", twin.count),
                      ("differs", [list(d) for d in twin.differs]))
        return Explanation(ExplanationKind.NEW_TEMPLATE, text, facts)

    def _rare_template(self, line: TemplatedLine) -> Explanation | None:
        entry = self._profile.get(line.template_id)
        if entry is None or line.is_new:
            return None
        frequency = float(entry.get("frequency", 0.0))
        if frequency >= self.config.rare_frequency:
            return None
        count = int(entry.get("count", 0))
        return Explanation(
            ExplanationKind.RARE_TEMPLATE,
            f"RARE TEMPLATE: seen {count:,} time{'s' if count != 1 else ''} in "
            f"{self._training_lines:,} training lines (frequency {_pct(frequency)})",
            (("count", count), ("frequency", frequency), ("training_lines", self._training_lines)),
        )

    def _unusual_time(self, line: TemplatedLine) -> Explanation | None:
        if line.time_from_arrival or not math.isfinite(line.time):
            return None
        hour = _hour_of(line.time)
        cfg = self.config
        candidates: list[tuple[str, str, Sequence[int]]] = []
        entry = self._profile.get(line.template_id)
        if entry is not None and not line.is_new:
            candidates.append(("template", "This template", entry.get("hours") or []))
        level = line.line.level
        if level >= Level.WARN:
            actor = actor_of(line.line)
            actor_hours = (self._entity_hours.get(actor) or {}).get(level.name)
            if actor_hours is not None:
                candidates.append(("entity", f"{level.name} from {actor}", actor_hours))
            level_entry = self._levels.get(level.name)
            if level_entry is not None:
                candidates.append(("level", f"This log level ({level.name})", level_entry.get("hours") or []))
        for scope, subject, hours in candidates:
            total = sum(hours)
            if len(hours) != 24 or total < cfg.min_hour_samples:
                continue
            share = hours[hour] / total
            # The neighbouring hours must be quiet too: a template seen at 9 PM and 11 PM is
            # not unusual at 10 PM, the sample was just thin there.
            around = (hours[(hour - 1) % 24] + hours[hour] + hours[(hour + 1) % 24]) / total
            if share >= cfg.rare_hour_share or around >= 3 * cfg.rare_hour_share:
                continue
            normal = busy_hours(hours)
            return Explanation(
                ExplanationKind.UNUSUAL_TIME,
                f"UNUSUAL TIME: {subject} rare at {hour_label(hour)} "
                f"({_pct(share)} of its {total:,} training lines; normal: {normal})",
                (
                    ("scope", scope),
                    ("hour_utc", hour),
                    ("share", share),
                    ("samples", total),
                    ("normal_hours", normal),
                ),
            )
        return None

    def _burst_count(self, line: TemplatedLine, seen: tuple[tuple[int, int, float, str], int | None] | None
                     ) -> int | None:
        """The template's window count of the line when it is a burst (None otherwise): its count
        on arrival when the line was remembered (`seen`: its `_previous` entry), else the
        template's current count. A count above `burst_floor` is one: at least `min_burst`,
        above `burst_factor` x the normal p99 and `burst_sigmas` deviations above the mean, on a
        history that covers enough windows."""
        if line.time_from_arrival:
            return None
        count = self._count_at.get(id(line), 0) if seen is not None and seen[0] == _fingerprint(line) \
            else self.window_count(line.template_id)
        return self._past_floor(line.template_id, count)

    def _past_floor(self, template_id: int, count: int) -> int | None:
        """`count` when a window count this big is a burst of the template (`_burst_count`), else None."""
        if count < self.config.min_burst:
            return None
        return count if count > self.burst_floor(template_id) else None

    def _burst_numbers(self, line: TemplatedLine) -> tuple[int, float, float, float] | None:
        """(count, mean, std, p99) when this template's window count is a burst."""
        count = self._burst_count(line, self._previous.get(id(line)))
        if count is None:
            return None
        _, mean, std, p99, _ = self._burst_normal(line.template_id)
        return count, mean, std, p99

    def _burst_normal(self, template_id: int) -> tuple[str, float, float, float, float | None]:
        """What a BURST of the template says besides its count: the normal text, the profile's
        mean, std and p99 of its window counts, and the mean to divide by (None: no mean)."""
        said = self._burst_said.get(template_id)
        if said is None:
            burst = (self._profile.get(template_id) or {}).get("burst") or {}
            mean = float(burst.get("mean", 0.0))
            std = float(burst.get("std", 0.0))
            p99 = max(float(burst.get("p99", 0.0)), float(burst.get("p99_present", 0.0)))
            normal = "never seen" if template_id not in self._profile else f"≤{p99:g} when it occurs, mean {mean:.2f}"
            said = (normal, mean, std, p99, max(mean, 1e-9) if mean > 0 else None)
            remember(self._burst_said, template_id, said, self.config.max_tracked_templates)
        return said

    def _burst(self, line: TemplatedLine,
               seen: tuple[tuple[int, int, float, str], int | None] | None = None) -> Explanation | None:
        count = self._burst_count(line, seen if seen is not None else self._previous.get(id(line)))
        return None if count is None else self._burst_of(line.template_id, count)

    def _burst_of(self, template_id: int, count: int) -> Explanation:
        """The BURST fact of a count past the floor, remembered by (template, count)."""
        key = (template_id, count)
        found = self._bursts.get(key)
        if found is None:
            found = self._burst_fact(template_id, count)
            remember(self._bursts, key, found, _FIXED_MEMO_ENTRIES)
        return found

    def _burst_fact(self, template_id: int, count: int) -> Explanation:
        """The BURST fact of `count` lines of the template in the window."""
        normal, mean, std, p99, per = self._burst_normal(template_id)
        minutes = self.config.window_secs / 60
        span = f"{minutes:g} minute{'s' if minutes != 1 else ''}"
        return Explanation(
            ExplanationKind.BURST,
            f"BURST DETECTED: {count:,} similar lines in last {span} (normal: {normal})",
            (
                ("count", count),
                ("window_secs", self.config.window_secs),
                ("normal_mean", mean),
                ("normal_std", std),
                ("normal_p99", p99),
                ("ratio_to_mean", count / per if per is not None else None),
            ),
        )

    def _sequence(self, ctx: LineContext, scores: Sequence[DetectorScore],
                  seen: tuple[tuple[int, int, float, str], int | None] | None = None) -> list[Explanation]:
        """What each fired next-template model (DeepLog, LogAnomaly) expected here and what came;
        without one, the training profile's transition probabilities (`_profile_sequence`).
        `seen`: the line's `_previous` entry when the caller looked it up."""
        line = ctx.line
        previous = self.previous_template(ctx, seen)
        out: list[Explanation] = []
        for score in scores:
            if not score.fired:  # (before reading its details: most scores of an anomaly did not fire)
                continue
            said = self._models.deeplog_line(score, line.template_id, line.template, previous, line.is_new)
            if said is None:
                continue
            text, facts = said
            named: list[dict[str, object]] = dict(facts)["expected_templates"]  # type: ignore[assignment]
            normal_path = [self._label(previous)] if previous is not None else []
            normal_path.append(str(named[0]["said"]))
            this, actual_path = self._actual_path(line, previous)
            out.append(Explanation(
                ExplanationKind.SEQUENCE,
                f"{text}\n"
                f"Normal: {' → '.join(normal_path)}\n"
                f"Actual: {' → '.join(actual_path) or this}",
                tuple(facts),
            ))
        if out:
            return out
        found = self._profile_sequence(ctx, previous)
        return [found] if found is not None else []

    def _profile_sequence(self, ctx: LineContext, previous: int | None) -> Explanation | None:
        """P(this template | the previous one) in training, when it is near zero."""
        line = ctx.line
        if previous is None:
            return None
        entry = self._profile.get(previous)
        if entry is None or int(entry.get("next_total", 0)) < self.config.min_transitions:
            return None
        nexts: dict[str, float] = entry.get("next") or {}
        prob = float(nexts.get(str(line.template_id), 0.0))
        if prob >= self.config.sequence_min_prob:
            return None
        if prob == 0.0 and float(entry.get("next_coverage", 0.0)) < self.config.min_next_coverage:
            return None  # an unlisted successor may just be one of many rare ones
        ranked = sorted(((int(k), float(v)) for k, v in nexts.items()), key=lambda kv: -kv[1])[:3]
        listing = ", ".join(f"{self._label(t)} {p:.0%}" for t, p in ranked)
        path = [int(t) for t in entry.get("path") or [previous]]
        _, actual_path = self._actual_path(line, previous)
        return Explanation(
            ExplanationKind.SEQUENCE,
            f"SEQUENCE ANOMALY: after {self._named(previous)} training saw {listing}; this template followed it "
            f"with P = {prob:.3g}\n"
            f"Expected: {listing}\n"
            f"Normal: {' → '.join(self._label(t) for t in path)}\n"
            f"Actual: {' → '.join(actual_path)}",
            (
                ("probability", prob),
                ("expected", [[t, p] for t, p in ranked]),
                ("actual", line.template_id),
                ("previous", previous),
                ("normal_path", path),
            ),
        )

    def _actual_path(self, line: TemplatedLine, previous: int | None) -> tuple[str, list[str]]:
        """The line's label and the path that came: (previous →) this (built only for a fact
        that holds)."""
        this = f"[{short_template(line.template, 40)}]"  # a new template is in no mapping yet
        return this, ([self._label(previous), this] if previous is not None else [])

    def _severity_numbers(self, line: TemplatedLine) -> tuple[str, str, int, int] | None:
        """(scope, subject, lines with this level, lines) when the level is unusual."""
        level = line.line.level
        if level < Level.WARN:
            return None
        cfg = self.config
        entry = self._profile.get(line.template_id)
        if entry is not None and not line.is_new:
            return self._template_level_rare(entry, level)
        entity = actor_of(line.line)
        entity_levels = self._entities.get(entity)
        if entity_levels is not None:
            total = sum(entity_levels.values())
            same = int(entity_levels.get(level.name, 0))
            if total >= cfg.min_level_samples and same / total < cfg.rare_level_share:
                return "entity", entity, same, total
            return None
        overall = self._levels.get(level.name)
        same = int((overall or {}).get("count", 0))
        if self._training_lines >= cfg.min_level_samples and same / self._training_lines < cfg.rare_level_share:
            return "all", "the training logs", same, self._training_lines
        return None

    def _template_level_rare(self, entry: dict[str, Any], level: Level) -> tuple[str, str, int, int] | None:
        """(scope, subject, lines with this level, lines) when the template rarely had this level."""
        levels: dict[str, int] = entry.get("levels") or {}
        total = sum(levels.values())
        same = int(levels.get(level.name, 0))
        if total >= self.config.min_level_samples and same / total < self.config.rare_level_share:
            return "template", "this template", same, total
        return None

    def _severity(self, line: TemplatedLine) -> Explanation | None:
        numbers = self._severity_numbers(line)
        if numbers is None:
            return None
        scope, subject, same, total = numbers
        level = line.line.level.name
        return Explanation(
            ExplanationKind.SEVERITY,
            f"SEVERITY: {level} is unusual for {subject} ({same:,} of {total:,} training lines were {level})",
            (
                ("scope", scope),
                ("subject", subject),
                ("level", level),
                ("level_count", same),
                ("lines", total),
            ),
        )

    def _unusual_parameter(self, line: TemplatedLine) -> Explanation | None:
        entry = self._profile.get(line.template_id)
        if entry is None or line.is_new:
            return None
        cfg = self.config
        slots: list[dict[str, Any]] = entry.get("params") or []
        for index, value in enumerate(line.params[: len(slots)]):
            slot = slots[index]
            seen = int(slot.get("seen", 0))
            if seen < cfg.min_param_seen:
                continue
            value = value[:80]
            values: dict[str, int] = slot.get("values") or {}
            if value in values:
                continue
            prefix = ip_prefix(value)
            prefixes: dict[str, int] | None = slot.get("ip_prefixes")
            if (
                prefix is not None
                and prefixes
                and prefix not in prefixes
                and float(slot.get("ip_prefix_coverage", 0.0)) >= cfg.param_coverage
            ):
                known = ", ".join(list(prefixes)[:3])
                return Explanation(
                    ExplanationKind.UNUSUAL_PARAMETER,
                    f"UNUSUAL PARAMETER: {value} is from a network never seen in this field "
                    f"(training: {known}{', …' if len(prefixes) > 3 else ''})",
                    (
                        ("slot", index),
                        ("value", value),
                        ("network", prefix),
                        ("known_networks", list(prefixes)[:10]),
                    ),
                )
            numeric = slot.get("numeric")
            number = as_number(value)
            if numeric and number is not None and int(numeric.get("count", 0)) >= cfg.min_param_seen:
                low, high = float(numeric["min"]), float(numeric["max"])
                stretch = cfg.numeric_stretch * max(high - low, abs(high), 1.0)
                if number > high + stretch or number < low - stretch:
                    return Explanation(
                        ExplanationKind.UNUSUAL_PARAMETER,
                        f"UNUSUAL PARAMETER: {value} is far outside the training range {low:g} - {high:g}",
                        (("slot", index), ("value", value), ("min", low), ("max", high)),
                    )
                continue
            if float(slot.get("coverage", 0.0)) >= cfg.param_coverage:
                known = ", ".join(list(values)[:3])
                distinct = int(slot.get("distinct", len(values)))
                return Explanation(
                    ExplanationKind.UNUSUAL_PARAMETER,
                    f"UNUSUAL PARAMETER: '{value}' never seen in this field "
                    f"(training: {distinct:,} distinct values, e.g. {known})",
                    (
                        ("slot", index),
                        ("value", value),
                        ("distinct", distinct),
                        ("examples", list(values)[:10]),
                    ),
                )
        return None

    # ---- the public surface

    def explain_session(self, tokens: Sequence[int], scores: Sequence[DetectorScore]) -> tuple[Explanation, ...]:
        """Why a session was judged anomalous, in the terms of its lines (`agent.explain_models`):
        what the voters saw first (what raised it), then the witnesses' (models outside the vote),
        so an event's body and the summary open with the reason, not with a model that did not
        raise it."""
        found = self._witnessed(self._models.explain_session(tokens, scores))
        return tuple(sorted(found, key=lambda e: dict(e.facts).get("in_vote") is False))

    def _witnessed(self, found: Sequence[Explanation]) -> list[Explanation]:
        """Explanations of models outside the vote (the cascade's witnesses) say so: what they saw
        is true, but they did not raise the alert."""
        if not self.witnesses:
            return list(found)
        out = []
        for e in found:
            if dict(e.facts).get("detector") in self.witnesses:
                first, _, rest = e.text.partition("\n")
                e = Explanation(e.kind, f"{first} [noticed only: this model does not vote at this sensitivity]"
                                + (f"\n{rest}" if rest else ""), (*e.facts, ("in_vote", False)))
            out.append(e)
        return out

    def explain(self, ctx: LineContext, scores: Sequence[DetectorScore]) -> tuple[Explanation, ...]:
        """Every fact that holds for this line, most decisive first: a new or rare template, a
        burst, the sequence, an unusual severity, time or parameter, then the fired models'."""
        line = ctx.line
        head, tail = self._fixed_facts(line)
        seen = self._previous.get(id(line))
        found = [*head]
        burst = self._burst(line, seen)
        if burst is not None:
            found.append(burst)
        if self._ongoing_templates:
            ongoing = self._ongoing_fact(line)
            if ongoing is not None:
                found.append(ongoing)
        # (only a model's explanation names a detector, so only those can be a witness's)
        sequence = self._sequence(ctx, scores, seen)
        if sequence:
            found += self._witnessed(sequence)
        found += tail
        unusual = self._unusual_parameter(line)
        if unusual is not None:
            found.append(unusual)
        models = self._models.explain(ctx, scores)
        if models:
            found += self._witnessed(models)
        out = tuple(found)
        if line.time_from_arrival:
            out = tuple(Explanation(e.kind, e.text, (*e.facts, ("time_from_arrival", True))) for e in out)
        return out

    def facts(self, line: TemplatedLine) -> tuple[Explanation, ...]:
        """The explanations `explain` gives this line that read no model score, no previous
        template and no parameter: a new or rare template, its burst, an unusual severity or
        time (`incidents.FACT_KINDS`), in `explain`'s order. What a storm's repeat is keyed by
        (`IncidentGrouper.counted_repeat`): remembered objects, no text built. A line timed by
        its arrival is not marked so here: its kinds are the same."""
        head, tail = self._fixed_facts(line)
        burst = self._burst(line, self._previous.get(id(line)))
        return (*head, burst, *tail) if burst is not None else (*head, *tail)

    def facts_at(self, parts: Sequence[Any], template_id: int, template: str, token: int, is_new: bool, actor: str,
                 t: float, time_from_arrival: bool, count: int) -> tuple[Explanation, ...]:
        """`facts` of a line noted by `note_at` (`count`: the window count it returned) and not
        remembered, from its pieces (the pipeline's counted road builds no line object): `parts`,
        its `ParsedLine` fields in order (`LineParser.parts`), make one only when the facts fixed
        by its template, level, actor and hour are not known yet (`_fixed_facts`, which reads
        no parameter)."""
        level = parts[3]
        fixed = self._fixed.get(self._fixed_key(template_id, template, is_new, level, actor, t, time_from_arrival))
        if fixed is None:
            fixed = self._fixed_facts(TemplatedLine(ParsedLine(*parts), template_id, template, (), token, is_new, t,
                                                    time_from_arrival))
        head, tail = fixed
        count_past = None if time_from_arrival else self._past_floor(template_id, count)
        if count_past is None:
            return (*head, *tail)
        return (*head, self._burst_of(template_id, count_past), *tail)

    def _fixed_key(self, template_id: int, template: str, is_new: bool, level: Level, actor: str, t: float,
                   time_from_arrival: bool) -> tuple[int, str, bool, int, str, int]:
        """What the fixed facts of a line are remembered by (`_fixed_facts`): the actor only at
        WARN or worse and when the profile knows it, the hour only with a usable line time."""
        hour = -1 if time_from_arrival or not math.isfinite(t) else _hour_of(t)
        # (an actor the profile does not know is said by no fact)
        if level < Level.WARN or (actor not in self._entities and actor not in self._entity_hours):
            actor = ""
        return template_id, template, is_new, int(level), actor, hour  # (the level as an int: an enum's hash is a call)

    def _fixed_facts(self, line: TemplatedLine) -> tuple[tuple[Explanation, ...], tuple[Explanation, ...]]:
        """The facts that read only the profile and the line's template, level, actor and hour:
        (a new or rare template) and (an unusual severity or time), remembered by those
        (`_fixed_key`)."""
        pl = line.line
        level = pl.level
        key = self._fixed_key(line.template_id, line.template, line.is_new, level,
                              actor_of(pl) if level >= Level.WARN else "", line.time, line.time_from_arrival)
        fixed = self._fixed.get(key)
        if fixed is None:
            head = tuple(e for e in (self._new_template(line), self._rare_template(line)) if e is not None)
            tail = tuple(e for e in (self._severity(line), self._unusual_time(line)) if e is not None)
            fixed = (head, tail)
            if len(line.template) <= _FIXED_MEMO_CHARS:
                remember(self._fixed, key, fixed, _FIXED_MEMO_ENTRIES)
        return fixed

    def is_notable(self, ctx: LineContext) -> bool:
        """True when the facts alone make the line anomalous (no model needs to fire).

        Deliberately conservative: a template never seen in training; a rare template at ERROR
        or worse; a burst well beyond the normal p99; a WARN+ level that this template never or
        almost never had.
        """
        line = ctx.line
        if self.notable_template(line.template_id, line.is_new, line.line.level):
            return True
        return line.template_id in self._profile and self.burst_alert(line)

    def burst_alert(self, line: TemplatedLine) -> bool:
        """Whether the line's burst raises it on its own: it is past its template's burst floor
        and either starts a burst (no line of the template was past the floor in the window
        before it) or has grown it to `burst_escalation` times the count last raised at. The
        other lines of a burst keep their BURST fact when something else raises them, but the
        count alone does not: one burst, one alert and its updates. Decided once per observed
        line, in the order lines are judged (their order in the log), so a scan and a live run
        raise the same lines."""
        seen = self._previous.get(id(line))
        mine = seen is not None and seen[0] == _fingerprint(line)
        if mine:
            decided = self._raised.get(id(line))
            if decided is not None:
                return decided
        count = self._burst_count(line, seen)
        if count is None:
            return False
        raised = self._extend_run(line.template_id, line.time, count)
        if mine:
            self._raised[id(line)] = raised
        return raised

    def held_back_repeat(self, line: TemplatedLine) -> bool:
        """Whether the line is a quiet repeat of the suspected incident the history ends in
        (`agent/held_back.py`): a line of one of its held-back templates while it goes on, neither
        its first since the history nor one that doubles its count. Such a line is NORMAL; its
        incident counts it (`IncidentGrouper.count_burst_line`). Decided once per line, in the
        order lines are judged."""
        if line.template_id not in self._ongoing_templates or not line.is_new:
            return False
        decided = self._ongoing_decision(line)
        return decided is not None and not decided[0]

    def _ongoing_decision(self, line: TemplatedLine) -> tuple[bool, int] | None:
        """(raised, count) of a line of the ongoing incident's templates, decided on first asking;
        None when the incident is over or the line has no usable time."""
        ongoing = self.ongoing
        if ongoing is None or line.time_from_arrival:
            return None
        key = id(line)
        fingerprint = _fingerprint(line)
        found = self._ongoing_seen.get(key)
        if found is not None and found[0] == fingerprint:
            return found[1], found[2]
        decided = ongoing.judge(line.time)
        if decided is None:
            return None
        self._ongoing_seen[key] = (fingerprint, *decided)
        if len(self._ongoing_seen) > self.config.max_pending:
            self._ongoing_seen.pop(next(iter(self._ongoing_seen)))
        return decided

    def held_back_continues(self, line: TemplatedLine) -> bool:
        """Whether `held_back_repeat` counted this line quietly: its incident counts it."""
        found = self._ongoing_seen.get(id(line))
        return found is not None and not found[1] and found[0] == _fingerprint(line)

    def _ongoing_fact(self, line: TemplatedLine) -> Explanation | None:
        """STILL GOING ON, for a line the ongoing incident raised."""
        if self.ongoing is None or line.template_id not in self._ongoing_templates:
            return None
        found = self._ongoing_seen.get(id(line))
        if found is None or not found[1] or found[0] != _fingerprint(line):
            return None
        return self.ongoing.fact(found[2])

    def burst_continues(self, line: TemplatedLine) -> bool:
        """Whether `burst_alert` judged this line past its floor in a burst it did not raise: a
        line of a burst already reported (its incident counts it, `IncidentGrouper.count_burst_line`)."""
        return self._raised.get(id(line)) is False

    def _extend_run(self, template_id: int, t: float, count: int) -> bool:
        """Put a line past the floor (at `t`, window count `count`) in its template's burst;
        True when it starts the burst or escalates it."""
        runs = self._runs
        run = runs.get(template_id)
        if run is None or t - run[0] > self.config.window_secs:
            runs[template_id] = [t, float(count)]
            runs.move_to_end(template_id)
            if len(runs) > self.config.max_tracked_templates:
                runs.popitem(last=False)
            return True
        if t > run[0]:
            run[0] = t
        if count >= self.config.burst_escalation * run[1]:
            run[1] = float(count)
            return True
        return False

    def notable_template(self, template_id: int, is_new: bool, level: Level) -> bool:
        """The part of `is_notable` fixed by the template and the level (all of it but the burst)."""
        if self._profile and (is_new or template_id not in self._profile):
            return True
        entry = self._profile.get(template_id)
        if entry is None:
            return False
        if level >= Level.ERROR and float(entry.get("frequency", 0.0)) < self.config.rare_frequency:
            return True
        return level >= Level.ERROR and not is_new and self._template_level_rare(entry, level) is not None

_FIXED_MEMO_ENTRIES = 4096  # `Explainer._fixed_facts` (emptied when full) ...
_FIXED_MEMO_CHARS = 1024  # ... for templates up to this long


def _fingerprint(line: TemplatedLine) -> tuple[int, int, float, str]:
    """Enough to tell a line from another object that reuses its id (the parser numbers lines)."""
    return line.template_id, line.line.line_no, line.time, line.line.entity
