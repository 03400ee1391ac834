"""Multi-line stitching on real stack traces (a JVM's and CPython's own output), on all 15
Loghub systems (nothing may be joined there), and at its bounds."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import traceback
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.multiline import Stitcher
from agent.parsing import LineParser, ParserConfig
from agent.types import Level, Record

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = (
    "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux",
    "Mac", "OpenSSH", "OpenStack", "Proxifier", "Spark", "Windows", "Zookeeper",
)  # fmt: skip


def stitch(lines: list[str], source: str = "app", **bounds: int) -> list[str]:
    """The records a fresh stitcher makes of these lines (flushed at the end)."""
    stitcher = Stitcher(**bounds)
    out: list[Record] = []
    for line in lines:
        out.extend(stitcher.feed(Record(line, source=source)))
    out.extend(stitcher.flush())
    return [record.line for record in out]


# ------------------------------------------------------------------------------- real traces
JAVA_PROGRAM = """
public class Trace {
    static void inner(int depth) {
        if (depth == 0) throw new IllegalStateException("pool exhausted, 0 available");
        inner(depth - 1);
    }
    public static void main(String[] args) {
        System.out.println("2026-11-23T15:41:47.123Z INFO web: started");
        try {
            try { inner(3); } catch (IllegalStateException e) {
                RuntimeException wrapped = new RuntimeException("request failed", e);
                wrapped.addSuppressed(new java.io.IOException("close failed"));
                throw wrapped;
            }
        } catch (RuntimeException e) {
            System.out.println("2026-11-23T15:41:48.000Z ERROR web: unhandled error in handler");
            e.printStackTrace(System.out);
        }
        System.out.println("2026-11-23T15:41:49.000Z INFO web: recovered");
        System.out.flush();
        Object o = null;
        o.toString();
    }
}
"""


def test_real_jvm_stack_traces(tmp_path: Path) -> None:
    """Stack traces printed by a real JVM stitch onto the line that logged them."""
    java = shutil.which("java")
    if java is None:  # optional realism: the hand-written traces below still run
        pytest.skip("no JVM on this machine")
    source = tmp_path / "Trace.java"
    source.write_text(JAVA_PROGRAM)
    run = subprocess.run([java, str(source)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1, run.stderr  # the uncaught NullPointerException
    out_lines, err_lines = run.stdout.splitlines(), run.stderr.splitlines()

    # stdout and stderr interleaved line by line, as a collector reading both would see them
    stitcher, records = Stitcher(), []
    for index in range(max(len(out_lines), len(err_lines))):
        for lines, name in ((out_lines, "stdout"), (err_lines, "stderr")):
            if index < len(lines):
                records.extend(stitcher.feed(Record(lines[index], source=name)))
    records.extend(stitcher.flush())
    stdout = [r.line for r in records if r.source == "stdout"]
    stderr = [r.line for r in records if r.source == "stderr"]

    error_at = next(i for i, line in enumerate(out_lines) if "ERROR" in line)
    recovered_at = next(i for i, line in enumerate(out_lines) if "recovered" in line)
    assert stdout == [
        out_lines[0],
        "\n".join(out_lines[error_at:recovered_at]),  # message + the whole trace, Caused by, Suppressed
        out_lines[recovered_at],
    ]
    trace = stdout[1]
    assert "\nCaused by: java.lang.IllegalStateException" in trace and "\tSuppressed: " in trace
    assert "more" in trace.splitlines()[-1] or "\tat " in trace.splitlines()[-1]
    assert stderr == ["\n".join(err_lines)]
    assert stderr[0].startswith('Exception in thread "main" java.lang.NullPointerException')

    parsed = LineParser(ParserConfig(log_format="iso")).parse(Record(trace))
    assert (parsed.level, parsed.component) == (Level.ERROR, "web")
    assert parsed.message.startswith(
        "unhandled error in handler\njava.lang.RuntimeException: request failed\n\tat "
    )


def _python_log_with_chained_traceback() -> list[str]:
    """What CPython's logging writes for logger.exception() on a chained exception."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("logdetect.test.multiline")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("processing batch 17")
        try:
            try:
                settings_by_name: dict[str, int] = {}
                settings_by_name["missing"] += 1  # a real KeyError
            except KeyError as exc:
                raise ValueError("bad record") from exc
        except ValueError:
            try:
                int("x")
            except ValueError:
                logger.exception("batch 17 failed")
        logger.warning("retrying batch 17")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_real_python_traceback_joins_the_logged_line() -> None:
    """A chained Python traceback joins the log line that reported it."""
    lines = _python_log_with_chained_traceback()
    assert any(line.startswith("During handling of the above exception") for line in lines)
    assert any(line.startswith("The above exception was the direct cause") for line in lines)
    records = stitch(lines)
    assert len(records) == 3
    assert records[0].endswith("processing batch 17")
    failed = records[1].split("\n")
    assert failed[0].endswith("ERROR logdetect.test.multiline: batch 17 failed")
    assert failed[1] == "Traceback (most recent call last):"
    assert failed[-1].startswith("ValueError: invalid literal for int()")
    assert failed == lines[1:-1]  # every line of the traceback, blank separators included
    assert records[2].endswith("WARNING logdetect.test.multiline: retrying batch 17")
    parsed = LineParser(ParserConfig(log_format="iso")).parse(Record(records[1]))
    assert (parsed.level, parsed.component) == (Level.ERROR, "logdetect.test.multiline")


