"""The log simulator writes well-formed, time-ordered, realistic days and an honest ground truth."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.cli import main as cli_main
from agent.errors import UserError
from agent.types import ExplanationKind
from trainer.simulator import (
    INCIDENT_KINDS,
    INSTANCES,
    NORMAL_TEMPLATES,
    TEMPLATES,
    InjectedIncident,
    SimulationResult,
    events,
    generate,
    load_truth,
    parse_incidents,
    simulate,
    truth_path,
)

LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>DEBUG|INFO|WARN|ERROR|FATAL) "
    r"(?P<inst>[a-z]+-[a-z0-9-]+): (?P<msg>\S.*)$"
)
SMALL = 5_000  # lines per day for the per-kind runs


def _ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


_REGEXES = [(t.name, t.level, t.regex()) for t in TEMPLATES.values()]
_DIGITS = re.compile(r"\d+")
_classified: dict[tuple[str, str], list[str]] = {}


def _classify(level: str, msg: str) -> list[str]:
    """Names of the catalogue templates (same level) whose text matches this message.

    Messages of one shape (digit runs blanked) are classified once: 50 regexes on
    every one of 50,000 lines would take most of this file's time budget."""
    key = (level, _DIGITS.sub("0", msg))
    names = _classified.get(key)
    if names is None:
        names = [name for name, lv, rx in _REGEXES if lv == level and rx.match(msg)]
        _classified[key] = names
    return names


@pytest.fixture(scope="module")
def incident_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationResult, list[str]]:
    """One simulated day with every incident: path, result and lines."""
    out = tmp_path_factory.mktemp("sim") / "day.log"
    result = simulate(out, days=1, seed=7, incidents=("all",))
    return out, result, out.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def normal_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationResult, list[str]]:
    """One simulated normal day: path, result and lines."""
    out = tmp_path_factory.mktemp("sim") / "normal.log"
    result = simulate(out, days=1, seed=7)
    return out, result, out.read_text(encoding="utf-8").splitlines()


