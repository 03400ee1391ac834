"""Incident grouping: time proximity plus relatedness, lifecycle, storm control, bounds."""

from __future__ import annotations

import re
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from agent.incidents import (
    CountedLine,
    IncidentConfig,
    IncidentGrouper,
    Repeat,
    RepeatPlan,
    repeat_emitted,
    service_of,
    template_words,
)
from agent.types import (
    Anomaly,
    Explanation,
    ExplanationKind,
    Incident,
    IncidentSeverity,
    IncidentState,
    Level,
    ParsedLine,
    TemplatedLine,
    Verdict,
)

T0 = 1_762_054_935.0  # 2025-11-02 03:42:15 UTC
_VAR = re.compile(r"^(?=.*\d)\S+$")
_NEW = (Explanation(ExplanationKind.NEW_TEMPLATE, "NEW TEMPLATE: Never seen before in training data"),)


def anomaly(
    message: str,
    t: float,
    entity: str,
    template_id: int | None = None,
    level: Level = Level.ERROR,
    verdict: Verdict = Verdict.WATCH,
    new: bool = True,
    **line_kw: object,
) -> Anomaly:
    """An anomaly of a crafted line (template from the message, digits as variables)."""
    words = message.split()
    template = " ".join("<*>" if _VAR.match(w) else w for w in words)
    tid = template_id if template_id is not None else abs(hash(template)) % 1_000_000
    parsed = ParsedLine(f"{entity}: {message}", message, t, level, entity, "test", 0)
    line = TemplatedLine(parsed, tid, template, (), 0 if new else tid, new, t, **line_kw)  # type: ignore[arg-type]
    return Anomaly(line, 2.0, verdict, (), _NEW)


def letters(k: int) -> str:
    """A distinct all-letter word for `k` (digits would be masked together)."""
    out = ""
    while True:
        k, r = divmod(k, 26)
        out += "abcdefghijklmnopqrstuvwxyz"[r]
        if k == 0:
            return "zz" + out


def run(grouper: IncidentGrouper, anomalies: list[Anomaly]) -> tuple[list[str], list[Incident]]:
    """Feed anomalies to the grouper and close it: incident id per anomaly, every event."""
    ids: list[str] = []
    events: list[Incident] = []
    for a in anomalies:
        iid, ev = grouper.add(a)
        ids.append(iid)
        events.extend(ev)
    events.extend(grouper.close())
    return ids, events


def resolved(events: list[Incident]) -> dict[str, Incident]:
    """The resolved event of each incident, by id."""
    return {e.incident_id: e for e in events if e.state is IncidentState.RESOLVED}


def test_seed_002_failover_is_one_incident_and_an_unrelated_failure_another():
    """The db failover lines (primary and two replicas, different templates) form one incident;
    an auth failure storm at the same minutes forms a second one."""
    db = [
        ("Connection timeout to replica-2", "db-primary"),
        ("Failover initiated to replica-3", "db-primary"),
        ("Replica-3 not responding", "db-replica-3"),
        ("Database connection pool exhausted, 0 available", "db-primary"),
        ("Connection timeout to replica-2", "db-replica-2"),
    ]
    auth = [("Authentication failed for user u1234 from 185.220.101.4", "auth-1")]
    stream = []
    for k in range(20):
        message, entity = db[k % len(db)]
        stream.append(anomaly(message, T0 + k * 15, entity))
        message, entity = auth[0]
        stream.append(anomaly(message, T0 + k * 15 + 3, entity, level=Level.WARN))
    ids, events = run(IncidentGrouper(), stream)
    incidents = resolved(events)
    assert len(incidents) == 2
    assert len(set(ids[0::2])) == 1 and len(set(ids[1::2])) == 1 and ids[0] != ids[1]
    db_incident = incidents[ids[0]]
    assert db_incident.anomaly_count == 20
    assert set(db_incident.entities) == {"db-primary", "db-replica-3", "db-replica-2"}
    assert db_incident.first_seen == T0 and db_incident.last_seen == T0 + 19 * 15
    assert db_incident.first_line == "db-primary: Connection timeout to replica-2"
    assert db_incident.title.startswith("Unknown template: Connection timeout to … (+")
    assert db_incident.explanation_kinds == (ExplanationKind.NEW_TEMPLATE,)


