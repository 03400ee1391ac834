"""The shared header parser on real Loghub data, on the shapes our shippers and simulator
write, and on hostile input (it must never raise)."""

from __future__ import annotations

import csv
import importlib.util
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ConfigError
from agent.parsing import LOG_FORMATS, LineParser, ParserConfig, detect_format, parse_level, strip_bgl_label
from agent.parsing.clock import YearGuess, parse_iso8601
from agent.types import Level, ParsedLine, Record

REPO = Path(__file__).resolve().parents[2]


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("parser_coverage", REPO / "bench" / "parser_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

# system → (format detect_format must pick, does the format carry a level?)
EXPECTED = {
    "Android": ("android", True),
    "Apache": ("apache", True),
    "BGL": ("bgl", True),
    "HDFS": ("hdfs", True),
    "HPC": ("hpc", False),
    "Hadoop": ("iso", True),
    "HealthApp": ("healthapp", False),
    "Linux": ("syslog", False),
    "Mac": ("syslog", False),
    "OpenSSH": ("syslog", False),
    "OpenStack": ("openstack", True),
    "Proxifier": ("proxifier", False),
    "Spark": ("spark", True),
    "Windows": ("windows", True),
    "Zookeeper": ("iso", True),
}
YEAR = 2005  # the year assumed for formats that carry none (as in bench.measure)


def _utc(text: str, fmt: str) -> float:
    return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()


def _healthapp_time(text: str) -> float:
    day, clock = text.split("-")
    hour, minute, second, millis = (int(x) for x in clock.split(":"))  # not zero-padded
    return _utc(day, "%Y%m%d") + hour * 3600 + minute * 60 + second + millis / 1000


# An independent oracle for every line's timestamp: datetime.strptime on the ground-truth CSV's
# header columns (our parser uses its own calendar arithmetic).
TIME_ORACLE: dict[str, Callable[[dict[str, str]], float]] = {
    "Android": lambda r: _utc(f"{YEAR}-{r['Date']} {r['Time']}", "%Y-%m-%d %H:%M:%S.%f"),
    "Apache": lambda r: _utc(r["Time"], "%a %b %d %H:%M:%S %Y"),
    "BGL": lambda r: int(r["Timestamp"]) + int(r["Time"][-6:]) / 1e6,
    "HDFS": lambda r: _utc(f"{r['Date']} {r['Time']}", "%y%m%d %H%M%S"),
    "HPC": lambda r: float(r["Time"]),
    "Hadoop": lambda r: _utc(f"{r['Date']} {r['Time']}", "%Y-%m-%d %H:%M:%S,%f"),
    "HealthApp": lambda r: _healthapp_time(r["Time"]),
    "Linux": lambda r: _utc(f"{YEAR} {r['Month']} {r['Date']} {r['Time']}", "%Y %b %d %H:%M:%S"),
    "Mac": lambda r: _utc(f"{YEAR} {r['Month']} {r['Date']} {r['Time']}", "%Y %b %d %H:%M:%S"),
    "OpenSSH": lambda r: _utc(f"{YEAR} {r['Date']} {r['Day']} {r['Time']}", "%Y %b %d %H:%M:%S"),
    "OpenStack": lambda r: _utc(f"{r['Date']} {r['Time']}", "%Y-%m-%d %H:%M:%S.%f"),
    "Proxifier": lambda r: _utc(f"{YEAR}.{r['Time']}", "%Y.%m.%d %H:%M:%S"),
    "Spark": lambda r: _utc(f"{r['Date']} {r['Time']}", "%y/%m/%d %H:%M:%S"),
    "Windows": lambda r: _utc(f"{r['Date']} {r['Time']}", "%Y-%m-%d %H:%M:%S"),
    "Zookeeper": lambda r: _utc(f"{r['Date']} {r['Time']}", "%Y-%m-%d %H:%M:%S,%f"),
}
# The CSV column holding what our `component` should be, where the format has one column for it.
COMPONENT_COLUMN = {
    "Android": "Component",
    "BGL": "Node",
    "HDFS": "Component",
    "HPC": "Node",
    "Hadoop": "Component",
    "HealthApp": "Component",
    "Linux": "Component",
    "Mac": "Component",
    "OpenSSH": "Component",  # Loghub calls the host "Component" here; with "sshd[pid]:" we report sshd
    "OpenStack": "Component",
    "Proxifier": "Program",
    "Spark": "Component",
    "Windows": "Component",
}


def _loghub(data_dir: Path, system: str) -> tuple[list[str], list[dict[str, str]]]:
    directory = data_dir / "loghub_2k" / system
    lines = bench.read_lines(directory / f"{system}_2k.log")
    with (directory / f"{system}_2k.log_structured.csv").open(encoding="utf-8", newline="") as handle:
        truth = list(csv.DictReader(handle))
    assert len(lines) == len(truth) == 2000
    return lines, truth


# ------------------------------------------------------------------------------ real data
@pytest.mark.parametrize("system", sorted(EXPECTED))
def test_detect_format_on_first_20_lines(data_dir: Path, system: str) -> None:
    """Each Loghub system's format is detected from its first 20 lines."""
    lines, _ = _loghub(data_dir, system)
    assert detect_format(lines[:20]) == EXPECTED[system][0]


@pytest.mark.parametrize("system", sorted(EXPECTED))
def test_coverage_floor(data_dir: Path, system: str) -> None:
    """Timestamps, levels and messages are read on nearly every line of each system."""
    row = bench.measure(system, data_dir / "loghub_2k", min_seconds=0.0)
    fmt, has_level = EXPECTED[system]
    assert row.format == fmt
    assert row.timestamp >= 0.99, f"{system}: only {row.timestamp:.1%} of lines have a timestamp"
    assert row.message_match >= 0.98, f"{system}: message = Content on {row.message_match:.1%}"
    if has_level:
        assert row.level >= 0.99
    else:
        assert row.level == 0.0, f"{system} carries no level, yet {row.level:.1%} got one"
    if row.level_agreement is not None:
        assert row.level_agreement >= 0.99


@pytest.mark.parametrize("system", sorted(EXPECTED))
def test_timestamps_and_components_agree_with_ground_truth(data_dir: Path, system: str) -> None:
    """Timestamps and components agree with each system's structured CSV."""
    lines, truth = _loghub(data_dir, system)
    parser = LineParser(ParserConfig(assume_year=YEAR), sample=lines[:20])
    oracle = TIME_ORACLE[system]
    column = COMPONENT_COLUMN.get(system)
    wrong_time, wrong_component = [], []
    for number, (line, row) in enumerate(zip(lines, truth, strict=True), 1):
        parsed = parser.parse(Record(line, source=system), number)
        if parsed.timestamp is None or abs(parsed.timestamp - oracle(row)) > 1e-3:
            wrong_time.append((number, parsed.timestamp, oracle(row)))
        if column and system != "OpenSSH" and parsed.component != row[column].strip():
            wrong_component.append((number, parsed.component, row[column]))
    assert not wrong_time, f"{len(wrong_time)} wrong timestamps, first {wrong_time[:3]}"
    assert not wrong_component, f"{len(wrong_component)} wrong components, first {wrong_component[:3]}"


def test_bgl_labelled_and_unlabelled_lines_parse_alike(data_dir: Path) -> None:
    """A BGL line parses the same with or without its label column."""
    lines, truth = _loghub(data_dir, "BGL")
    parser = LineParser(ParserConfig(log_format="bgl"))
    for line, row in zip(lines[:400], truth[:400], strict=True):
        label, rest = strip_bgl_label(line)
        assert label == row["Label"]
        labelled, bare = parser.parse(Record(line)), parser.parse(Record(rest))
        assert (labelled.message, labelled.timestamp, labelled.level, labelled.component) == (
            bare.message,
            bare.timestamp,
            bare.level,
            bare.component,
        )
        assert label not in {value for _, value in labelled.fields} or label == "-"
    assert detect_format([strip_bgl_label(line)[1] for line in lines[:20]]) == "bgl"


def test_bgl_line_without_node_columns() -> None:
    """A BGL line whose node is `-` and lacks the repeated node column still parses."""
    # BGL_14k.log: the node is "-" and the repeated node column is missing
    p = _parse(
        "- 1125084561 2005.08.26 - 2005-08-26-12.29.21.712532 RAS KERNEL FATAL Kill job 34269 timed out."
    )
    assert (p.level, p.component, p.message) == (Level.FATAL, "-", "Kill job 34269 timed out.")
    assert p.timestamp == pytest.approx(1125084561.712532)
    assert p.field("facility") == "KERNEL"


def test_strip_bgl_label_shapes() -> None:
    """The label column is split off normal, alert and unlabelled BGL lines."""
    assert strip_bgl_label("- 1117838570 2005.06.03 R02 x") == ("-", "1117838570 2005.06.03 R02 x")
    assert strip_bgl_label("KERNDTLB 1118536327 2005.06.11 R30") == ("KERNDTLB", "1118536327 2005.06.11 R30")
    assert strip_bgl_label("1117838570 2005.06.03 R02 x") == ("-", "1117838570 2005.06.03 R02 x")
    assert strip_bgl_label("") == ("-", "")


# --------------------------------------------------------------------- shapes we must read
def _parse(line: str, **config: object) -> ParsedLine:
    parser = LineParser(ParserConfig(**config))  # type: ignore[arg-type]
    return parser.parse(Record(line, source="test-stream"))


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_simulator_line() -> None:
    """A simulator line gives its level, component, message and UTC timestamp."""
    p = _parse("2026-11-02T03:42:15.123Z ERROR db-primary: Database connection pool exhausted, 0 available")
    assert p.level is Level.ERROR
    assert p.component == "db-primary"
    assert p.message == "Database connection pool exhausted, 0 available"
    assert p.timestamp == pytest.approx(_ts("2026-11-02T03:42:15.123+00:00"))
    assert p.entity == "test-stream"


@pytest.mark.parametrize(
    ("line", "level", "component", "message", "when"),
    [
        (
            "2024-01-15 10:23:45 INFO Connected to db-1",
            Level.INFO,
            "",
            "Connected to db-1",
            "2024-01-15T10:23:45",
        ),
        # Python logging's basicConfig layout: name before the level
        (
            "2024-01-15 10:23:45,120 - app.db - WARNING - slow query 2.5 s",
            Level.WARN,
            "app.db",
            "slow query 2.5 s",
            "2024-01-15T10:23:45.120",
        ),
        # logback default: [thread] before the level, "logger - msg"
        (
            "2024-01-15 10:23:45.500 [main] INFO  com.acme.Server - started on :8080",
            Level.INFO,
            "com.acme.Server",
            "started on :8080",
            "2024-01-15T10:23:45.500",
        ),
        (
            "2024-01-15T10:23:45+02:00 [error] cache: miss storm",
            Level.ERROR,
            "cache",
            "miss storm",
            "2024-01-15T08:23:45",
        ),
        (
            "2024-01-15T10:23:45.000001Z no level here",
            Level.UNKNOWN,
            "",
            "no level here",
            "2024-01-15T10:23:45.000001",
        ),
    ],
)
def test_iso_variants(line: str, level: Level, component: str, message: str, when: str) -> None:
    """ISO-8601 application-log variants give their level, component, message and time."""
    p = _parse(line)
    assert (p.level, p.component, p.message) == (level, component, message)
    assert p.timestamp == pytest.approx(_ts(when + "+00:00"), abs=1e-6)


def test_rsyslog_rfc3339_file_format() -> None:
    """rsyslog's RFC 3339 file format gives host, tag as component, pid and the time in UTC."""
    p = _parse("2024-04-25T10:00:00.123456+02:00 web-1 sshd[812]: Accepted publickey for ops")
    assert (p.component, p.field("host"), p.field("pid")) == ("sshd", "web-1", "812")
    assert (p.level, p.message) == (Level.UNKNOWN, "Accepted publickey for ops")
    assert p.timestamp == pytest.approx(_ts("2024-04-25T08:00:00.123456+00:00"))
    assert _parse("2024-04-25T10:00:00Z web-1 kernel: eth0 up").component == "kernel"
    assert _parse("2024-04-25T10:00:00Z Connected to db: ok").message == "Connected to db: ok"


def test_rfc5424_examples_from_the_rfc() -> None:
    """The RFC 5424 examples parse: severity from PRI, app name, message without BOM."""
    p = _parse(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        "\ufeff'su root' failed for lonvick on /dev/pts/8"
    )
    assert p.level is Level.FATAL  # 34 % 8 = 2, crit
    assert p.component == "su"
    assert p.message == "'su root' failed for lonvick on /dev/pts/8"
    assert p.field("host") == "mymachine.example.com" and p.field("msgid") == "ID47"
    assert p.timestamp == pytest.approx(_ts("2003-10-11T22:14:15.003+00:00"))

    p = _parse(
        '<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [exampleSDID@32473 iut="3" '
        'eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] %% It\'s time'
    )
    assert p.level is Level.NOTICE  # 165 % 8 = 5
    assert p.timestamp == pytest.approx(_ts("2003-08-24T12:14:15.000003+00:00"))
    assert p.field("exampleSDID@32473.eventSource") == "Application"
    assert p.field("examplePriority@32473.class") == "high"
    assert p.field("pid") == "8710"
    assert p.message == "%% It's time"


def test_rfc3164_with_pri_and_year_policy() -> None:
    """RFC 3164 lines take a given year, or the current one unless that is in the future."""
    p = _parse("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick", assume_year=2003)
    assert (p.level, p.component, p.field("host")) == (Level.FATAL, "su", "mymachine")
    assert p.timestamp == pytest.approx(_ts("2003-10-11T22:14:15+00:00"))
    # without assume_year: the current year, or the previous one when that is in the future
    jan = _ts("2027-01-02T00:00:00+00:00")
    guess = YearGuess(None, now=jan)
    assert guess.epoch(12, 31, 23, 59, 0) == _ts("2026-12-31T23:59:00+00:00")
    assert guess.epoch(1, 1, 8, 0, 0) == _ts("2027-01-01T08:00:00+00:00")


def test_json_lines_from_shippers() -> None:
    """JSON lines from Fluent Bit and Vector give the app's own time, level and message."""
    # Fluent Bit stdout json_lines, default date key (double), tailed app log inside "log"
    p = _parse(
        '{"date": 1700000000.123, "log": "2026-11-02T03:42:15.123Z WARN queue: lag 12s", "stream": "stdout"}'
    )
    assert (p.level, p.component, p.message) == (Level.WARN, "queue", "lag 12s")
    assert p.timestamp == pytest.approx(_ts("2026-11-02T03:42:15.123+00:00"))  # the app's own time wins
    assert p.field("stream") == "stdout" and p.field("log") is None
    # json_date_key ts, json_date_format iso8601; plain text in "log"
    p = _parse('{"ts": "2026-11-02T03:42:15.500000Z", "log": "GET /health 200"}')
    assert (p.message, p.level) == ("GET /health 200", Level.UNKNOWN)
    assert p.timestamp == pytest.approx(_ts("2026-11-02T03:42:15.5+00:00"))
    # Vector console JSON with Kubernetes metadata; entity from a dotted path
    line = (
        '{"message": "user login failed", "timestamp": "2026-11-02T03:42:16Z", "host": "node-3", '
        '"level": "error", "kubernetes": {"pod_name": "auth-7f9c", "namespace": "prod"}}'
    )
    p = _parse(line, entity="field:kubernetes.pod_name")
    assert (p.message, p.level, p.entity, p.component) == (
        "user login failed",
        Level.ERROR,
        "auth-7f9c",
        "node-3",
    )
    assert p.field("kubernetes.namespace") == "prod"
    assert p.timestamp == pytest.approx(_ts("2026-11-02T03:42:16+00:00"))
    # configured field names come first; numeric levels (pino) and epoch milliseconds
    p = _parse(
        '{"body": "disk full", "sev": 50, "at": 1700000000123, "message": "not this one"}',
        json_message_field="body",
        json_level_field="sev",
        json_time_field="at",
    )
    assert (p.message, p.level, p.timestamp) == ("disk full", Level.ERROR, pytest.approx(1700000000.123))
    # a JSON value that is not an object is just text
    assert _parse('["a", 1]', log_format="json").message == '["a", 1]'


def test_entity_kinds() -> None:
    """Entities from a regex (whole match or group), the component or a field; else the stream."""
    hdfs = (
        "081109 203518 143 INFO dfs.DataNode$DataXceiver: "
        "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106"
    )
    assert _parse(hdfs, entity=r"regex:blk_-?\d+").entity == "blk_-1608999687919862906"
    assert _parse(hdfs, entity=r"regex:src: /([\d.]+)").entity == "10.250.19.102"
    assert _parse(hdfs, entity=r"regex:nomatch(\d+)").entity == "test-stream"
    assert _parse(hdfs, entity="component").entity == "dfs.DataNode$DataXceiver"
    assert _parse(hdfs, entity="field:pid").entity == "143"
    assert _parse(hdfs, entity="field:absent").entity == "test-stream"
    forward = Record(
        "payment failed", source="fwd", fields=(("level", "warning"), ("pod", "pay-1")), time=1.5e9
    )
    p = LineParser(ParserConfig(log_format="raw", entity="field:pod")).parse(forward)
    assert (p.entity, p.level, p.timestamp) == ("pay-1", Level.WARN, 1.5e9)
    # a source configured with an entity field offers it as `entity`: the default follows it
    aliased = Record("payment failed", source="fwd", fields=(("entity", "pay-2"),))
    assert LineParser(ParserConfig(log_format="raw")).parse(aliased).entity == "pay-2"


def test_auto_mode_falls_back_per_line_explicit_mode_does_not() -> None:
    """Auto mode tries the other formats on a line its own does not read; a fixed format does not."""
    iso_sample = ["2026-11-02T03:42:15.123Z INFO web: GET / 200"] * 5
    auto = LineParser(ParserConfig(), sample=iso_sample)
    assert auto.format == "iso"
    p = auto.parse(Record("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure"))
    assert (p.component, p.message) == ("sshd(pam_unix)", "authentication failure")
    fixed = LineParser(ParserConfig(log_format="iso"))
    p = fixed.parse(Record("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure"))
    assert (p.timestamp, p.level, p.message) == (
        None,
        Level.UNKNOWN,
        "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure",
    )
    assert fixed.stats.unparsed == 1
    # auto without a sample: the first non-blank line decides
    lazy = LineParser(ParserConfig())
    assert lazy.parse(Record("081109 203518 143 INFO dfs.DataNode: x")).level is Level.INFO
    assert lazy.format == "hdfs" and lazy.resolved_config().log_format == "hdfs"


def test_levels_table() -> None:
    """Level words, letters, numbers and bracketed forms map to the right Level."""
    for word, level in {
        "INFO": Level.INFO, "WARNING": Level.WARN, "SEVERE": Level.ERROR, "ERROR": Level.ERROR,
        "FATAL": Level.FATAL, "FAILURE": Level.FATAL, "V": Level.TRACE, "D": Level.DEBUG,
        "I": Level.INFO, "W": Level.WARN, "E": Level.ERROR, "F": Level.FATAL, "Information": Level.INFO,
        "Warning": Level.WARN, "Critical": Level.FATAL, "Verbose": Level.TRACE, "[notice]": Level.NOTICE,
        "err": Level.ERROR, "3": Level.ERROR, "6": Level.INFO, "warn:": Level.WARN, "banana": Level.UNKNOWN,
        "": Level.UNKNOWN,
    }.items():  # fmt: skip
        assert parse_level(word) is level, word


def test_config_is_validated_and_round_trips() -> None:
    """Invalid parser settings are ConfigErrors; valid ones survive to_dict/from_dict."""
    with pytest.raises(ConfigError):
        ParserConfig(log_format="klingon")
    with pytest.raises(ConfigError):
        ParserConfig(entity="regex:(unclosed")
    with pytest.raises(ConfigError):
        ParserConfig(entity="pod")
    with pytest.raises(ConfigError):
        ParserConfig.from_dict({"log_format": "iso", "colour": "blue"})
    config = ParserConfig(log_format="json", entity="field:kubernetes.pod_name", assume_year=2020)
    assert ParserConfig.from_dict(config.to_dict()) == config
    assert set(LOG_FORMATS) >= {"auto", "syslog", "rfc5424", "iso", "hdfs", "bgl", "json", "raw"}


# ------------------------------------------------------------------------------ bad input
def test_long_lines_are_truncated_and_counted() -> None:
    """A 10 MB line is truncated fast, in every format, and counted."""
    parser = LineParser(ParserConfig(log_format="hdfs", max_message_chars=1000))
    line = "081109 203518 143 INFO dfs.DataNode: " + "x" * 10_000_000
    start = time.perf_counter()
    p = parser.parse(Record(line))
    assert time.perf_counter() - start < 1.0
    assert len(p.message) == 1000 and p.level is Level.INFO and parser.stats.truncated == 1
    for fmt in LOG_FORMATS:  # no format is slow on a 10 MB line without its header either
        start = time.perf_counter()
        LineParser(ParserConfig(log_format=fmt)).parse(Record("{" + "y" * 10_000_000))
        assert time.perf_counter() - start < 2.0, fmt


@pytest.mark.parametrize(
    "line",
    ["", "\x00\x00\x00", "081109 203518 143 INFO dfs.\x00DataNode: \ufffd\ufffd", "\ufffd" * 50, "{",
     '{"log": "\\ud800"}', "2024-13-45 99:99:99 INFO x", "<999>1 - - - - - -", "Feb 30 25:61:61 h a: b",
     "\r\n", "\udcff\udcfe"],
)  # fmt: skip
def test_hostile_lines_never_raise(line: str) -> None:
    """Control characters, odd encodings and impossible dates never make the parser raise."""
    for fmt in LOG_FORMATS:
        p = LineParser(ParserConfig(log_format=fmt)).parse(Record(line))
        assert isinstance(p.message, str) and isinstance(p.level, Level)
    assert (
        LineParser(ParserConfig(log_format="iso")).parse(Record("2024-13-45 99:99:99 INFO x")).timestamp
        is None
    )


_HEADERS = [
    "081109 203518 143 INFO dfs.DataNode$DataXceiver: ",
    "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 "
    "R02-M1-N0-C:J12-U11 RAS KERNEL INFO ",
    "2026-11-02T03:42:15.123Z ERROR db-primary: ",
    "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - ",
    "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: ",
    '<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [x@1 a="',
    "03-17 16:13:38.811  1702  2395 D WindowManager: ",
    '{"log": "',
    "[Sun Dec 04 04:47:44 2005] [notice] ",
    "20171223-22:15:29:606|Step_LSC|30002312|",
    "",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(LOG_FORMATS),
    head=st.sampled_from(_HEADERS),
    cut=st.integers(min_value=0, max_value=120),
    tail=st.text(max_size=200),
)
def test_parse_never_raises(fmt: str, head: str, cut: int, tail: str) -> None:
    """Whole or broken-off headers followed by anything parse without raising."""
    line = head[: cut or None] + tail  # whole or broken-off headers, then anything at all
    parser = LineParser(ParserConfig(log_format=fmt, max_message_chars=64))
    p = parser.parse(Record(line, source="s"), line_no=7)
    assert p.raw == line and p.line_no == 7 and p.source == "s"
    assert len(p.message) <= 64
    assert p.timestamp is None or isinstance(p.timestamp, float)
    if parser.stats.unparsed:
        # no header understood: the worst case is the raw line itself as message
        assert (p.message, p.level, p.component) == (line.rstrip()[:64], Level.UNKNOWN, "")
        assert p.timestamp is None
        assert parser.stats.truncated == (len(line.rstrip()) > 64)


def test_iso8601_helper() -> None:
    """ISO-8601 text with offsets and dates alone converts to epoch seconds; nonsense is None."""
    assert parse_iso8601("2026-11-02T03:42:15Z") == _ts("2026-11-02T03:42:15+00:00")
    assert parse_iso8601("2026-11-02 03:42:15.250-0130") == _ts("2026-11-02T05:12:15.25+00:00")
    assert parse_iso8601("2026-11-02") == _ts("2026-11-02T00:00:00+00:00")
    assert parse_iso8601("2026-02-30T00:00:00Z") is None
    assert parse_iso8601("yesterday") is None


def test_every_simulator_line_parses_exactly() -> None:
    """The project's log simulator (the README's default job) writes ISO lines with a level
    and `instance:`; every one must come back with its own time, level and instance."""
    from trainer.simulator import TEMPLATES, events

    simulated = list(
        events(
            days=1,
            seed=11,
            incidents=("db_failover", "auth_storm", "new_error", "crash_loop"),
            lines_per_day=4000,
        )
    )
    lines = [event.line for event in simulated]
    parser = LineParser(ParserConfig(entity="component"), sample=lines[:200])
    assert parser.format == "iso"
    for number, event in enumerate(simulated, 1):
        p = parser.parse(Record(event.line, source="sim.log"), number)
        assert p.timestamp == pytest.approx(event.time_ms / 1000, abs=1e-6)
        assert p.level is parse_level(TEMPLATES[event.template].level) and p.level is not Level.UNKNOWN
        assert p.component == p.entity == event.instance
        assert event.line.endswith(f" {event.instance}: {p.message}")
    assert parser.stats.unparsed == 0


# Forward times and JSON time fields a hostile client sent (issue 14): each made a later stage
# raise (`datetime.fromtimestamp`, `math.floor(inf)`) and cost other clients their records.
POISON_TIMES = [2.0**62, 253402300800.0, 1e18, float("inf"), float(2**64 - 1), float("nan"), -1.0, 1e297]


@pytest.mark.parametrize("bad", POISON_TIMES, ids=str)
def test_times_outside_the_sane_window_become_arrival_time_and_are_counted(bad: float) -> None:
    """A time outside the sane window is dropped for the arrival time and counted."""
    parser = LineParser(ParserConfig(log_format="raw"))
    arrival = 1_764_000_000.0
    parsed = parser.parse(Record("disk quota exceeded on /var", source="fb", received_at=arrival, time=bad))
    assert parsed.timestamp is None  # the pipeline then uses the arrival time
    assert parser.stats.bad_time == 1


def test_a_sane_transport_time_is_kept_and_a_bad_header_time_falls_back_to_it() -> None:
    """A sane transport time is kept; a bad header time falls back to it and is counted."""
    arrival = 1_764_000_000.0
    parser = LineParser(ParserConfig(log_format="json"))
    ok = parser.parse(Record("plain message", received_at=arrival, time=arrival - 30))
    assert ok.timestamp == arrival - 30 and parser.stats.bad_time == 0
    # A JSON line whose own time is far future (year 9999): the transport time is used instead.
    line = '{"time": "9999-12-31T23:59:59Z", "level": "info", "message": "x"}'
    parsed = parser.parse(Record(line, received_at=arrival, time=arrival - 5))
    assert parsed.timestamp == arrival - 5
    assert parser.stats.bad_time == 1
