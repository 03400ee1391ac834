"""The training profile and the explainer, on real BGL lines and on real-looking crafted ones."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent.explain import ExplainConfig, Explainer, busy_hours
from agent.lines import ip_prefix
from agent.types import DetectorScore, ExplanationKind, Level, LineContext, ParsedLine, TemplatedLine
from trainer.profile import MAX_TEMPLATES, MAX_VALUES, build_profile, hour_multipliers

_VAR = re.compile(r"^(?=.*\d)\S+$")
_BGL_LEVELS = {"INFO": Level.INFO, "WARNING": Level.WARN, "ERROR": Level.ERROR, "FATAL": Level.FATAL}
DAY = 86400.0
T0 = 1_762_041_600.0  # 2025-11-02 00:00:00 UTC


def bgl_lines(path: Path, vocab: dict[str, int]) -> list[tuple[str, TemplatedLine]]:
    """(label, line) pairs: a plain BGL split, words with digits masked as the template's <*>."""
    out = []
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = raw.split(" ", 9)
        if len(parts) < 10:
            continue
        label, epoch, node, level, message = parts[0], parts[1], parts[3], parts[8], parts[9]
        words = message.split()
        template = " ".join("<*>" if _VAR.match(w) else w for w in words)
        tid = vocab.setdefault(template, len(vocab) + 1)
        parsed = ParsedLine(raw, message, float(epoch), _BGL_LEVELS.get(level, Level.UNKNOWN), node, "bgl", n)
        params = tuple(w for w in words if _VAR.match(w))
        out.append((label, TemplatedLine(parsed, tid, template, params, tid, False, float(epoch))))
    return out


def as_scanned(line: TemplatedLine, known: set[int]) -> TemplatedLine:
    """The line as the agent would see it: unknown templates are new, token 0 (UNK)."""
    if line.template_id in known:
        return line
    return replace(line, token=0, is_new=True)


def ctx(line: TemplatedLine, history: tuple[int, ...] = ()) -> LineContext:
    """A line context with the line's token after `history`."""
    return LineContext(line, np.zeros(4, dtype=np.float32), (*history, line.token), (int(line.line.level),))