def test_time_gap_splits_incidents_and_lifecycle_is_open_update_resolved():
    """Anomalies 10 minutes apart (gap and episode gap 300 s) are two incidents; each opens, updates
    at most once a minute, and resolves after the quiet period via tick()."""
    grouper = IncidentGrouper(IncidentConfig(gap_secs=300, quiet_secs=300, episode_gap_secs=300, update_every_secs=60))
    events: list[Incident] = []
    for k in range(30):  # one every 10 s for 5 minutes
        events += grouper.add(anomaly("Replica-3 not responding", T0 + k * 10, "db-replica-3", new=False))[1]
    assert [e.state for e in events][:1] == [IncidentState.OPEN]
    updates = [e for e in events if e.state is IncidentState.UPDATE]
    assert 1 <= len(updates) <= 290 / 60 + 1
    assert grouper.tick(T0 + 290 + 299) == []
    done = grouper.tick(T0 + 290 + 300)
    assert [e.state for e in done] == [IncidentState.RESOLVED] and done[0].anomaly_count == 30
    iid, ev = grouper.add(anomaly("Replica-3 not responding", T0 + 1200, "db-replica-3", new=False))
    assert iid != done[0].incident_id and ev[0].state is IncidentState.OPEN


def test_storm_of_identical_anomalies_is_bounded():
    """100k identical anomalies from one entity over ~3 hours: one incident, capped samples and
    counters, updates at most once a minute, repeats counted but not re-emitted."""
    cfg = IncidentConfig(max_samples=10)
    grouper = IncidentGrouper(cfg)
    events: list[Incident] = []
    emitted = 0
    base = anomaly("Database connection pool exhausted, 0 available", T0, "db-primary", template_id=42)
    for k in range(100_000):
        a = replace(base, line=replace(base.line, time=T0 + k * 0.1))
        _, ev = grouper.add(a)
        emitted += grouper.should_emit(a)
        events += ev
    assert grouper.open_count == 1
    assert emitted == cfg.repeat_emit_limit and grouper.suppressed == 100_000 - cfg.repeat_emit_limit
    assert len(events) <= 10_000 / 60 + 2
    (final,) = grouper.close()
    assert final.anomaly_count == 100_000
    assert len(final.samples) == cfg.max_samples
    assert final.samples[0] == "db-primary: Database connection pool exhausted, 0 available"
    assert len(final.leading_templates) == 1


def test_the_storm_rule():
    """The first three of a storm's key are emitted, then its 4th, 8th, 16th, ... unless their
    entity already had three of them."""
    assert [n for n in range(1, 300) if repeat_emitted(n, 0, 3)] == [1, 2, 3, 4, 8, 16, 32, 64, 128, 256]
    assert [n for n in range(1, 300) if repeat_emitted(n, 3, 3)] == [1, 2, 3]


def test_a_storm_across_many_nodes_is_one_story_with_few_events(data_dir: Path):
    """BGL's `iar … dear …` storm: 1,458 lines of a template never seen in training, on ~1,400
    nodes over ten weeks. One incident; its anomaly events are the first three and the 4th, 8th,
    ..., 1,024th of each fact-kind key (here NEW_TEMPLATE, and NEW_TEMPLATE with a BURST), the rest
    counted (`repeats_not_emitted`), and `counted_repeat` (the pipeline's storm road, asked
    before `add`) names exactly the anomalies that `add` then only counts; its entities are the
    first 50 nodes and how many more. One node repeating a line: three events."""
    burst = Explanation(ExplanationKind.BURST, "BURST DETECTED: many similar lines")
    stream = []
    for k, raw in enumerate((data_dir / "bgl" / "BGL_14k.log").read_text(errors="replace").splitlines()):
        parts = raw.split(" ", 9)
        if len(parts) == 10 and parts[9].startswith("iar "):
            a = anomaly(parts[9], float(parts[1]), parts[3], template_id=7, level=Level.INFO)
            stream.append(replace(a, explanations=(*_NEW, burst) if k % 3 == 0 else _NEW))
    assert len(stream) == 1458
    grouper = IncidentGrouper()
    events: list[Incident] = []
    emitted = 0
    for a in stream:
        predicted = grouper.counted_repeat(a.line, a.explanations)
        _, ev = grouper.add(a)
        events += ev
        assert grouper.should_emit(a) is not predicted
        emitted += not predicted
    events += grouper.close()
    (final,) = {e.incident_id: e for e in events}.values()
    assert final.anomaly_count == len(stream) and final.repeats_not_emitted == len(stream) - emitted
    assert emitted == len(grouper.drain()) <= 2 * 11  # 1, 2, 3, 4, 8, ..., 1,024 of each key
    nodes = len({a.line.line.entity for a in stream})
    assert nodes > 1000
    # 50 named, then "+N more": N counts nodes, not lines (a linear counter: within 1 %)
    assert len(final.entities) == 51 and final.entities[-1].startswith("+")
    assert abs(final.entity_count - nodes) <= 0.01 * nodes, (final.entity_count, nodes)

    one = IncidentGrouper()
    for a in stream[:100]:
        one.add(replace(a, line=replace(a.line, line=replace(a.line.line, entity="R00-M0-N0")), explanations=_NEW))
    assert len(one.drain()) == 3