def test_bare_python_traceback_is_its_own_record() -> None:
    """An uncaught traceback with no log line before it is one record of its own."""
    try:
        [].pop()
    except IndexError:
        uncaught = traceback.format_exc().splitlines()
    lines = [*uncaught, "2026-11-23 15:41:50,000 INFO worker: restarted"]
    assert stitch(lines) == ["\n".join(uncaught), lines[-1]]


def test_log4j_line_with_java_exception_hadoop_style() -> None:
    """A log4j line with a Java exception, causes and `... n more` is one record."""
    lines = [
        "2015-10-18 18:05:50,123 WARN [main] org.apache.hadoop.ipc.Client: Failed to connect to server",
        "java.net.ConnectException: Connection refused",
        "\tat sun.nio.ch.SocketChannelImpl.checkConnect(Native Method)",
        "\tat org.apache.hadoop.net.NetUtils.connect(NetUtils.java:530)",
        "Caused by: java.io.IOException: No route to host",
        "\t... 12 more",
        "\t... 3 common frames omitted",
        "2015-10-18 18:05:51,001 INFO [main] org.apache.hadoop.ipc.Client: Retrying connect",
        "2015-10-18 18:05:52,001 INFO [main] org.apache.hadoop.ipc.Client: Connected",
    ]
    assert stitch(lines) == ["\n".join(lines[:7]), lines[7], lines[8]]


# ------------------------------------------------------------------------------- real data
def test_loghub_lines_are_never_joined(data_dir: Path) -> None:
    """No line of any Loghub-2k system is taken for a continuation."""
    for system in SYSTEMS:
        text = (data_dir / "loghub_2k" / system / f"{system}_2k.log").read_text(encoding="utf-8")
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        assert len(lines) >= 2000
        assert stitch(lines, source=system) == lines, system


# ------------------------------------------------------------------------------- bounds
TRACE = ["2026-01-01T00:00:00Z ERROR x: boom", *(f"\tat a.B.m{i}(B.java:{i})" for i in range(11))]


def test_max_lines_splits_without_losing_lines() -> None:
    """A trace over max_lines is split into several records; no line is lost."""
    stitcher = Stitcher(max_lines=5)
    out: list[Record] = []
    for line in [*TRACE, "2026-01-01T00:00:01Z INFO x: next"]:
        out.extend(stitcher.feed(Record(line)))
    out.extend(stitcher.flush())
    sizes = [len(r.line.split("\n")) for r in out]
    assert sizes == [5, 5, 2, 1]
    assert stitcher.splits == 2
    assert "\n".join(r.line for r in out).split("\n") == [*TRACE, "2026-01-01T00:00:01Z INFO x: next"]