def crafted(
    message: str, t: float, template_id: int, template: str, params: tuple[str, ...] = (), **kw: object
) -> TemplatedLine:
    """A templated line built by hand (level, entity and extra fields as keywords)."""
    level = kw.pop("level", Level.INFO)
    entity = kw.pop("entity", "db-primary")
    parsed = ParsedLine(f"{message}", message, t, level, str(entity), "test", 0)  # type: ignore[arg-type]
    return TemplatedLine(parsed, template_id, template, params, template_id, False, t, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bgl(data_dir: Path) -> tuple[dict[str, object], dict[int, str], list[tuple[str, TemplatedLine]]]:
    """A profile trained on normal BGL_4k/6k lines, its template texts, and BGL_2k lines."""
    vocab: dict[str, int] = {}
    train = [
        tl for f in ("BGL_4k.log", "BGL_6k.log") for lab, tl in bgl_lines(data_dir / "bgl" / f, vocab) if lab == "-"
    ]
    profile = build_profile(train)
    test = bgl_lines(data_dir / "loghub_2k" / "BGL" / "BGL_2k.log", vocab)
    return profile, {v: k for k, v in vocab.items()}, test


def test_profile_is_json_and_counts_the_training_lines(bgl):
    """The profile survives a JSON round trip and its totals add up to the training lines."""
    profile, _, _ = bgl
    again = json.loads(json.dumps(profile, allow_nan=False))
    assert again == profile
    templates = profile["templates"]
    assert sum(t["count"] for t in templates.values()) == profile["totals"]["lines"]
    for entry in templates.values():
        assert sum(entry["hours"]) + 0 <= entry["count"]
        assert sum(entry["levels"].values()) == entry["count"]
        burst = entry["burst"]
        assert burst["p99"] <= burst["max"] and burst["mean"] >= 0
        if entry["next_total"]:
            assert sum(entry["next"].values()) <= 1.0 + 1e-9


def test_profile_size_is_bounded_whatever_the_input():
    """60k lines of 12k templates with unique values: templates and values stay capped."""
    lines = [
        crafted(f"job {i} took {i}", T0 + i, i % 12_000, f"job <*> took <*> kind {i % 12_000}", (f"j{i}", str(i)))
        for i in range(60_000)
    ]
    profile = build_profile(lines)
    assert len(profile["templates"]) == MAX_TEMPLATES
    assert profile["totals"]["templates"] == 12_000
    for entry in profile["templates"].values():
        for slot in entry["params"]:
            assert len(slot["values"]) <= MAX_VALUES
    assert len(json.dumps(profile)) < 30_000_000


def test_new_templates_are_explained_and_notable_on_bgl(bgl):
    """Every BGL_2k line whose template training never saw is NEW_TEMPLATE and notable; normal
    lines of known templates are almost never notable."""
    profile, templates, test = bgl
    known = {int(k) for k in profile["templates"]}
    explainer = Explainer(profile, templates)
    new_seen = notable_known = known_lines = 0
    for _, raw in test:
        line = as_scanned(raw, known)
        explainer.observe(line)
        c = ctx(line)
        kinds = {e.kind for e in explainer.explain(c, [])}
        if line.is_new:
            new_seen += 1
            assert ExplanationKind.NEW_TEMPLATE in kinds
            assert explainer.is_notable(c)
        else:
            known_lines += 1
            notable_known += explainer.is_notable(c)
    assert new_seen > 0
    assert notable_known / known_lines < 0.05


def test_rare_template_quotes_its_training_frequency(bgl):
    """A rare template's explanation quotes how often it occurred in training."""
    profile, templates, _ = bgl
    rare_id, entry = min(profile["templates"].items(), key=lambda kv: kv[1]["count"])
    total = profile["totals"]["lines"]
    explainer = Explainer(profile, templates, ExplainConfig(rare_frequency=2 * entry["count"] / total))
    line = crafted("x", T0, int(rare_id), entry["template"])
    rare = [e for e in explainer.explain(ctx(line), []) if e.kind is ExplanationKind.RARE_TEMPLATE]
    assert len(rare) == 1
    facts = dict(rare[0].facts)
    assert facts["count"] == entry["count"] and facts["training_lines"] == total
    assert f"seen {entry['count']:,} time" in rare[0].text


def _steady_training(template_id: int = 7, template: str = "Authentication failed for user <*> from <*>"):
    """Three days of a template at ~1 line per 10 minutes from a handful of addresses."""
    lines = []
    for k in range(3 * 144):
        t = T0 + k * 600.0
        ip = f"10.0.3.{k % 5 + 1}"
        lines.append(crafted(f"Authentication failed for user u{k} from {ip}", t, template_id, template, (f"u{k}", ip)))
    return lines


def test_burst_against_the_normal_rate():
    """40 lines in one minute of a template seen ~once per 10 minutes is a BURST with its numbers;
    the same template at its normal pace is not."""
    training = _steady_training()
    profile = build_profile(training)
    explainer = Explainer(profile, {7: training[0].template})
    day = T0 + 5 * DAY
    for k in range(6):
        line = replace(training[k], time=day + k * 600.0)
        explainer.observe(line)
        assert not any(e.kind is ExplanationKind.BURST for e in explainer.explain(ctx(line), []))
        assert not explainer.is_notable(ctx(line))
    storm = day + 10 * 3600.0
    for k in range(40):
        line = replace(training[k], time=storm + k * 1.5)
        explainer.observe(line)
    bursts = [e for e in explainer.explain(ctx(line), []) if e.kind is ExplanationKind.BURST]
    assert len(bursts) == 1 and explainer.is_notable(ctx(line))
    facts = dict(bursts[0].facts)
    assert facts["count"] == 40
    assert facts["normal_p99"] == profile["templates"]["7"]["burst"]["p99_present"]
    assert "40 similar lines in last 2 minutes" in bursts[0].text


def test_unusual_time_quotes_the_normal_hours():
    """A template only ever logged 9-17 UTC, seen at 03:00, is UNUSUAL_TIME naming the busy hours."""
    lines = [
        crafted("Nightly report sent", T0 + d * DAY + h * 3600 + m * 60, 3, "Nightly report sent")
        for d in range(5)
        for h in range(9, 17)
        for m in range(0, 60, 6)
    ]
    explainer = Explainer(build_profile(lines), {3: "Nightly report sent"})
    at_three = crafted("Nightly report sent", T0 + 9 * DAY + 3 * 3600 + 5, 3, "Nightly report sent")
    found = [e for e in explainer.explain(ctx(at_three), []) if e.kind is ExplanationKind.UNUSUAL_TIME]
    assert len(found) == 1
    facts = dict(found[0].facts)
    assert facts["hour_utc"] == 3 and facts["share"] == 0.0
    assert facts["normal_hours"] == "9 AM - 5 PM"
    at_noon = replace(at_three, time=T0 + 9 * DAY + 12 * 3600)
    assert not any(e.kind is ExplanationKind.UNUSUAL_TIME for e in explainer.explain(ctx(at_noon), []))


def test_sequence_from_the_profile_and_from_deeplog_details():
    """After A the training always saw B; A → C is a SEQUENCE anomaly naming B as expected.
    With a DeepLog score carrying expected tokens, those are quoted instead."""
    a, b, c = (
        "User <*> logged in",
        "Query orders took <*> ms",
        "Database connection pool exhausted, <*> available",
    )
    lines = []
    for k in range(200):
        t = T0 + k * 10.0
        lines.append(crafted(f"User u{k} logged in", t, 1, a, (f"u{k}",), entity="web-1"))
        lines.append(crafted(f"Query orders took {k % 40} ms", t + 1, 2, b, (str(k % 40),), entity="web-1"))
    lines.append(crafted("Database connection pool exhausted, 3 available", T0 + 5000, 3, c, ("3",), entity="x"))
    profile = build_profile(lines)
    explainer = Explainer(profile, {1: a, 2: b, 3: c})
    actual = crafted("Database connection pool exhausted, 0 available", T0 + DAY, 3, c, ("0",), entity="web-1")
    seq = [e for e in explainer.explain(ctx(actual, history=(1,)), []) if e.kind is ExplanationKind.SEQUENCE]
    assert len(seq) == 1
    facts = dict(seq[0].facts)
    assert facts["previous"] == 1 and facts["probability"] == 0.0
    assert facts["expected"][0] == [2, 1.0]
    assert "Normal: [User <*> logged in] → [Query orders took <*> ms]" in seq[0].text
    assert "Actual: [User <*> logged in] → [Database connection pool exhausted, <*>…]" in seq[0].text

    deeplog = DetectorScore("deeplog", 4.0, 1.0, True, (("expected", [[2, 0.82], [1, 0.1]]), ("actual", 3)))
    seq = [e for e in explainer.explain(ctx(actual, history=(1,)), [deeplog]) if e.kind is ExplanationKind.SEQUENCE]
    assert dict(seq[0].facts)["detector"] == "deeplog"
    assert "[Query orders took <*> ms] 82%" in seq[0].text


def test_severity_and_unusual_parameter():
    """An always-INFO template at ERROR is SEVERITY (and notable); an address from a network the
    slot never had and a number far beyond the training range are UNUSUAL_PARAMETER."""
    template = "Connected to database at <*> in <*> ms"
    lines = [
        crafted(f"Connected to database at 10.0.1.{k % 4} in {k % 50} ms", T0 + k * 60, 5, template,
                (f"10.0.1.{k % 4}", str(k % 50)))
        for k in range(500)
    ]  # fmt: skip
    explainer = Explainer(build_profile(lines), {5: template})
    error = replace(lines[0], line=replace(lines[0].line, level=Level.ERROR), time=T0 + DAY)
    kinds = {e.kind: e for e in explainer.explain(ctx(error), [])}
    assert ExplanationKind.SEVERITY in kinds and explainer.is_notable(ctx(error))
    assert dict(kinds[ExplanationKind.SEVERITY].facts)["level_count"] == 0

    stranger = crafted("x", T0 + DAY, 5, template, ("185.220.101.4", "12"))
    param = [e for e in explainer.explain(ctx(stranger), []) if e.kind is ExplanationKind.UNUSUAL_PARAMETER]
    assert dict(param[0].facts)["network"] == ip_prefix("185.220.101.4") == "185.220.101.0/24"
    slow = crafted("x", T0 + DAY, 5, template, ("10.0.1.2", "30000"))
    param = [e for e in explainer.explain(ctx(slow), []) if e.kind is ExplanationKind.UNUSUAL_PARAMETER]
    assert dict(param[0].facts)["max"] == 49.0
    usual = crafted("x", T0 + DAY, 5, template, ("10.0.1.2", "30"))
    assert explainer.explain(ctx(usual), []) == ()


def test_lines_without_timestamps_get_no_time_facts_and_say_so():
    """Untimed lines (arrival time) in a flood: no BURST, no UNUSUAL_TIME, and the facts say why."""
    training = _steady_training()
    explainer = Explainer(build_profile(training), {7: training[0].template})
    for k in range(200):
        line = replace(training[k], time=T0 + 9 * DAY + k * 0.01, time_from_arrival=True)
        explainer.observe(line)
    untimed = replace(line, line=replace(line.line, level=Level.ERROR))
    found = explainer.explain(ctx(untimed), [])
    assert found, "SEVERITY still applies"
    assert {e.kind for e in found}.isdisjoint({ExplanationKind.BURST, ExplanationKind.UNUSUAL_TIME})
    assert all(dict(e.facts).get("time_from_arrival") is True for e in found)


def test_live_state_is_bounded_and_survives_clock_jumps():
    """20k templates and 100k lines of one template keep the window state capped; a clock that
    jumps back a year restarts the window instead of counting forever."""
    cfg = ExplainConfig(max_tracked_templates=1000, max_window_events=5000)
    explainer = Explainer({"templates": {}}, {}, cfg)
    for i in range(20_000):
        explainer.observe(crafted("m", T0 + i * 0.001, 1000 + i, "m <*>"))
    assert len(explainer._windows) == 1000
    for i in range(100_000):
        explainer.observe(crafted("m", T0 + 10 + i * 1e-4, 1, "m"))
    assert explainer.window_count(1) == 5000
    explainer.observe(crafted("m", T0 - 365 * DAY, 1, "m"))
    assert explainer.window_count(1) == 1


def test_busy_hours_wraps_midnight():
    """Busy hours that span midnight read as one range; flat traffic reads as all day."""
    night = [0] * 24
    for h in (22, 23, 0, 1, 2):
        night[h] = 100
    assert busy_hours(night) == "10 PM - 3 AM"
    assert busy_hours([5] * 24) == "all day"


def test_new_error_from_a_component_quotes_that_component():
    """When the entity is only the stream, the component is the actor: a never-seen ERROR from
    worker-1 (which only ever logged INFO) is SEVERITY for worker-1; its ERROR at 3 AM is quoted
    against the hours ERROR lines usually come at."""
    lines = []
    for k in range(1500):
        t = T0 + k * 300.0
        comp, level = (
            ("worker-1", Level.INFO) if k % 3 else ("web-1", Level.ERROR if 9 <= (k // 12) % 24 < 18 else Level.INFO)
        )
        parsed = ParsedLine(f"m{k}", f"m{k}", t, level, "app.log", "app.log", k, comp)
        lines.append(TemplatedLine(parsed, 1 + k % 3, f"m {k % 3}", (), 1 + k % 3, False, t))
    profile = build_profile(lines)
    assert "worker-1" in profile["entities"] and "app.log" not in profile["entities"]
    explainer = Explainer(profile, {})
    night = T0 + 30 * DAY + 3 * 3600
    parsed = ParsedLine(
        "x", "Unhandled exception in payment handler", night, Level.ERROR, "app.log", "app.log", 0, "worker-1"
    )
    new = TemplatedLine(parsed, 99, "Unhandled exception in payment handler", (), 0, True, night)
    found = {e.kind: dict(e.facts) for e in explainer.explain(ctx(new), [])}
    assert found[ExplanationKind.SEVERITY]["subject"] == "worker-1"
    assert (
        found[ExplanationKind.UNUSUAL_TIME]["scope"] == "level" and found[ExplanationKind.UNUSUAL_TIME]["hour_utc"] == 3
    )


def test_hour_multipliers_follow_the_hours_that_score_high():
    """Normal scores twice as high around 02:00 (a nightly job) give that hour a multiplier near
    2; ordinary hours stay near 1; too few samples or non-positive scores give 1.0."""
    times, scores = [], []
    for d in range(10):
        for k in range(24 * 60):
            t = T0 + d * DAY + k * 60
            hour = k // 60
            times.append(t)
            scores.append((2.0 if 1 <= hour <= 3 else 1.0) * (0.5 + (k % 10) / 20))
    mult = hour_multipliers(times, scores)
    assert mult[2] == pytest.approx(2.0, rel=0.05)
    assert mult[12] == pytest.approx(1.0, rel=0.05)
    assert mult[0] > 1.2 and mult[4] > 1.2  # neighbours of the busy hours are smoothed up
    assert hour_multipliers(times[:100], scores[:100]) == [1.0] * 24
    assert hour_multipliers(times, [s - 1.0 for s in scores]) == [1.0] * 24


def test_a_merged_online_template_keeps_its_window():
    """The online miner merged template 1_000_007 into 1_000_003: the burst window follows."""
    explainer = Explainer({"templates": {}}, {})
    for i in range(30):
        explainer.observe(crafted("login failed for bob", T0 + i, 1_000_007, "login failed for bob"))
    for i in range(10):
        explainer.observe(crafted("login failed for eve", T0 + 0.5 + i, 1_000_003, "login failed for <*>"))
    explainer.observe(crafted("login failed for bob", T0 + 31, 1_000_007, "login failed for bob"))
    explainer.rename_template(1_000_007, 1_000_003)
    assert explainer.window_count(1_000_003) == 41 and explainer.window_count(1_000_007) == 0
    after = crafted("session closed", T0 + 50, 5, "session closed")
    explainer.observe(after)
    assert explainer.previous_template(ctx(after)) == 1_000_003  # the actor's last line, renamed


def test_isolation_forest_names_features_out_of_range_or_the_unusual_combination():
    """Features outside their training range are named with value and range, furthest first,
    never the template's token (an id, not a magnitude); with all inside, the ones at the edges
    of their ranges are the combination named. A model outside the vote says it is a witness,
    and a score just past its threshold never reads as equal to it."""
    from agent.explain_models import vs
    from agent.features import FEATURE_NAMES

    ranges = {name: [0.0, 10.0] for name in FEATURE_NAMES}
    ranges["param_count"] = [0.0, 2.0]
    explainer = Explainer({"templates": {}, "feature_ranges": ranges}, {},
                          model_types={"iforest": "isolation_forest"}, witnesses=frozenset({"iforest"}))
    line = crafted("disk sda failed", T0, 5, "disk <*> failed", ("sda",))
    score = DetectorScore("iforest", 0.1812, 0.1809, True)
    row = np.full(len(FEATURE_NAMES), 5.0, dtype=np.float32)
    row[FEATURE_NAMES.index("param_count")] = 7.0
    row[FEATURE_NAMES.index("template_token")] = 99.0
    out = LineContext(line, row, (line.token,), (int(Level.INFO),))
    (e,) = explainer.explain(out, [score])
    first = e.text.splitlines()[0]
    assert first.startswith("ISOLATION FOREST: parameters in the message = 7 (training 0 – 2)")
    assert "template = " not in first and "0.1812 > threshold 0.1809" in first
    assert first.endswith("[noticed only: this model does not vote at this sensitivity]")
    assert dict(e.facts)["in_vote"] is False
    assert [f["feature"] for f in dict(e.facts)["outside_range"]] == ["param_count"]  # type: ignore[union-attr]

    row = np.full(len(FEATURE_NAMES), 5.0, dtype=np.float32)
    row[FEATURE_NAMES.index("param_count")] = 1.0
    row[FEATURE_NAMES.index("hour_of_day")] = 10.0
    row[FEATURE_NAMES.index("level_ratio")] = 0.5
    inside = LineContext(line, row, (line.token,), (int(Level.INFO),))
    (e,) = explainer.explain(inside, [score])
    assert "no single feature outside its training range; an unusual combination of hour of day (UTC) = 10 " \
           "(training 0 – 10); share of WARN-or-worse lines in the last minute = 0.5 (training 0 – 10)" in e.text
    assert vs(7.4441, 7.4389) == "7.444 > threshold 7.439" and vs(2.0, 1.0) == "2.00 > threshold 1.00"


def test_lazy_renames_read_as_a_scan_at_each_merge(monkeypatch: pytest.MonkeyPatch):
    """Actors' latest templates renamed lazily (`rename_template`) read exactly as the scan of
    every actor at each merge did: chains of merges, ids merged away and handed out again (as
    an online miner's content ids are, once evicted), and more renames than are kept lazily.
    Real BGL component names as actors, a seeded random stream of notes and merges."""
    import random

    from agent import explain as explain_module

    actors = [f"R{r:02d}-M{m}-N{n}" for r in range(8) for m in range(2) for n in range(4)]
    for seed in range(8):
        if seed >= 4:  # fewer kept lazily than ids merged: all applied at once now and then
            monkeypatch.setattr(explain_module, "_MAX_RENAMED", 3)
        rng = random.Random(seed)
        explainer = Explainer({"templates": {}}, {})
        expected: dict[str, int] = {}  # what the scan at each merge left: the reference
        ids = [1_000_000 + i for i in range(12)]
        for step in range(3_000):
            if rng.random() < 0.08:
                old, new = rng.sample(ids, 2)
                explainer.rename_template(old, new)
                expected = {a: new if t == old else t for a, t in expected.items()}
                continue
            actor, tid = rng.choice(actors), rng.choice(ids)
            previous, _ = explainer.note_at(tid, tid, actor, T0 + step, False)
            assert previous == expected.get(actor), (seed, step)
            expected[actor] = tid
        assert len(explainer._renamed) <= explain_module._MAX_RENAMED