@pytest.mark.parametrize("max_repeat_keys", [1000, 200])
def test_repeats_planned_before_their_batch_is_added_are_counted_as_add_counts_them(data_dir: Path,
                                                                                    max_repeat_keys: int):
    """The counted road (`plan_repeat` in the pipeline's per-line loop, `count` in the line's
    turn): BGL's `iar … dear …` storm and lines of two other never-seen templates interleaved,
    in batches of 64 planned before any of their lines is added. Every line planned as counted
    is one `add` only counts, every line planned as emitted one `add` emits (a line of a template
    no incident reports yet is only predicted: `repeat_in_turn` decides it), and a grouper that
    `count`s the planned ones from their pieces emits exactly the events, incidents and decisions
    of one that `add`s every line; also once its repeat counters are full (`max_repeat_keys`)."""
    burst = Explanation(ExplanationKind.BURST, "BURST DETECTED: many similar lines")
    stream: list[Anomaly] = []
    for k, raw in enumerate((data_dir / "bgl" / "BGL_14k.log").read_text(errors="replace").splitlines()):
        parts = raw.split(" ", 9)
        if len(parts) == 10 and parts[9].startswith(("iar ", "ciod: LOGIN chdir", "data TLB error")):
            tid = 7 if parts[9].startswith("iar ") else 8 if parts[9].startswith("ciod") else 9
            level = Level.INFO if tid == 7 else Level.FATAL
            a = anomaly(parts[9], float(parts[1]), parts[3], template_id=tid, level=level)
            stream.append(replace(a, explanations=(*_NEW, burst) if k % 3 == 0 else _NEW))
    config = IncidentConfig(max_repeat_keys=max_repeat_keys)
    reference, planned = IncidentGrouper(config), IncidentGrouper(config)
    expected: list[object] = []
    got: list[object] = []
    counted = emitted = unsure = deferred = 0
    for start in range(0, len(stream), 64):
        batch = stream[start : start + 64]
        plan = RepeatPlan(len(batch))
        plans = [planned.plan_repeat(a.line.template_id, a.line.line.entity, a.line.time, a.explanations, plan)
                 for a in batch]
        for a, p in zip(batch, plans, strict=True):
            expected += reference.add(a)[1] + reference.drain()
            exact = p is False or (isinstance(p, Repeat) and p.incident is not None)
            if exact:
                assert reference.should_emit(a) is (p is False)
            if isinstance(p, Repeat) and p.incident is None:  # only predicted: decided in its turn
                line = a.line
                p = planned.repeat_in_turn(line.template_id, line.line.entity, line.time, p.key[2])
                assert (p is None) is reference.should_emit(a)
                deferred += 1
            if isinstance(p, Repeat) and p.incident is not None:
                got += planned.count(CountedLine.of(p.incident, p.key, a))[1] + planned.drain()
                counted += 1
            else:
                got += planned.add(a)[1] + planned.drain()
                emitted += p is False
                unsure += p is None
    assert got + planned.close() == expected + reference.close()
    assert counted > 0.8 * len(stream) and emitted > 10 and unsure > 0 and deferred > 0, (
        counted, emitted, unsure, deferred, len(stream))


