"""Header parsers for the plain-text log formats, one small factory per format.

Each factory takes the year policy (for formats without a year) and returns a function
`line -> Header | None`: None means "this line is not in my format". A Header is the tuple
(timestamp, level, component, message, fields); `message` is the rest of the line after the
header, untrimmed. Regexes match only the header and are anchored at the start, so a 10 MB
line costs no more than a short one. Parsers may raise on pathological input (the caller
catches); none of them loops over the message.

The dict `TEXT_FORMATS` lists them most specific first: `detect_format` breaks ties in that
order (a Windows CBS line also reads as an ISO line, an OpenStack line without its file prefix
too), and `auto` mode falls back through it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from agent.parsing.clock import MONTHS, YearGuess, epoch, fraction, offset_seconds, parse_iso8601
from agent.parsing.levels import LEVEL_LETTERS, SYSLOG_SEVERITY, level_words_pattern, parse_level
from agent.types import Level

Fields = tuple[tuple[str, str], ...]
Header = tuple[float | None, Level, str, str, Fields]
HeaderParser = Callable[[str], Header | None]
FormatFactory = Callable[[YearGuess], HeaderParser]

_NO_FIELDS: Fields = ()
_UNSEEN: float = math.nan  # a timestamp cache's miss (compared by identity: never a cached value)
_TS_CACHE_MAX = 4096


def _remember(cache: dict[str, float | None], key: str, value: float | None) -> float | None:
    """Store one parsed timestamp prefix; most lines share their second with a neighbour."""
    if len(cache) >= _TS_CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


_MONTH_NAMES = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"

# ---------------------------------------------------------------------------------- syslog
# RFC 3164 (BSD syslog) as files on disk have it: optional <PRI>, "Mmm dd hh:mm:ss", host, then a
# tag "app[pid]:" (app may hold spaces: macOS "Microsoft Word[123]:", Linux "syslogd 1.4.1:"),
# macOS's optional " (addr)" after the pid. Without a tag the message starts after the host.
_SYSLOG = re.compile(
    rf"(?:<(\d{{1,3}})>)?({_MONTH_NAMES}) +(\d{{1,2}}) (\d\d):(\d\d):(\d\d)(?:\.(\d{{1,6}}))?(?: (\d{{4}}))?"
    r" +(\S+) +(?:([^:\[\s][^:\[]{0,63}?)(?:\[(\d+)\])?(?: \(([^)]{0,256})\))?: ?)?"
)


def make_syslog(year: YearGuess) -> HeaderParser:
    """Header parser for RFC 3164 syslog lines (the year guessed)."""
    match = _SYSLOG.match
    cache: dict[str, float | None] = {}
    unknown = Level.UNKNOWN

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        pri, mon, day, hh, mi, ss, frac, yyyy, host, app, pid, addr = m.groups()
        key = line[m.start(2) : m.end(8) if yyyy else m.end(6)]
        ts = cache.get(key, _UNSEEN)
        if ts is _UNSEEN:
            month = MONTHS[mon.lower()]
            if yyyy is None:
                value = year.epoch(month, int(day), int(hh), int(mi), int(ss))
            else:
                value = epoch(int(yyyy), month, int(day), int(hh), int(mi), int(ss))
            ts = _remember(cache, key, value)
        if ts is not None and frac:
            ts += fraction(frac)
        level = SYSLOG_SEVERITY[int(pri) % 8] if pri else unknown
        if app and pid and not addr:  # the usual tag, `app[pid]:`: its fields built at once
            app = app.strip()
            return ts, level, app or host, line[m.end() :], (("host", host), ("app", app), ("pid", pid))
        fields: list[tuple[str, str]] = [("host", host)]
        if app:
            app = app.strip()
            fields.append(("app", app))
        if pid:
            fields.append(("pid", pid))
        if addr:
            fields.append(("address", addr))
        return ts, level, app or host, line[m.end() :], tuple(fields)

    return parse


# RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]
_RFC5424 = re.compile(
    r"<(\d{1,3})>\d{1,2} (\S+) (\S+) (\S+) (\S+) (\S+) "
    r'(-|(?:\[(?:[^\]"\\]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: |$)'
)
_SD_ELEMENT = re.compile(r'\[([^\s\]=]+)((?:\s+[^\s=\]]+="(?:[^"\\]|\\.)*")*)\s*\]')
_SD_PARAM = re.compile(r'([^\s=\]]+)="((?:[^"\\]|\\.)*)"')
_SD_UNESCAPE = re.compile(r"\\([\"\\\]])")


def make_rfc5424(year: YearGuess) -> HeaderParser:
    """Header parser for RFC 5424 syslog lines."""
    match = _RFC5424.match

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        pri, stamp, host, app, procid, msgid, sd = m.groups()
        ts = None if stamp == "-" else parse_iso8601(stamp)
        fields: list[tuple[str, str]] = []
        for name, value in (("host", host), ("app", app), ("pid", procid), ("msgid", msgid)):
            if value != "-":
                fields.append((name, value))
        if sd != "-":
            for element in _SD_ELEMENT.finditer(sd):
                sd_id = element.group(1)
                for param in _SD_PARAM.finditer(element.group(2)):
                    fields.append((f"{sd_id}.{param.group(1)}", _SD_UNESCAPE.sub(r"\1", param.group(2))))
        message = line[m.end() :]
        if message.startswith("\ufeff"):  # RFC 5424 §6.4: UTF-8 messages may start with a BOM
            message = message[1:]
        component = app if app != "-" else (host if host != "-" else "")
        return ts, SYSLOG_SEVERITY[int(pri) % 8], component, message, tuple(fields)

    return parse


# ------------------------------------------------------------------------------------- iso
# ISO-8601 application logs: a timestamp, then a level word, optionally a [thread] before or
# after it, optionally "component:" or "logger - " before the message. Covers log4j/logback
# (Hadoop: `INFO [main] org.x.Y: msg`; Zookeeper: `- INFO  [thread:C@774] - msg`), Python
# logging (`name - LEVEL - msg` too) and our simulator (`...123Z ERROR db-primary: msg`).
_ISO_HEAD = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d(?::?\d\d)?)?(?![\d:])"
)
_LEVELS = level_words_pattern()
# Case-sensitive alternatives (INFO|info|Info) match several times faster than (?i:...).
_LEVEL_WORD = f"{_LEVELS}|{_LEVELS.lower()}|{_LEVELS.title()}"
# Bracket content with one level of nesting (Zookeeper's `[QuorumPeer[myid=1]/0:...@774]`),
# written unrolled: `(?:[^][]|\[[^][]*\])*` backtracks per character and is 4x slower.
_BRACKET = r"[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*"
_ISO_TAIL = re.compile(
    r"[\s,|-]*"
    rf"(?:\[(?P<t1>{_BRACKET})\][\s-]+)?"
    rf"[\[<(]?(?P<level>{_LEVEL_WORD})[\]>)]?:?(?:\s+|$)"
    r"(?:[-|]\s+)?"
    rf"(?:\[(?P<t2>{_BRACKET})\](?:\s+|$))?"
    r"(?:-\s+|(?P<comp>[\w.$/@#-]{1,200}+)(?::\s+|:$|\s+-\s+))?"
)
# No level word: perhaps syslog with an RFC 3339 time, `2024-04-25T10:00:00.123456+00:00 host
# sshd[812]: msg`. Host and app are single tokens here, so "Connected to db: ok" is not taken.
_ISO_SYSLOG_TAG = re.compile(r" +([\w.-]{1,255}) ([\w./()@-]{1,64}?)(?:\[(\d+)\])?: ")
_ISO_PYTHON = re.compile(rf"[\s,|-]*(?P<comp>[\w.$/@#-]{{1,200}}+) - (?P<level>{_LEVEL_WORD}) - ")


def make_iso(year: YearGuess) -> HeaderParser:
    """Header parser for application logs that start with an ISO-8601 timestamp."""
    head = _ISO_HEAD.match
    tail = _ISO_TAIL.match
    python = _ISO_PYTHON.match
    syslog_tag = _ISO_SYSLOG_TAG.match
    cache: dict[str, float | None] = {}

    def parse(line: str) -> Header | None:
        m = head(line)
        if m is None:
            return None
        key = line[:19]
        ts: float | None
        if key in cache:
            ts = cache[key]
        else:
            y, mo, d, hh, mi, ss = m.group(1, 2, 3, 4, 5, 6)
            ts = _remember(cache, key, epoch(int(y), int(mo), int(d), int(hh), int(mi), int(ss)))
        frac, tz = m.group(7, 8)
        if ts is not None:
            if frac:
                ts += fraction(frac)
            if tz is not None and tz != "Z":
                ts -= offset_seconds(tz)
        start = m.end()
        t = tail(line, start)
        if t is None:
            t = python(line, start)
            if t is None:
                t = syslog_tag(line, start)
                if t is not None:  # rsyslog's RFC 3339 file format (Ubuntu 23.10+ /var/log/syslog)
                    host, app, pid = t.groups()
                    tag_fields: Fields = (
                        (("host", host), ("app", app), ("pid", pid))
                        if pid
                        else (("host", host), ("app", app))
                    )
                    return ts, Level.UNKNOWN, app, line[t.end() :], tag_fields
                rest = line[start:].lstrip()
                if rest[:1] in (",", "|"):
                    rest = rest[1:].lstrip()
                return ts, Level.UNKNOWN, "", rest, _NO_FIELDS
            return ts, parse_level(t.group("level")), t.group("comp"), line[t.end() :], _NO_FIELDS
        t1, level, t2, comp = t.group("t1", "level", "t2", "comp")
        fields: Fields = _NO_FIELDS
        if t1 is not None:
            fields = (("thread", t1),)
        elif comp is not None and t2 is not None:
            fields = (("thread", t2),)
        return ts, parse_level(level), comp or t2 or "", line[t.end() :], fields

    return parse


# Windows CBS/CSI (`2016-09-28 04:30:30, Info                  CBS    Loaded ...`).
_WINDOWS = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d), ([A-Za-z]+) +(\S+)(?: +|$)")


def make_windows(year: YearGuess) -> HeaderParser:
    """Header parser for the Loghub Windows format."""
    match = _WINDOWS.match
    cache: dict[str, float | None] = {}

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        key = line[:19]
        ts: float | None
        if key in cache:
            ts = cache[key]
        else:
            y, mo, d, hh, mi, ss = m.group(1, 2, 3, 4, 5, 6)
            ts = _remember(cache, key, epoch(int(y), int(mo), int(d), int(hh), int(mi), int(ss)))
        level, component = m.group(7, 8)
        return ts, parse_level(level), component, line[m.end() :], _NO_FIELDS

    return parse


# OpenStack (oslo.log): `[file ]2017-05-16 00:00:00.008 25746 INFO nova.x.y [req-… - -] msg`;
# Loghub's copy carries the log file name in front.
_OPENSTACK = re.compile(
    r"(?:(\S+) )?(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? (\d+) ([A-Za-z]+) (\S+)"
    r"(?: \[([^\]]*)\])?(?: |$)"
)


def make_openstack(year: YearGuess) -> HeaderParser:
    """Header parser for the Loghub OpenStack format."""
    match = _OPENSTACK.match
    cache: dict[str, float | None] = {}

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        logfile, y, mo, d, hh, mi, ss, frac, pid, level, component, context = m.groups()
        key = f"{y}{mo}{d}{hh}{mi}{ss}"
        ts: float | None
        if key in cache:
            ts = cache[key]
        else:
            ts = _remember(cache, key, epoch(int(y), int(mo), int(d), int(hh), int(mi), int(ss)))
        if ts is not None and frac:
            ts += fraction(frac)
        fields = [("pid", pid)]
        if logfile:
            fields.append(("file", logfile))
        if context:
            fields.append(("context", context))
        return ts, parse_level(level), component, line[m.end() :], tuple(fields)

    return parse


# ------------------------------------------------------------------------------ Loghub shapes
# HDFS: `081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block …`
_HDFS = re.compile(r"(\d\d)(\d\d)(\d\d) (\d\d)(\d\d)(\d\d) (\d+) ([A-Za-z]+) ([^\s:]+):(?: |$)")


def make_hdfs(year: YearGuess) -> HeaderParser:
    """Header parser for the HDFS (Hadoop DataNode) format."""
    match = _HDFS.match
    cache: dict[str, float | None] = {}

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        key = line[:13]
        ts: float | None
        if key in cache:
            ts = cache[key]
        else:
            yy, mo, d, hh, mi, ss = m.group(1, 2, 3, 4, 5, 6)
            ts = _remember(cache, key, epoch(2000 + int(yy), int(mo), int(d), int(hh), int(mi), int(ss)))
        pid, level, component = m.group(7, 8, 9)
        return ts, parse_level(level), component, line[m.end() :], (("pid", pid),)

    return parse


# BGL: `[label ]1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872
# R02-M1-N0-C:J12-U11 RAS KERNEL INFO msg`. The epoch column is authoritative (the
# second timestamp is local time); its microseconds are added. A leading label column
# ("-" or an alert category) is tolerated and dropped: labels must never reach features.
# Some lines have "-" for the node and no repeated node (`… - 2005-08-26-12.29.21.712532 RAS
# KERNEL FATAL Kill job …`), hence the optional column and a level from the known words.
_BGL = re.compile(
    r"(?:\S+ )?(\d{9,10}) \d{4}\.\d\d\.\d\d (\S+) \d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.(\d{1,6})"
    rf"(?: \S+)? (\S+) (\S+) ({_LEVELS})(?: |$)"
)


_TENS = tuple(10**i for i in range(7))  # 10 ** len(micros): a microseconds column holds 1-6 digits


def make_bgl(year: YearGuess) -> HeaderParser:
    """Header parser for BGL lines (the label column already stripped or `-`)."""
    match = _BGL.match
    levels: dict[str, Level] = {}  # level word -> Level (the words of `_LEVELS`: a few)

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        seconds, node, micros, kind, facility, word = m.groups()
        level = levels.get(word)
        if level is None:
            level = levels[word] = parse_level(word)
        # int + int / int: a float, the same one `float(...)` of it was
        return (int(seconds) + int(micros) / _TENS[len(micros)], level, node, line[m.end() :],
                (("type", kind), ("facility", facility)))

    return parse


def strip_bgl_label(line: str) -> tuple[str, str]:
    """Split BGL's label column off a line: ("-" or the alert category, rest of the line).

    A line already without a label (first token is the epoch column) is returned whole with
    "-", the label of normal lines.
    """
    head, sep, rest = line.partition(" ")
    if not sep:
        return ("-", line) if line.isdigit() or not line else (head, "")
    if head.isdigit():
        return "-", line
    return head, rest


# HPC: `LogId Node Component State Time Flag Content`
_HPC = re.compile(r"(\d+) (\S+) (\S+) (\S+) (\d{9,10}) (-?\d+)(?: |$)")


def make_hpc(year: YearGuess) -> HeaderParser:
    """Header parser for the Loghub HPC format."""
    match = _HPC.match

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        _, node, facility, state, seconds, flag = m.groups()
        fields = (("facility", facility), ("state", state), ("flag", flag))
        return float(seconds), Level.UNKNOWN, node, line[m.end() :], fields

    return parse


# Spark (log4j with yy/MM/dd): `17/06/09 20:10:40 INFO executor.Executor: msg`
_SPARK = re.compile(r"(\d\d)/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d) ([A-Za-z]+) ([^\s:]+):(?: |$)")


def make_spark(year: YearGuess) -> HeaderParser:
    """Header parser for the Spark (log4j, two-digit year) format."""
    match = _SPARK.match
    cache: dict[str, float | None] = {}

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        key = line[:17]
        ts: float | None
        if key in cache:
            ts = cache[key]
        else:
            yy, mo, d, hh, mi, ss = m.group(1, 2, 3, 4, 5, 6)
            ts = _remember(cache, key, epoch(2000 + int(yy), int(mo), int(d), int(hh), int(mi), int(ss)))
        level, component = m.group(7, 8)
        return ts, parse_level(level), component, line[m.end() :], _NO_FIELDS

    return parse


# Android logcat "threadtime": `03-17 16:13:38.811  1702  2395 D WindowManager: msg`
_ANDROID = re.compile(
    r"(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{3}) +(\d+) +(\d+) ([VDIWEFAS]) (.{0,128}?) *:(?: |$)"
)


def make_android(year: YearGuess) -> HeaderParser:
    """Header parser for Android logcat lines (the year guessed)."""
    match = _ANDROID.match
    cache: dict[str, float | None] = {}

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        key = line[:14]
        ts: float | None
        if key in cache:
            ts = cache[key]
        else:
            mo, d, hh, mi, ss = m.group(1, 2, 3, 4, 5)
            ts = _remember(cache, key, year.epoch(int(mo), int(d), int(hh), int(mi), int(ss)))
        millis, pid, tid, letter, tag = m.group(6, 7, 8, 9, 10)
        if ts is not None:
            ts += int(millis) / 1000
        fields = (("pid", pid), ("tid", tid))
        return ts, LEVEL_LETTERS[letter], tag.strip(), line[m.end() :], fields

    return parse


# Apache error log, 2.2 (`[Sun Dec 04 04:47:44 2005] [notice] msg`) and 2.4
# (`[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] msg`).
_APACHE = re.compile(
    rf"\[(?:[A-Z][a-z]{{2}} )?({_MONTH_NAMES}) +(\d{{1,2}}) (\d\d):(\d\d):(\d\d)(?:\.(\d{{1,6}}))?"
    r" (\d{4})\]"
    r" \[(?:([\w-]+):)?([A-Za-z]+)\d?\](?: \[pid (\d+)(?::tid (\d+))?\])?(?: |$)"
)


def make_apache(year: YearGuess) -> HeaderParser:
    """Header parser for the Apache error-log format."""
    match = _APACHE.match
    cache: dict[str, float | None] = {}

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        mon, d, hh, mi, ss, frac, yyyy, module, level, pid, tid = m.groups()
        key = f"{yyyy}{mon}{d}{hh}{mi}{ss}"
        ts: float | None
        if key in cache:
            ts = cache[key]
        else:
            value = epoch(int(yyyy), MONTHS[mon.lower()], int(d), int(hh), int(mi), int(ss))
            ts = _remember(cache, key, value)
        if ts is not None and frac:
            ts += fraction(frac)
        fields: Fields = _NO_FIELDS
        if pid:
            fields = (("pid", pid), ("tid", tid)) if tid else (("pid", pid),)
        return ts, parse_level(level), module or "", line[m.end() :], fields

    return parse


# HealthApp: `20171223-22:15:29:606|Step_LSC|30002312|msg` (time fields are not zero-padded)
_HEALTHAPP = re.compile(
    r"(\d{4})(\d\d)(\d\d)-(\d{1,2}):(\d{1,2}):(\d{1,2}):(\d{1,3})\|([^|]{0,256})\|(\d+)\|"
)


def make_healthapp(year: YearGuess) -> HeaderParser:
    """Header parser for the Loghub HealthApp format."""
    match = _HEALTHAPP.match

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        y, mo, d, hh, mi, ss, millis, component, pid = m.groups()
        ts = epoch(int(y), int(mo), int(d), int(hh), int(mi), int(ss))
        if ts is not None:
            ts += int(millis) / 1000
        return ts, Level.UNKNOWN, component, line[m.end() :], (("pid", pid),)

    return parse


# Proxifier: `[10.30 16:49:06] chrome.exe *64 - host:443 open through proxy …`
_PROXIFIER = re.compile(r"\[(\d\d)\.(\d\d) (\d\d):(\d\d):(\d\d)\] (.{1,128}?) - ")


def make_proxifier(year: YearGuess) -> HeaderParser:
    """Header parser for the Proxifier format (the year guessed)."""
    match = _PROXIFIER.match

    def parse(line: str) -> Header | None:
        m = match(line)
        if m is None:
            return None
        mo, d, hh, mi, ss, program = m.groups()
        ts = year.epoch(int(mo), int(d), int(hh), int(mi), int(ss))
        return ts, Level.UNKNOWN, program, line[m.end() :], _NO_FIELDS

    return parse


def make_raw(year: YearGuess) -> HeaderParser:
    """Header parser that takes the whole line as the message (no header)."""
    def parse(line: str) -> Header | None:
        return None, Level.UNKNOWN, "", line, _NO_FIELDS

    return parse


# Most specific first: detection breaks ties in this order, auto mode falls back through it.
TEXT_FORMATS: dict[str, FormatFactory] = {
    "rfc5424": make_rfc5424,
    "bgl": make_bgl,
    "hpc": make_hpc,
    "hdfs": make_hdfs,
    "spark": make_spark,
    "android": make_android,
    "healthapp": make_healthapp,
    "proxifier": make_proxifier,
    "apache": make_apache,
    "windows": make_windows,
    "openstack": make_openstack,
    "syslog": make_syslog,
    "iso": make_iso,
}
