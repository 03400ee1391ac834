"""The alerts a user sees on real logs (issue 11): a bundle trained on the first half of a
Loghub-2k file, the second half scanned. One incident per problem, counts that agree in every
view, sessions judged only when they are sessions, and model alerts explained in the line's
own terms."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import DEMO_TIMEOUT, DemoRun
from loghub_halves import assert_incident_counts_agree, final_incidents, halves, scan_records

from agent.detector_words import found_by
from agent.pipeline import Pipeline
from agent.reader import iter_records
from agent.types import Anomaly, Incident, Output, Record, SessionVerdict
from trainer.train import TrainOptions, train

# A detector's id, where a person reads what it found (`agent.detector_words`).
_DETECTOR_IDS = re.compile(r"\b(novelty|novel_set|deeplog|lstm_ae|logbert|isolation_forest)\b")


@pytest.fixture(scope="module")
def linux(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, list[Output], list[str]]:
    """Linux_2k: trained on the first half (Isolation Forest and the set rule), the second scanned."""
    train_part, scan_part, events = halves(data_dir, "Linux")
    out = tmp_path_factory.mktemp("linux") / "m"
    train(train_part, TrainOptions(output=out, models=("isolation_forest", "novel_set"), progress=False))
    pipe, outputs = scan_records(out, scan_part)
    return pipe, outputs, events


def test_counts_agree_in_every_view(linux: tuple[Pipeline, list[Output], list[str]], tmp_path: Path) -> None:
    """Every anomaly in an incident carries its id; an incident's count is its anomaly events
    plus the identical repeats it counted; the summary's headline is all of them plus the
    isolated ones, and so is the HTML report's (it said "107 anomalies", the events, beside the
    summary's 120 anomalous lines)."""
    from agent.render import render_summary
    from agent.report import ReportCollector

    pipe, outputs, _ = linux
    assert_incident_counts_agree(pipe, outputs)
    incidents = final_incidents(outputs)
    anomalies = [o for o in outputs if isinstance(o, Anomaly)]
    text = render_summary(pipe.lines, anomalies, list(incidents.values()), False, anomalous_lines=pipe.anomalies)
    assert text.splitlines()[1].startswith(f"Found {pipe.anomalies:,} anomalous lines in {len(incidents)} ")
    collector = ReportCollector(year_known=False)
    for o in outputs:
        if isinstance(o, Anomaly):
            collector.add_anomaly(o)
        elif isinstance(o, Incident):
            collector.add_incident(o)
    collector.write_html(tmp_path / "report.html")
    assert pipe.anomalies > len(anomalies)  # identical repeats: the events alone fall short
    assert f"<b>{pipe.anomalies:,}</b>anomalous lines" in (tmp_path / "report.html").read_text()


def test_a_reboot_and_a_recurring_new_template_are_one_incident_each(
    linux: tuple[Pipeline, list[Output], list[str]],
) -> None:
    """The reboot at the end of Linux_2k (boot messages never seen in training, within a minute)
    is one incident, and "notify question section contains no SOA", recurring over hours, stays
    in one incident instead of opening one each time."""
    _, outputs, _ = linux
    incidents = final_incidents(outputs)
    boot = [a for a in outputs if isinstance(a, Anomaly) and a.line.line.raw.startswith("Jul 27 14:4")
            and a.line.is_new]
    assert len(boot) >= 30
    assert len({a.incident_id for a in boot}) == 1
    soa = [a for a in outputs if isinstance(a, Anomaly) and "no SOA" in a.line.line.message]
    (soa_id,) = {a.incident_id for a in soa}
    assert soa_id is not None and incidents[soa_id].anomaly_count >= 10
    assert len(incidents) <= 10  # 30 before issue 11 (one per boot message group and SOA line)