def test_many_distinct_templates_and_entities_stay_capped():
    """One incident fed 20k distinct templates from 20k entities of one service keeps its
    template and entity lists bounded; 2,000 unrelated simultaneous failures respect max_open."""
    cfg = IncidentConfig(max_open=100)
    grouper = IncidentGrouper(cfg)
    for k in range(20_000):
        grouper.add(anomaly(f"worker crashed code{k} zone", T0 + k * 0.01, f"db-{k}", template_id=k))
    (one,) = grouper.close()
    assert len(one.entities) == cfg.max_entities + 1 and one.entities[-1].endswith("more")
    assert len(one.leading_templates) <= 5 and one.anomaly_count == 20_000

    events: list[Incident] = []
    for k in range(2000):
        message = f"{letters(k)}a {letters(k)}b {letters(k)}c"  # no word shared with another k
        events += grouper.add(anomaly(message, T0, f"svc{letters(k)}", template_id=10_000_000 + k))[1]
        assert grouper.open_count <= cfg.max_open
    assert sum(e.state is IncidentState.RESOLVED for e in events) == 2000 - cfg.max_open


def test_backwards_and_jumping_timestamps_never_make_negative_spans():
    """Out-of-order and far-future timestamps never make an incident end before it starts."""
    grouper = IncidentGrouper()
    times = [T0, T0 - 100, T0 + 50, T0 - 250, T0 + 40 * 365 * 86400, T0 + 10]
    ids, events = run(grouper, [anomaly("Replica-3 not responding", t, "db-replica-3") for t in times])
    for e in events:
        assert e.last_seen >= e.first_seen
    incidents = resolved(events)
    assert len(incidents) == 2  # the far-future line starts its own incident
    first = incidents[ids[0]]
    assert first.first_seen == T0 - 250 and first.last_seen == T0 + 50 and first.anomaly_count == 5


def test_severity_rank_from_verdicts_levels_and_size():
    """Severity rises with DANGER verdicts, FATAL levels and the number of lines."""
    critical = [
        anomaly(
            f"Database connection pool exhausted, {k} available",
            T0 + k,
            "db-primary",
            1,
            Level.FATAL,
            Verdict.DANGER,
        )
        for k in range(60)
    ]
    _, events = run(IncidentGrouper(), critical)
    assert {e.severity for e in resolved(events).values()} == {IncidentSeverity.CRITICAL}
    _, events = run(IncidentGrouper(), [anomaly("New feature X enabled for user Y", T0, "web-1", 2, Level.INFO)])
    (low,) = resolved(events).values()
    assert low.severity is IncidentSeverity.LOW and low.title.startswith("Unknown template: New feature X")


def test_missing_timestamps_are_said_in_the_incident():
    """An incident timed by arrival says so in its title and samples."""
    _, events = run(IncidentGrouper(), [anomaly("Replica-3 not responding", T0, "db", time_from_arrival=True)])
    (inc,) = resolved(events).values()
    assert "arrival" in inc.title and inc.samples[0].startswith("[arrived 2025-11-02 03:42:15] ")


def test_bgl_alerts_group_into_incidents(data_dir: Path):
    """Real BGL alert lines, one anomaly each: every alert gets an incident, every incident is
    resolved exactly once, and the groups are far fewer than the alerts."""
    stream = []
    for raw in (data_dir / "bgl" / "BGL_8k.log").read_text(errors="replace").splitlines():
        parts = raw.split(" ", 9)
        if len(parts) < 10 or parts[0] == "-":
            continue
        stream.append(anomaly(parts[9], float(parts[1]), parts[3], level=Level.FATAL))
    ids, events = run(IncidentGrouper(), stream)
    incidents = resolved(events)
    assert set(ids) == set(incidents)
    assert sum(i.anomaly_count for i in incidents.values()) == len(stream) == 613
    assert len(incidents) < len(stream) / 3
    opens = [e for e in events if e.state is IncidentState.OPEN]
    assert len(opens) == len(incidents)


def test_service_of():
    """The service of an instance name: its leading word, lower-cased."""
    assert service_of("db-replica-2") == "db"
    assert service_of("R02-M1-N0-C:J12-U11") == "r02"