def test_every_line_has_the_documented_format(incident_day: tuple[Path, SimulationResult, list[str]]) -> None:
    """Timestamp with milliseconds and Z, a level word, a known instance and colon, a message."""
    _, result, lines = incident_day
    assert len(lines) == result.lines
    bad = [ln for ln in lines if not LINE.match(ln)]
    assert bad == []
    instances = {LINE.match(ln).group("inst") for ln in lines}  # type: ignore[union-attr]
    assert instances == set(INSTANCES)
    levels = Counter(LINE.match(ln).group("level") for ln in lines)  # type: ignore[union-attr]
    assert set(levels) == {"DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
    assert levels["INFO"] > levels["WARN"] > levels["ERROR"]


def test_lines_are_in_time_order_and_span_the_day(
    incident_day: tuple[Path, SimulationResult, list[str]],
) -> None:
    """Timestamps never go backwards and cover the simulated day from start to end."""
    _, _, lines = incident_day
    times = [_ts(ln[:24]) for ln in lines]
    assert all(a <= b for a, b in itertools.pairwise(times))
    start = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
    assert start <= times[0] < start + 120
    assert start + 86_400 - 120 < times[-1] < start + 86_400


def test_every_line_matches_exactly_one_catalogue_template(
    incident_day: tuple[Path, SimulationResult, list[str]],
) -> None:
    """The template catalogue describes the output completely and unambiguously."""
    _, _, lines = incident_day
    seen: Counter[str] = Counter()
    for ln in lines:
        m = LINE.match(ln)
        assert m is not None
        names = _classify(m.group("level"), m.group("msg"))
        assert len(names) == 1, (ln, names)
        seen[names[0]] += 1
    assert set(seen) == set(TEMPLATES)


def test_a_normal_day_shows_every_normal_template_many_times(
    normal_day: tuple[Path, SimulationResult, list[str]],
) -> None:
    """Two or three days of training see all of normal: each normal template appears 20+ times a day."""
    _, _, lines = normal_day
    counts: Counter[str] = Counter()
    for ln in lines:
        m = LINE.match(ln)
        assert m is not None
        counts.update(_classify(m.group("level"), m.group("msg")))
    rare = {name: counts[name] for name in NORMAL_TEMPLATES if counts[name] < 20}
    assert rare == {}
    assert 30 <= len(NORMAL_TEMPLATES) <= 50


def test_a_normal_day_has_no_incident_lines(normal_day: tuple[Path, SimulationResult, list[str]]) -> None:
    """Without --incidents the truth is empty and no incident-only template is ever written."""
    out, result, lines = normal_day
    assert result.incidents == ()
    assert load_truth(truth_path(out)) == ()
    incident_only = [t for t in TEMPLATES.values() if t.incident is not None]
    for ln in lines:
        m = LINE.match(ln)
        assert m is not None
        assert not any(
            t.level == m.group("level") and t.regex().match(m.group("msg")) for t in incident_only
        ), ln


def test_volume_and_day_night_rhythm(normal_day: tuple[Path, SimulationResult, list[str]]) -> None:
    """About the asked volume per day; office hours are several times busier than the night."""
    _, result, lines = normal_day
    assert 42_500 <= result.lines <= 57_500
    per_hour = Counter(int(ln[11:13]) for ln in lines)
    day = sum(per_hour[h] for h in range(10, 17)) / 7
    night = sum(per_hour[h] for h in range(0, 6)) / 6
    assert day > 3 * night


def test_truth_file_is_consistent_with_the_lines(
    incident_day: tuple[Path, SimulationResult, list[str]],
) -> None:
    """Each incident's line numbers point at lines inside its span, from its components, and
    every line written by an incident-only template belongs to the matching incident."""
    out, result, lines = incident_day
    truth = load_truth(truth_path(out))
    assert truth == result.incidents
    assert [i.kind for i in truth] == ["db_failover", "new_error", "auth_storm", "crash_loop"]
    doc = json.loads(truth_path(out).read_text(encoding="utf-8"))
    assert doc["lines"] == len(lines) and doc["log_file"] == out.name
    member_of: dict[int, str] = {}
    for inc in truth:
        assert inc.line_numbers == tuple(sorted(inc.line_numbers))
        for n in inc.line_numbers:
            m = LINE.match(lines[n - 1])
            assert m is not None
            assert inc.start <= _ts(m.group("ts")) <= inc.end
            assert m.group("inst") in inc.components
            member_of[n] = inc.kind
        assert _ts(lines[inc.line_numbers[0] - 1][:24]) == inc.start
        assert _ts(lines[inc.line_numbers[-1] - 1][:24]) == inc.end
    for n, ln in enumerate(lines, start=1):
        m = LINE.match(ln)
        assert m is not None
        owner = {TEMPLATES[name].incident for name in _classify(m.group("level"), m.group("msg"))}
        if owner != {None}:
            assert owner == {member_of.get(n)}, ln


def test_incidents_are_apart_and_carry_valid_explanations(
    incident_day: tuple[Path, SimulationResult, list[str]],
) -> None:
    """Incidents keep 30 minutes apart; expected explanations are ExplanationKind values; the
    database failover happens at 03:42 as in seed 002 and therefore expects UNUSUAL_TIME."""
    _, result, _ = incident_day
    valid = {k.value for k in ExplanationKind}
    for a, b in zip(result.incidents, result.incidents[1:], strict=False):
        assert b.start - a.end >= 30 * 60
    for inc in result.incidents:
        assert inc.expected_explanations and set(inc.expected_explanations) <= valid
        assert inc.description
    db = next(i for i in result.incidents if i.kind == "db_failover")
    assert datetime.fromtimestamp(db.start, tz=UTC).strftime("%H:%M") == "03:42"
    assert {"NEW_TEMPLATE", "BURST", "UNUSUAL_TIME"} <= set(db.expected_explanations)
    assert db.components == ("db-primary",)


def test_auth_storm_is_a_burst_from_one_new_ip(
    incident_day: tuple[Path, SimulationResult, list[str]],
    normal_day: tuple[Path, SimulationResult, list[str]],
) -> None:
    """Failed logins during the storm come from one IP never used by normal traffic, at 20x or
    more the normal day's failure rate in the same hour."""
    _, result, lines = incident_day
    storm = next(i for i in result.incidents if i.kind == "auth_storm")
    failed = [lines[n - 1] for n in storm.line_numbers if "Authentication failed" in lines[n - 1]]
    ips = {ln.rsplit(" ", 1)[1] for ln in failed}
    assert len(ips) == 1
    (ip,) = ips
    _, _, normal_lines = normal_day
    assert not any(ln.endswith(f" {ip}") for ln in normal_lines)
    hour = datetime.fromtimestamp(storm.start, tz=UTC).hour
    normal_per_min = (
        sum(1 for ln in normal_lines if "Authentication failed" in ln and int(ln[11:13]) == hour) / 60
    )
    storm_per_min = len(failed) / ((storm.end - storm.start) / 60)
    assert storm_per_min >= 20 * max(normal_per_min, 0.1)


def test_injecting_incidents_leaves_the_other_lines_alone(
    incident_day: tuple[Path, SimulationResult, list[str]],
    normal_day: tuple[Path, SimulationResult, list[str]],
) -> None:
    """Same seed with and without incidents: the non-incident lines are the normal day's lines,
    minus those of the instances an incident takes down while it lasts."""
    _, result, lines = incident_day
    _, _, normal_lines = normal_day
    members = {n for inc in result.incidents for n in inc.line_numbers}
    rest = [ln for n, ln in enumerate(lines, start=1) if n not in members]
    rest_set = set(rest)
    missing = [ln for ln in normal_lines if ln not in rest_set]
    assert set(rest) <= set(normal_lines)
    assert 0 < len(missing) < 500
    for ln in missing:
        t = _ts(ln[:24])
        down = [
            i for i in result.incidents if i.start <= t <= i.end and i.kind in ("db_failover", "crash_loop")
        ]
        assert down, ln
        assert any(f" {c}: " in ln for c in ("db-replica-2", "db-replica-3", "worker-1")), ln


@pytest.mark.parametrize("kind", INCIDENT_KINDS)
def test_each_kind_appears_alone_when_asked(kind: str, tmp_path: Path) -> None:
    """Asking for one incident kind injects that one, with lines of its own templates, and no other."""
    result = simulate(tmp_path / "k.log", days=1, seed=3, incidents=(kind,), lines_per_day=SMALL)
    assert [i.kind for i in result.incidents] == [kind]
    lines = (tmp_path / "k.log").read_text(encoding="utf-8").splitlines()
    owners: Counter[str | None] = Counter()
    for ln in lines:
        m = LINE.match(ln)
        assert m is not None
        owners.update(TEMPLATES[n].incident for n in _classify(m.group("level"), m.group("msg")))
    own_templates = any(t.incident == kind for t in TEMPLATES.values())
    # auth_storm is made of normal templates only (a burst of them from a new IP).
    assert set(owners) == ({None, kind} if own_templates else {None})
    assert len(result.incidents[0].line_numbers) >= 5


def test_same_seed_same_file_other_seed_other_file(tmp_path: Path) -> None:
    """Deterministic for a seed: byte-identical logs and truth; another seed gives other traffic."""
    a = simulate(tmp_path / "a.log", days=0.5, seed=11, incidents=("all",), lines_per_day=SMALL)
    b = simulate(tmp_path / "b.log", days=0.5, seed=11, incidents=("all",), lines_per_day=SMALL)
    c = simulate(tmp_path / "c.log", days=0.5, seed=12, incidents=("all",), lines_per_day=SMALL)
    assert (tmp_path / "a.log").read_bytes() == (tmp_path / "b.log").read_bytes()
    assert a.incidents == b.incidents and len(a.incidents) == 4
    assert (tmp_path / "a.log").read_bytes() != (tmp_path / "c.log").read_bytes()
    assert c.incidents != a.incidents


def test_generate_yields_the_simulated_lines_with_their_incident() -> None:
    """generate() and events() produce the same lines, tagging incident lines with their kind."""
    pairs = list(generate(0.25, seed=5, incidents=("new_error",), lines_per_day=SMALL))
    evs = list(events(0.25, seed=5, incidents=("new_error",), lines_per_day=SMALL))
    assert [p[0] for p in pairs] == [e.line for e in evs]
    kinds = Counter(k for _, k in pairs)
    assert set(kinds) == {None, "new_error"} and kinds["new_error"] >= 2


def test_short_spans_spread_incidents_and_too_short_ones_are_refused(tmp_path: Path) -> None:
    """A quarter day still holds every incident, 30 minutes apart; an hour cannot hold four."""
    r = simulate(tmp_path / "q.log", days=0.25, seed=1, incidents=("all",), lines_per_day=SMALL)
    assert len(r.incidents) == 4
    for a, b in zip(r.incidents, r.incidents[1:], strict=False):
        assert b.start - a.end >= 30 * 60
    with pytest.raises(UserError, match="need at least"):
        simulate(tmp_path / "h.log", days=1 / 24, seed=1, incidents=("all",), lines_per_day=SMALL)


def test_incident_lists_are_parsed_and_checked() -> None:
    """`all`, `none`, comma lists; an unknown kind names the valid ones."""
    assert parse_incidents("all") == INCIDENT_KINDS
    assert parse_incidents("none") == () and parse_incidents("") == ()
    assert parse_incidents("crash_loop, db_failover,crash_loop") == ("crash_loop", "db_failover")
    with pytest.raises(UserError, match="db_failover, auth_storm, new_error, crash_loop"):
        parse_incidents("db_failover,disk_full")


def test_truth_round_trips(tmp_path: Path) -> None:
    """InjectedIncident survives the truth file unchanged; a foreign JSON file is refused."""
    inc = InjectedIncident("new_error", 1.5, 2.5, (3, 4), ("worker-1",), "d", ("NEW_TEMPLATE",))
    assert InjectedIncident.from_json(json.loads(json.dumps(inc.to_json()))) == inc
    other = tmp_path / "other.json"
    other.write_text('{"incidents": []}', encoding="utf-8")
    with pytest.raises(UserError):
        load_truth(other)


def test_cli_writes_logs_and_truth_and_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`logdetect simulate` writes both files and prints one summary line with the incident spans."""
    out = tmp_path / "cli.log"
    rc = cli_main(
        [
            "simulate", "--days", "0.5", "--seed", "4", "--incidents", "db_failover,new_error",
            "--output", str(out), "--start", "2026-12-01", "--lines-per-day", str(SMALL),
        ]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1
    assert "db_failover 2026-12-01 03:42" in printed[0] and "new_error" in printed[0]
    lines = out.read_text(encoding="utf-8").splitlines()
    assert f"wrote {len(lines):,} lines" in printed[0]
    assert lines[0].startswith("2026-12-01T00:")
    assert [i.kind for i in load_truth(truth_path(out))] == ["db_failover", "new_error"]


def test_cli_rejects_unknown_kinds_and_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """User errors end with exit code 2 and one line naming the problem; nothing is written."""
    out = tmp_path / "x.log"
    assert cli_main(["simulate", "--incidents", "meteor", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "meteor" in err and "crash_loop" in err and "Traceback" not in err
    assert cli_main(["simulate", "--days", "0", "--output", str(out)]) == 2
    assert cli_main(["simulate", "--output", str(tmp_path)]) == 2
    assert cli_main(["simulate", "--output", str(tmp_path / "no" / "such.log")]) == 2
    assert not out.exists()


def test_the_template_miner_sees_a_stable_normal_and_new_incident_templates() -> None:
    """Mined with the project's TemplateMiner (header split by the project's parser): every
    simulated day yields the same template set, and the incident-only lines of a later day,
    and only they, fall outside it."""
    from agent.parsing import LineParser, ParserConfig
    from agent.templates import TemplateMiner
    from agent.types import Record

    start = datetime(2026, 11, 2, tzinfo=UTC)
    train = list(events(2, seed=21, start=start, lines_per_day=10_000))
    parser = LineParser(ParserConfig(entity="component"), [e.line for e in train[:200]])
    miner = TemplateMiner()
    per_day: list[set[int]] = [set(), set()]
    for e in train:
        parsed = parser.parse(Record(e.line))
        assert parsed.component == e.instance and parsed.timestamp == e.time_ms / 1000
        per_day[(e.time_ms - round(start.timestamp() * 1000)) // 86_400_000].add(
            miner.add(parsed.message).template_id
        )
    # Ids as they are after the last line: a template merged later answers to the survivor.
    per_day = [{miner.resolve(t) for t in day} - {None} for day in per_day]  # type: ignore[misc]
    assert per_day[0] == per_day[1]
    assert 30 <= len(per_day[0]) <= len(NORMAL_TEMPLATES)
    normal_texts = {TEMPLATES[name].text for name in NORMAL_TEMPLATES}
    unseen: Counter[str | None] = Counter()
    for e in events(
        1, seed=22, incidents=("all",), start=datetime(2026, 11, 4, tzinfo=UTC), lines_per_day=10_000
    ):
        match = miner.match(parser.parse(Record(e.line)).message)
        if match is None or match.template_id not in per_day[0]:
            unseen[e.incident] += 1
            assert TEMPLATES[e.template].incident is not None, e.line
        else:  # a normal template, or an incident's use of a normal text ("exited with code 2")
            assert TEMPLATES[e.template].text in normal_texts, e.line
    assert set(unseen) == {"db_failover", "new_error", "crash_loop"}
