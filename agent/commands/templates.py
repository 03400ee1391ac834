"""Show how log lines group into templates, learnt exactly as `train` learns them.

The files are read, stitched and header-parsed as `train` does, the templates are mined from
the message bodies and frozen, and every line is then matched back through them.

  text   a table of templates, most frequent first: id, lines, template, one example line
  csv    one row per input line, in input order: line_no,template_id,template
  json   the same rows as JSON objects, one per line (JSON Lines)

line_no counts logical lines: with multi-line stitching on (the default) a stack trace is one
line; --no-multiline numbers the physical lines.

examples:
  logdetect templates --input /var/log/app/*.log
  logdetect templates --input app.log --format csv > groups.csv
  logdetect templates --input hdfs.log --log-format hdfs --format json --no-multiline
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import orjson

from agent.parsing import ParserConfig
from agent.parsing.records import parse_records
from agent.reader import check_inputs, iter_records
from agent.templates import MinerConfig, TemplateMiner, learn_templates
from agent.types import ParsedLine, Record

FORMATS = ("text", "csv", "json")
UNMATCHED = -1  # a line that fits no frozen template (cannot happen for the lines learnt from)


@dataclass(frozen=True, slots=True)
class GroupedLine:
    """One input line with the template it was matched to."""

    line_no: int
    template_id: int
    template: str
    raw: str


@dataclass(frozen=True)
class Grouping:
    """Every line's template, the format detected, and the miner that made them."""

    lines: tuple[GroupedLine, ...]
    log_format: str
    templates: int
    miner: TemplateMiner


def group_records(records: Sequence[Record], parser: ParserConfig, miner: MinerConfig | None = None) -> Grouping:
    """Parse, mine and match back `records` as `train` does; one GroupedLine per logical line."""
    parsed, fmt = parse_records(records, parser)
    learnt = learn_templates((p.message for p in parsed), miner)
    return Grouping(tuple(_matched(learnt, p) for p in parsed), fmt, len(learnt), learnt)


def _matched(miner: TemplateMiner, p: ParsedLine) -> GroupedLine:
    m = miner.match(p.message)
    if m is None:
        return GroupedLine(p.line_no, UNMATCHED, p.message, p.raw)
    return GroupedLine(p.line_no, m.template_id, miner.template(m.template_id) or m.template, p.raw)


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect templates`: input files, log format, output format and file."""
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="FILE", help="log files")
    p.add_argument("--log-format", default="auto",
                   help="auto (detect from the first lines), syslog, rfc5424, iso, hdfs, bgl, json, raw, ... "
                        "(default: auto)")
    p.add_argument("--no-multiline", action="store_true",
                   help="do not join stack-trace lines to the line that started them (default: join them)")
    p.add_argument("--format", "-f", choices=FORMATS, default="text",
                   help="text: a table of templates; csv/json: one row per input line (default: text)")
    p.add_argument("--output", "-o", metavar="FILE", default=None,
                   help="write here instead of stdout (default: stdout)")


def run(args: argparse.Namespace) -> int:
    """Mine the input's templates as `train` would and write them as a table, CSV or JSON."""
    paths = check_inputs(args.input)
    records = [r for path in paths for r in iter_records(path)]
    config = ParserConfig(log_format=args.log_format, multiline=not args.no_multiline)
    grouping = group_records(records, config)
    if args.output is None:
        write(grouping, args.format, sys.stdout)
    else:
        with Path(args.output).open("w", encoding="utf-8", newline="") as out:
            write(grouping, args.format, out)
    return 0


def write(grouping: Grouping, fmt: str, out: TextIO) -> None:
    """Write the grouping: one CSV or JSON row per line, or a table of templates."""
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["line_no", "template_id", "template"])
        for g in grouping.lines:
            writer.writerow([g.line_no, g.template_id, g.template])
    elif fmt == "json":
        for g in grouping.lines:
            out.write(orjson.dumps({"line_no": g.line_no, "template_id": g.template_id,
                                    "template": g.template}).decode() + "\n")
    else:
        _write_table(grouping, out)


def _write_table(grouping: Grouping, out: TextIO) -> None:
    counts = Counter(g.template_id for g in grouping.lines)
    example: dict[int, GroupedLine] = {}
    for g in grouping.lines:
        example.setdefault(g.template_id, g)
    out.write(f"{len(grouping.lines):,} lines ({grouping.log_format} format), {len(counts):,} templates\n\n")
    width = max((len(str(t)) for t in counts), default=2)
    out.write(f"{'id':>{width}} {'lines':>7}  template\n")
    for tid, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        g = example[tid]
        out.write(f"{tid:>{width}} {n:>7}  {_clip(g.template, 160)}\n")
        out.write(f"{'':>{width}} {'':>7}  e.g. {_clip(g.raw, 155)}\n")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