def test_training_companions_relate_different_actors():
    """An auth failure and the web's 401 that follows it within milliseconds in training: with the
    profile they group into one incident, without it they are two (nothing else links them)."""
    from trainer.profile import build_profile

    auth_t = "Authentication failed for user <*> from <IP>"
    web_t = "Request rejected: <NUM> Unauthorized (bad credentials) in <NUM> ms"
    training = []
    for k in range(300):
        t = T0 - 86400 + k * 60.0
        for message, template, tid, comp, dt in (
            (f"Authentication failed for user u{k} from 10.0.0.{k % 9}", auth_t, 1, "auth-1", 0.0),
            (
                f"Request rejected: 401 Unauthorized (bad credentials) in {k % 50} ms",
                web_t,
                2,
                "web-1",
                0.004,
            ),
            (f"GET /api/orders/{k} from 10.0.3.{k % 7}", "GET /api/orders/<NUM> from <IP>", 3, "web-2", 20.0),
        ):
            parsed = ParsedLine(message, message, t + dt, Level.WARN, "app.log", "app.log", 0, comp)
            training.append(TemplatedLine(parsed, tid, template, (), tid, False, t + dt))
    profile = build_profile(training)
    assert profile["templates"]["1"]["follows"]["2"] > 0.9

    def storm() -> list[Anomaly]:
        out = []
        for k in range(20):
            for message, tid, comp in (
                (f"Authentication failed for user u{k} from 203.0.113.9", 1, "auth-1"),
                ("Request rejected: 401 Unauthorized (bad credentials) in 40 ms", 2, "web-1"),
            ):
                a = anomaly(message, T0 + k * 5, "app.log", template_id=tid, level=Level.WARN, new=False)
                parsed = replace(a.line.line, source="app.log", component=comp)
                out.append(replace(a, line=replace(a.line, line=parsed)))
        return out

    _, events = run(IncidentGrouper(IncidentConfig(), profile=profile), storm())
    (one,) = resolved(events).values()
    assert set(one.entities) == {"auth-1", "web-1"} and one.anomaly_count == 40
    _, events = run(IncidentGrouper(), storm())
    assert len(resolved(events)) == 2


def _weak_stream(n: int, start: float = T0) -> list[Anomaly]:
    weak = (Explanation(ExplanationKind.SEQUENCE, "SEQUENCE ANOMALY: P(this | previous) = 0 in training"),)
    return [
        replace(
            anomaly(f"Slow query on users took {k} ms", start + k, "db-primary", 9, Level.WARN),
            explanations=weak,
        )
        for k in range(n)
    ]


def test_incidents_with_only_weak_facts_rank_low():
    """Fifteen WARN lines that only a model flagged, with a SEQUENCE note at most, stay LOW;
    sixty within a minute are a pattern and rank MEDIUM, never higher."""
    _, events = run(IncidentGrouper(), _weak_stream(15))
    (inc,) = resolved(events).values()
    assert inc.severity is IncidentSeverity.LOW
    _, events = run(IncidentGrouper(), _weak_stream(60))
    (inc,) = resolved(events).values()
    assert inc.severity is IncidentSeverity.MEDIUM


def test_isolated_weak_anomalies_open_no_incident():
    """A lone weak anomaly (a model's outlier with weak facts) joins no incident; a strong one
    that follows within the gap opens an incident that takes the related held lines along."""
    grouper = IncidentGrouper()
    lone = _weak_stream(1)[0]
    incident_id, events = grouper.add(lone)
    assert incident_id is None and events == []
    assert grouper.isolated == 1
    # Four related weak lines are still below the cluster size of five.
    for a in _weak_stream(3, T0 + 10):
        assert grouper.add(a)[0] is None
    strong = anomaly("Slow query on users took 99999 ms", T0 + 30, "db-primary", 9, Level.ERROR)
    incident_id, events = grouper.add(strong)
    assert incident_id is not None
    (opened,) = events
    assert opened.anomaly_count == 5 and opened.first_seen == T0
    assert grouper.isolated == 0