def test_sessions_are_judged_only_when_they_are_sessions(data_dir: Path, tmp_path: Path) -> None:
    """HDFS keyed by block id: a block cut after two normal lines (a fragment that only went
    quiet) gets no session verdict; a block holding a line never seen in training does."""
    from agent.parsing import ParserConfig

    records = list(iter_records(data_dir / "hdfs" / "HDFS_v1_head20k_dev.log"))
    parser = ParserConfig(log_format="hdfs", entity=r"regex:(blk_-?\d+)")
    bundle = train(records[:6000], TrainOptions(output=tmp_path / "m", parser=parser,
                                                models=("isolation_forest", "novel_set"), progress=False)).bundle
    block = re.search(r"blk_(-?\d+)", records[0].line)
    assert block is not None
    lines = [r.line for r in records[:6000] if f"blk_{block.group(1)}" in r.line]
    fragment = [Record(line.replace(block.group(1), "111111111111"), "t") for line in lines[:2]]
    novel = [Record(lines[0].replace(block.group(1), "222222222222"), "t"),
             Record(lines[0].split(" INFO ")[0] + " WARN dfs.DataNode: Exception in receiveBlock for "
                    "blk_222222222222 reset", "t")]
    _, outputs = scan_records(bundle, fragment + novel)
    judged = {o.entity for o in outputs if isinstance(o, SessionVerdict)}
    assert "blk_222222222222" in judged and "blk_111111111111" not in judged
    # The verdict says what was seen, in the session's terms, and its body quotes it (no score).
    from agent.events import session_event

    (verdict,) = [o for o in outputs if isinstance(o, SessionVerdict) and o.entity == "blk_222222222222"]
    said = [e.text.splitlines()[0] for e in verdict.explanations]
    assert "NEW TEMPLATE: 1 of this session's 2 lines have a template never seen in training, the first at " \
           "line 2" in said
    body = session_event(verdict, 0.0, "cpu")["body"]
    assert all(t in body for t in said) and not re.search(r"\(score \d+\.\d\d\)", body)
    # The text summary names the session and says what raised it, not only how many there were.
    from agent.render import render_sessions

    text = render_sessions([verdict])
    assert "1 session judged anomalous as a whole" in text
    assert "• blk_222222222222 (2 lines, ended " in text and said[0] in text
    # ... and so does the HTML report (it listed no session at all).
    import html

    from agent.report import ReportCollector

    collector = ReportCollector()
    collector.add_session(verdict)
    collector.write_html(tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "1 session judged anomalous as a whole" in page
    assert "<td>blk_222222222222</td><td>2</td>" in page and html.escape(said[0]) in page


def test_model_alerts_name_what_the_model_saw(data_dir: Path, tmp_path: Path) -> None:
    """Zookeeper, every learned model trained: each model fact of an alert says what the model
    saw in the terms of the line, on its first line (what the event's body quotes): DeepLog the
    templates it expected, with probabilities, and the one that came (id and text); the LSTM-AE
    the line it rebuilt worst and its template; the Isolation Forest the features outside their
    training range with values and ranges (or the combination that is unusual); LogBERT the
    masked lines it could not predict and their templates. None is left at "flagged by X", and
    no body or header quotes the ensemble's combined score (a rule alone makes it 2.00)."""
    import importlib.util

    from agent.events import anomaly_event
    from agent.render import render_anomaly

    torch = importlib.util.find_spec("torch") is not None
    models = ("isolation_forest", "lstm_ae", "deeplog", "logbert") if torch else ("isolation_forest",)
    train_part, scan_part, _ = halves(data_dir, "Zookeeper")
    out = tmp_path / "m"
    train(train_part, TrainOptions(output=out, models=models, progress=False, epochs=1, max_train_seconds=3))
    _, outputs = scan_records(out, scan_part)
    checked = Counter[str]()
    for a in (o for o in outputs if isinstance(o, Anomaly)):
        fired = {s.detector for s in a.scores if s.fired}
        firsts = [e.text.splitlines()[0] for e in a.explanations]
        assert a.explanations, a.line.line.raw
        assert not [t for t in firsts if t.startswith("MODEL SCORE")], firsts  # every model here is read
        assert not [t for t in firsts if re.search(r"\+1 more (templates|lines)\b", t)], firsts  # "+1 more template"
        if "isolation_forest" in fired:
            (text,) = [t for t in firsts if t.startswith("ISOLATION FOREST")]
            assert re.search(r"= [-\d.,]+ \(training [-\d.,]+ – [-\d.,]+( lines of one template)?\)|"
                             r"a template never seen in training", text), text
            checked["isolation_forest"] += 1
        if "lstm_ae" in fired:
            (text,) = [t for t in firsts if t.startswith("SEQUENCE RECONSTRUCTION")]
            assert re.search(r"rebuilt worst (this line|\d+ lines? before this one), (#\d+ \[|a template never)",
                             text), text
            assert "the last 1 lines" not in text, text
            checked["lstm_ae"] += 1
        if "deeplog" in fired:
            (text,) = [t for t in firsts if t.startswith("SEQUENCE ANOMALY: DeepLog")]
            assert re.search(r"expected (#\d+ \[.+\]|a template never seen in training|the end of a session) "
                             r"\d+%.*; got "
                             r"(new template )?#\d+ \[", text), text
            facts = dict(next(e.facts for e in a.explanations if e.text.startswith("SEQUENCE ANOMALY: DeepLog")))
            assert facts["actual"] == a.line.template_id and facts["expected_templates"]
            checked["deeplog"] += 1
        if "logbert" in fired:
            (text,) = [t for t in firsts if t.startswith("SEQUENCE CONTEXT")]
            assert re.search(r"could not predict \d+ of \d+ masked lines .*: (this line|\d+ lines? back): "
                             r"(#\d+ \[|a template never)", text) or "far from anything in training" in text, text
            checked["logbert"] += 1
        event = anomaly_event(a, 0.0, "cpu")
        body = event["body"]
        assert all(t in body for t in firsts) and not re.search(r"\(score \d+\.\d\d\)", body)
        assert "[Score:" not in render_anomaly(a, color=False)
        # The header and every explanation say in words what each detector found, never its id
        # ("raised by novelty; outside the vote, also fired: deeplog"); the event's machine-readable
        # fields keep the ids (`anomaly.scores[].detector`, the explanations' `detector` fact).
        header = render_anomaly(a, color=False).splitlines()[0]
        assert not _DETECTOR_IDS.search(header) and not any(_DETECTOR_IDS.search(t) for t in firsts), (header, firsts)
        assert all(found_by(d) in header for d in fired), (header, fired)
        assert [s["detector"] for s in event["attributes"]["anomaly.scores"]] == [s.detector for s in a.scores]
        assert {e["facts"].get("detector") for e in event["attributes"]["anomaly.explanations"]} - {None} <= fired
    assert checked["isolation_forest"] > 0
    if torch:
        assert checked["deeplog"] > 0 and checked["lstm_ae"] + checked["logbert"] > 0, checked


def test_isolation_forest_says_what_a_never_seen_line_is_in_words(
    linux: tuple[Pipeline, list[Output], list[str]],
) -> None:
    """Linux_2k's reboot: the Isolation Forest's alert on a boot message never seen in training
    says so ("a template never seen in training"), not "= 1 (training 0 – 0)" beside a floor
    frequency of "-3.2"; the window count of a never-seen line is of never-seen lines (every new
    template is the one unknown token), and no feature is named "that count"."""
    _, outputs, _ = linux
    said = [(a, e.text.splitlines()[0]) for a in outputs if isinstance(a, Anomaly) for e in a.explanations
            if e.text.startswith("ISOLATION FOREST")]
    new = [t for a, t in said if a.line.is_new]
    assert new and any("a template never seen in training" in t for t in new)
    for a, text in said:
        assert "that count" not in text and "(training 0 – 0)" not in text, text
        assert not re.search(r"\blevel = \d|\(bucket\)", text), text  # "level = FATAL", lengths in characters
        if a.line.is_new:
            assert "template frequency" not in text and "lines of this template" not in text, text


def test_the_summary_counts_components_when_the_entity_is_the_stream(
    linux: tuple[Pipeline, list[Output], list[str]],
) -> None:
    """Linux_2k has no entity of its own (every line's entity is the file): the reboot's incident
    lists the programs that logged it, and the summary says "across N components", as each block
    says "Entity: Linux.log" and "Component: kernel", never "across N entities"."""
    from agent.render import render_summary

    pipe, outputs, _ = linux
    incidents = list(final_incidents(outputs).values())
    anomalies = [o for o in outputs if isinstance(o, Anomaly)]
    text = render_summary(pipe.lines, anomalies, incidents, False, anomalous_lines=pipe.anomalies)
    boot = max(incidents, key=lambda i: i.entity_count)
    assert boot.entity_count >= 10
    assert f"across {boot.entity_count} components" in text and " entities" not in text


@pytest.mark.timeout(DEMO_TIMEOUT + 60)  # the session's demo run (shared with test_readme) counts as setup
def test_the_demo_says_which_session_was_anomalous_and_what_raised_it(demo_run: DemoRun) -> None:
    """The demo's one anomalous session (worker-1, which holds the crash loop) is named in the
    summary with what raised it: the voters' facts (its never-seen lines, its new set of
    templates) come before what models outside the vote saw, so the line does not open with a
    witness ("… [noticed only: this model does not vote at this sensitivity]"). It was "1 session judged
    anomalous as a whole (see --format json)", and the event's body opened with a witness. The
    lines shown under the failover's block are three different messages."""
    text = demo_run.stdout
    (line,) = [row for row in text.splitlines() if row.startswith("  • worker-1 (")]
    assert "1 session judged anomalous as a whole" in text
    assert "[noticed only" not in line and ("NEW TEMPLATE" in line or "NEW COMBINATION" in line), line
    page = (demo_run.workdir / "report.html").read_text()
    assert "1 session judged anomalous as a whole" in page and "<td>worker-1</td><td>1,024</td>" in page
    # The database failover's block shows the story under it (the timeout, the failover, ...), not
    # the first timeout three times over.
    failover = text.split("Incident 1 ")[1].split("Incident 2 ")[0]
    related = failover.split("Related Anomalies (same incident):")[1].strip().splitlines()
    assert len({row.split(" - ", 1)[1] for row in related}) == len(related) == 3, related
    # The crash loop's FATAL panic: the Isolation Forest names the level, not its number ("level = 7").
    assert "level = FATAL (training DEBUG – ERROR)" in text and not re.search(r"\blevel = \d", text)


def test_related_lines_of_another_day_carry_their_date(
    linux: tuple[Pipeline, list[Output], list[str]],
) -> None:
    """An incident of a new program's chatter spans days (Linux_2k's ftpd: an anonymous login on
    Jul 24, "getpeername (ftpd): Transport endpoint is not connected" on Jul 25): the related
    lines under an anomaly's block say their date when it is not the anomaly's day, as the
    syslog line writes it ("Jul 24 02:38:23", no year), not a bare "02:38:23"; an unusual time
    says of which lines its share is ("0% of its 64 training lines")."""
    from agent.render import render_anomaly

    _, outputs, _ = linux
    anomalies = [o for o in outputs if isinstance(o, Anomaly)]
    by_incident: dict[str | None, list[Anomaly]] = {}
    for a in anomalies:
        by_incident.setdefault(a.incident_id, []).append(a)
    days = {iid: {a.line.line.raw[:6] for a in members} for iid, members in by_incident.items() if iid}
    iid = next(i for i, d in days.items() if len(d) > 1)
    *earlier, last = by_incident[iid]
    block = render_anomaly(last, False, earlier, year_known=False)
    related = block.split("Related Anomalies (same incident):")[1].splitlines()[1:]
    other = [r for r, a in zip(related, earlier, strict=False) if a.line.line.raw[:6] != last.line.line.raw[:6]]
    assert other and all(re.match(r"  • [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d - ", r) for r in other), related
    said = [e.text for a in anomalies for e in a.explanations if e.text.startswith("UNUSUAL TIME")]
    assert said and all(re.search(r"\(\d+% of its [\d,]+ training lines; normal: ", t) for t in said), said


def test_an_incident_event_counts_its_lines_as_the_summary_does(
    linux: tuple[Pipeline, list[Output], list[str]],
) -> None:
    """An incident event's body (what `watch` and the daemon's sinks show) counts its lines as
    the summary does: Linux_2k's brute force "— 2 anomalous lines (+42 more lines of its burst)",
    and a one-line incident "— 1 anomalous line" (it said "— 2 anomalous lines" and "1 anomalous
    lines"); the spliced event line is the built event's."""
    import orjson

    from agent.events import encode_all, incident_event

    _, outputs, _ = linux
    events = [o for o in outputs if isinstance(o, Incident)]
    bodies = [incident_event(i, 0.0)["body"] for i in events]
    assert any(b.endswith("— 2 anomalous lines (+42 more lines of its burst)") for b in bodies), bodies
    assert any(b.endswith("— 1 anomalous line") for b in bodies) and not any("— 1 anomalous lines" in b for b in bodies)
    lines = [orjson.loads(line) for line in encode_all(events, 0.0, "cpu")]
    assert [e["body"] for e in lines] == bodies


def test_an_incident_without_a_block_says_why_in_one_line(
    linux: tuple[Pipeline, list[Output], list[str]],
) -> None:
    """Only the most severe incidents get an ANOMALY DETECTED block; the others said only their
    kinds ("why: BURST, UNUSUAL_TIME, UNUSUAL_PARAMETER"). Each now says under them what raised
    its leading line, in its own words: Linux_2k's brute force "BURST DETECTED: 37 similar lines
    in last 2 minutes (…)"; never a bare "never seen" its title already says, never a witness's.
    And that incident's title says it is a burst ("Burst: authentication failure; …")."""
    from agent.render import render_summary

    pipe, outputs, _ = linux
    incidents = list(final_incidents(outputs).values())
    anomalies = [o for o in outputs if isinstance(o, Anomaly)]
    text = render_summary(pipe.lines, anomalies, incidents, False, False, anomalous_lines=pipe.anomalies)
    rows = text.splitlines()
    said = [rows[i + 1].strip() for i, row in enumerate(rows[:-1]) if row.startswith("     why: ")
            and rows[i + 1].startswith("          ") and not rows[i + 1].strip().startswith(("ANOMALY", "━"))]
    assert any(s.startswith("BURST DETECTED: 37 similar lines in last 2 minutes") for s in said), said
    assert all(s != "NEW TEMPLATE: Never seen before in training data" and "[noticed only" not in s for s in said), said
    # The kinds in words, as the factors are headed, not as enum names ("why: BURST, UNUSUAL_TIME").
    assert "     why: burst, unusual time, unusual parameter" in rows and not any(
        re.match(r" +why: .*[A-Z]_[A-Z]", r) for r in rows)
    # Its title says what happened: known lines, too many at once.
    titles = [i.title for i in incidents if i.line_count > i.anomaly_count]
    assert titles and all(t.startswith("Burst: authentication failure; logname= uid=") for t in titles), titles