def test_max_chars_and_huge_lines() -> None:
    """Records stop at max_chars, and a huge continuation line stands alone."""
    lines = ["H" * 100, *(" " + "c" * 99 for _ in range(5))]
    assert [len(r) for r in stitch(lines, max_chars=350)] == [302, 302]
    huge = " " + "x" * 10_000_000  # a 10 MB continuation line: over max_chars, so a record alone
    assert stitch(["header", huge, " tail"], max_chars=1_000_000) == ["header", huge, " tail"]


def test_feed_flush_and_streams() -> None:
    """Each stream is stitched separately, the oldest evicted beyond max_streams."""
    stitcher = Stitcher(max_streams=2)
    assert stitcher.feed(Record("one", source="a")) == []
    assert [r.line for r in stitcher.feed(Record("two", source="a"))] == ["one"]
    assert stitcher.feed(Record("\tat x.Y.z(Y.java:1)", source="b")) == []  # nothing pending in b: a header
    assert [r.line for r in stitcher.feed(Record("three", source="c"))] == ["two"]  # a is the oldest
    assert sorted(r.line for r in stitcher.flush()) == ["\tat x.Y.z(Y.java:1)", "three"]
    assert stitcher.flush() == [] and stitcher.pending == 0
    # a blank line outside a traceback is a record of its own, never swallowed
    assert stitch(["a", "", "b"]) == ["a", "", "b"]
    # fields, time and source of the first line survive the join
    first = Record("2026-01-01T00:00:00Z ERROR x: boom", source="s", time=5.0, fields=(("k", "v"),))
    stitcher = Stitcher()
    stitcher.feed(first)
    stitcher.feed(Record("\tat a.B.c(B.java:1)", source="s"))
    [joined] = stitcher.flush()
    assert (joined.source, joined.time, joined.fields) == ("s", 5.0, (("k", "v"),))


POOL = [
    "2026-01-01T00:00:00Z INFO a: x",
    "\tat a.B.c(B.java:1)",
    "Caused by: java.io.IOException: x",
    "\t... 3 more",
    "java.lang.IllegalStateException: y",
    "Traceback (most recent call last):",
    '  File "a.py", line 1, in f',
    "    f()",
    "ValueError: z",
    "During handling of the above exception, another exception occurred:",
    "",
    "plain text line",
]


@settings(max_examples=300, deadline=None)
@given(
    feed=st.lists(st.tuples(st.sampled_from(POOL), st.sampled_from(["a", "b"])), max_size=60),
    max_lines=st.integers(min_value=1, max_value=8),
)
def test_stitching_keeps_every_line_in_order(feed: list[tuple[str, str]], max_lines: int) -> None:
    """Whatever the input, every line comes out once, in order, per stream."""
    stitcher = Stitcher(max_lines=max_lines)
    out: list[Record] = []
    for line, source in feed:
        out.extend(stitcher.feed(Record(line, source=source)))
    out.extend(stitcher.flush())
    for source in ("a", "b"):
        sent = [line for line, s in feed if s == source and line]
        got = [line for r in out if r.source == source for line in r.line.split("\n") if line]
        assert got == sent
    assert all(len(r.line.split("\n")) <= max_lines for r in out)


@settings(max_examples=200, deadline=None)
@given(
    feed=st.lists(st.tuples(st.sampled_from(POOL), st.sampled_from(["a", "b", "c"])), max_size=60),
    max_lines=st.integers(min_value=1, max_value=8),
    max_streams=st.integers(min_value=1, max_value=3),
)
def test_feed_all_is_feed_of_each_record(feed: list[tuple[str, str]], max_lines: int, max_streams: int) -> None:
    """The batch path the pipeline takes gives the same records, counters and state as `feed`."""
    one, many = Stitcher(max_lines=max_lines, max_streams=max_streams), Stitcher(max_lines=max_lines,
                                                                                max_streams=max_streams)
    records = [Record(line, source=source) for line, source in feed]
    singly = [r for record in records for r in one.feed(record)]
    assert many.feed_all(records) == singly
    assert (many.joined, many.splits, many.held()) == (one.joined, one.splits, one.held())
    assert many.flush() == one.flush()