def test_a_long_scan_resolves_incidents_by_the_logs_own_clock():
    """A week of bursts two hours apart without any tick(): add() resolves the quiet incidents as
    the log's time moves on, so few stay open and each is resolved exactly once; bursts an hour
    apart would be one episode of trouble, one incident."""
    grouper = IncidentGrouper()
    stream = [
        anomaly(f"Replica-3 not responding attempt {k}", T0 + hour * 3600 + k, "db-replica-3", template_id=7, new=False)
        for hour in range(0, 7 * 24, 2)
        for k in range(5)
    ]
    peak = 0
    events: list[Incident] = []
    for a in stream:
        events += grouper.add(a)[1]
        peak = max(peak, grouper.open_count)
    events += grouper.close()
    assert peak <= 2
    done = [e.incident_id for e in events if e.state is IncidentState.RESOLVED]
    assert len(done) == len(set(done)) == 7 * 12


def test_word_sets_are_bounded_for_a_huge_template() -> None:
    """A 64 KiB never-seen line kept thousands of words per incident (issue 14, defect 2)."""
    huge = " ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}" for i in range(9000))
    words = template_words(huge)
    assert 0 < len(words) <= 64


def test_a_recurring_new_template_stays_in_one_incident():
    """A template never seen in training that recurs every hour for a day is one incident (resolved
    when quiet, reopened under the same id), not 24; after `new_behaviour_secs` of silence it opens
    a new one."""
    grouper = IncidentGrouper(IncidentConfig(new_behaviour_secs=6 * 3600))
    stream = [anomaly("notify question section contains no SOA", T0 + hour * 3600, "named", template_id=9)
              for hour in range(24)]
    ids, events = run(grouper, stream)
    assert len(set(ids)) == 1
    assert [e.state for e in events].count(IncidentState.OPEN) == 1
    last = next(e for e in reversed(events) if e.state is IncidentState.RESOLVED)
    assert last.anomaly_count == 24
    later, _ = grouper.add(anomaly("notify question section contains no SOA", T0 + 40 * 3600, "named", template_id=9))
    assert later is not None and later != ids[0]


def test_a_burst_of_new_templates_in_one_stream_is_one_incident():
    """A reboot: different never-seen lines from one host's log within seconds are one incident,
    though their words share nothing; the same lines from two hosts' logs are two."""
    boot = ["Linux version 2.6.5-1.358 (bhcompile@bugs.build.redhat.com)", "BIOS-provided physical RAM map:",
            "ACPI: RSDP (v000 DELL ) @ 0x000fd650", "klogd 1.4.1, log source = /proc/kmsg started.",
            "Memory: 125312k/129720k available", "CPU: L1 I cache: 16K, L1 D cache: 16K",
            "Kernel command line: ro root=LABEL=/ rhgb quiet", "Console: colour VGA+ 80x25"]

    disk = ["sd 0:0:0:0: SCSI error: return code = 0x08000002", "end_request: I/O error, dev sda, sector 1234",
            "EXT3-fs error (device sda1): ext3_find_entry: reading directory #2 offset 0"]

    def lines(source: str, t0: float, messages: list[str], first_id: int) -> list[Anomaly]:
        out = []
        for k, message in enumerate(messages):
            a = anomaly(message, t0 + k, source, template_id=first_id + k)
            out.append(replace(a, line=replace(a.line, line=replace(a.line.line, source=source))))
        return out

    ids, _ = run(IncidentGrouper(), lines("host-a", T0, boot, 100))
    assert len(set(ids)) == 1
    ids, _ = run(IncidentGrouper(), lines("host-a", T0, boot, 100) + lines("host-b", T0 + 0.5, disk, 200))
    assert len(set(ids[: len(boot)])) == 1 and len(set(ids)) == 2


# ---- the update contract (`agent/incident_updates.py`): what is told to the sink, and when


def states(events: list[Incident], incident_id: str) -> list[IncidentState]:
    """The states told of one incident, in order."""
    return [e.state for e in events if e.incident_id == incident_id]


def test_an_incident_opened_with_held_anomalies_is_told_open_first():
    """Two weak anomalies held, then a strong related one opens the incident with them: its first
    event is `open` (it was an `update`: the open was told only for an incident of one anomaly)."""
    weak = [replace(anomaly("Slow response from backend pool", T0 + k, "web-1", template_id=5, new=False),
                    explanations=(Explanation(ExplanationKind.UNUSUAL_TIME, "UNUSUAL TIME"),)) for k in range(2)]
    ids, events = run(IncidentGrouper(), [*weak, anomaly("Backend pool web-1 exhausted", T0 + 5, "web-1")])
    assert len(set(ids[2:])) == 1 and ids[2] is not None
    assert states(events, ids[2]) == [IncidentState.OPEN, IncidentState.RESOLVED]
    assert events[0].anomaly_count == 3


def test_an_update_needs_a_change_and_waits_longer_each_time():
    """One template on one entity every 10 s for two hours (720 anomalies): nothing joins but the
    count, so it is updated only when the count doubled since the last event (or its severity
    rose: told at once), and the n-th update comes at least 2^(n-1) minutes after the event before
    it (it was once a minute: 119 updates)."""
    ids, events = run(IncidentGrouper(), [anomaly("Replica-3 not responding", T0 + k * 10, "db-replica-3",
                                                  template_id=3, new=False) for k in range(720)])
    told = [e for e in events if e.incident_id == ids[0]]
    assert told[0].state is IncidentState.OPEN and told[-1].state is IncidentState.RESOLVED
    assert told[-1].anomaly_count == 720
    updates = told[1:-1]
    assert 5 <= len(updates) <= 10
    for n, (before, after) in enumerate(pairwise(told[:-1])):
        if after.severity <= max(e.severity for e in told[: n + 1]):
            assert after.anomaly_count >= 2 * before.anomaly_count
            assert after.last_seen - before.last_seen >= min(60 * 2**n, 3600)  # (`update_backoff_max_secs`)


def test_every_new_template_is_told_within_the_backoff():
    """A new template joins every minute for two hours: each is a change a person would act on,
    but the updates back off (1, 2, 4, … minutes, at most `update_backoff_max_secs`), and the
    resolved event lists what the last update had not said yet."""
    cfg = IncidentConfig(update_backoff_max_secs=1800, max_templates=200)
    stream = [anomaly(f"Service {letters(k)} failed health check", T0 + 60 * k, "db-primary") for k in range(120)]
    ids, events = run(IncidentGrouper(cfg), stream)
    assert len(set(ids)) == 1
    told = [e for e in events if e.incident_id == ids[0]]
    rises = [e for e in told if e.severity > told[0].severity]
    gaps = [b.last_seen - a.last_seen for a, b in pairwise(told[:-1]) if b not in rises[:1]]
    assert gaps[:3] == [60, 120, 240] and max(gaps) <= 1800
    assert len(told) <= 2 + 4 + 7200 // 1800 + 1
    assert told[-1].state is IncidentState.RESOLVED and told[-1].anomaly_count == 120


def test_a_rising_severity_is_told_at_once():
    """A WARN line opens a LOW incident; a DANGER FATAL line of it 5 s later makes it CRITICAL: told at
    once, not after the minute the backoff asks for; nothing else is told within it."""
    events = run(IncidentGrouper(), [
        anomaly("Disk latency above 200 ms on sda", T0, "node-7", template_id=11, level=Level.WARN),
        anomaly("Disk latency above 200 ms on sda", T0 + 2, "node-7", template_id=11, level=Level.WARN),
        anomaly("Disk sda failed: I/O error", T0 + 5, "node-7", template_id=12, level=Level.FATAL,
                verdict=Verdict.DANGER),
    ])[1]
    assert [(e.state, e.severity) for e in events] == [
        (IncidentState.OPEN, IncidentSeverity.LOW), (IncidentState.UPDATE, IncidentSeverity.CRITICAL),
        (IncidentState.RESOLVED, IncidentSeverity.CRITICAL)]


def test_a_recurring_problem_is_not_resolved_and_reopened_at_every_pause():
    """A never-seen template every 3 hours for three days is one incident (new behaviour). Each
    pause used to resolve it and each recurrence reopen it: 24 `resolved` events. Once it came
    back after 3 hours, it is told resolved only after twice that of quiet: resolved after its
    first pause, back, and then kept open through the pauses; the last event carries all 24."""
    stream = [anomaly("notify question section contains no SOA", T0 + k * 3 * 3600, "named", template_id=9)
              for k in range(24)]
    ids, events = run(IncidentGrouper(), stream)
    told = states(events, ids[0])
    assert told == [IncidentState.OPEN, IncidentState.RESOLVED,
                    *[IncidentState.UPDATE] * (len(told) - 3), IncidentState.RESOLVED]
    assert len(told) <= 3 + 6  # back, then its count doubling: 4, 8, 16 (and its severity rising)
    assert events[-1].anomaly_count == 24
    _, undamped = run(IncidentGrouper(IncidentConfig(resolve_hold_max_secs=0)), stream)
    assert states(undamped, ids[0]).count(IncidentState.RESOLVED) == 24


def test_a_late_line_in_a_resolved_incidents_past_does_not_reopen_it():
    """An incident told resolved; then a line of its new template arrives three days behind the
    log's clock (a second server's log appended): it joins the incident by its own time, but the
    problem is not back, so no `update` is told; the incident is told resolved again, with the
    corrected count, and that is its last event."""
    first = anomaly("Machine check: bank 4 status corrupt", T0, "node-2", template_id=21)
    # (the log's clock moves on a day at most per line: a bigger jump needs a second line to agree)
    others = [anomaly(f"Fan {letters(k)} speed below threshold", T0 + k * 0.9 * 86400, f"rack-{k}", template_id=30 + k)
              for k in range(1, 6)]
    late = anomaly("Machine check: bank 4 status corrupt", T0 + 2 * 86400, "node-2", template_id=21)
    ids, events = run(IncidentGrouper(), [first, *others, late])
    assert ids[-1] == ids[0] and ids[0] not in ids[1:-1]
    told = [e for e in events if e.incident_id == ids[0]]
    assert [e.state for e in told] == [IncidentState.OPEN, IncidentState.RESOLVED, IncidentState.RESOLVED]
    assert [e.anomaly_count for e in told] == [1, 1, 2]


def test_a_change_that_waits_for_the_backoff_is_told_when_it_ends():
    """A second template joins an incident 20 s after it opened (inside the first minute's
    backoff) and nothing more of it comes: the update that lists it is told once the minute is
    over, by the next sweep of the log's clock (an unrelated anomaly's) or by a live tick, not
    only by its resolve an hour later."""
    opened = anomaly("Disk sda failed: I/O error", T0, "node-3", template_id=41)
    joined = anomaly("Filesystem on sda remounted read-only", T0 + 20, "node-3", template_id=42)
    elsewhere = anomaly("Fan 2 speed below threshold", T0 + 90, "rack-9", template_id=43)
    ids, events = run(IncidentGrouper(), [opened, joined, elsewhere])
    told = [e for e in events if e.incident_id == ids[0]]
    assert [e.state for e in told] == [IncidentState.OPEN, IncidentState.UPDATE, IncidentState.RESOLVED]
    assert len(told[1].leading_templates) == 2 and told[1].anomaly_count == 2

    live = IncidentGrouper()
    live.add(opened)
    live.add(joined)
    assert live.tick(T0 + 59) == []
    (update,) = live.tick(T0 + 60)
    assert update.state is IncidentState.UPDATE and len(update.leading_templates) == 2


def test_late_lines_after_a_resolve_are_corrected_at_the_backoffs_pace():
    """Twenty lines of a resolved incident's minute arrive four days behind the log's clock (a
    second server's log appended), a live tick after each: each joined it, and each tick told it
    resolved again with one more line (20 resolves; HPC_2k replayed live: 91). Corrections come
    at the update backoff's pace: the first at once, then the clock does not move (the lines are
    behind it), so the next, with all 21 lines, is told by `close`."""
    grouper = IncidentGrouper()
    first = anomaly("Machine check: bank 4 status corrupt", T0, "node-2", template_id=21)
    iid, events = grouper.add(first)
    for k in range(1, 6):
        events += grouper.add(anomaly(f"Fan {letters(k)} speed below threshold", T0 + k * 0.9 * 86400, f"rack-{k}",
                                      template_id=30 + k))[1]
    for k in range(20):
        events += grouper.add(anomaly("Machine check: bank 4 status corrupt", T0 + 30 + k, "node-2",
                                      template_id=21))[1]
        events += grouper.tick(grouper.clock)
    events += grouper.close()
    told = [e for e in events if e.incident_id == iid]
    assert [e.state for e in told] == [IncidentState.OPEN, *[IncidentState.RESOLVED] * 3]
    assert [e.anomaly_count for e in told] == [1, 1, 2, 21]
