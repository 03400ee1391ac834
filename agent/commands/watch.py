"""Follow a log file like `tail -F` (rotation and truncation handled) or read stdin (`-`), and
emit events as lines arrive: JSON lines by default, readable blocks with --format text.

examples:
  logdetect watch --model model/ --input /var/log/app/current.log
  tail -F /var/log/app/current.log | logdetect watch --model model/ --input -
  logdetect watch --model model/ --input - --format text < today.log
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from collections.abc import Iterator

from agent.commands.scan import add_model_options, pipeline_config
from agent.pipeline import Output, Pipeline
from agent.reader import decode_line
from agent.types import Anomaly, Record

IDLE_FLUSH_SECS = 0.2


def configure(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    p.add_argument("--input", "-i", required=True, metavar="FILE|-", help="file to follow, or - for stdin")
    p.add_argument("--format", choices=["json", "text"], default="json", help="output format (default: json)")
    p.add_argument("--from-start", action="store_true", help="read a followed file from its start, not its end")


def stdin_batches(max_batch: int = 1024) -> Iterator[list[bytes]]:
    """Lines from stdin in batches, yielding (possibly empty) batches at least every IDLE_FLUSH_SECS
    so that timers run and a half-full batch is not held back. Ends at EOF."""
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], IDLE_FLUSH_SECS)
        if not ready:
            yield []
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            if pending:
                yield [pending]
            return
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        for start in range(0, len(lines), max_batch):
            yield lines[start : start + max_batch]


def run(args: argparse.Namespace) -> int:
    pipe = Pipeline.from_bundle(args.model, pipeline_config(args))
    out = sys.stdout.buffer
    text = args.format == "text"
    if args.input == "-":
        batches = stdin_batches()
    else:
        from agent.follow import follow_batches

        batches = follow_batches(args.input, from_start=args.from_start)

    def emit(outputs: list[Output]) -> None:
        now = time.time()
        for o in outputs:
            if text:
                if isinstance(o, Anomaly):
                    from agent.render import render_anomaly

                    out.write(render_anomaly(o, color=sys.stdout.isatty()).encode() + b"\n")
            else:
                out.write(pipe.encode([o], now)[0] + b"\n")
        out.flush()

    try:
        for raw_lines in batches:
            now = time.time()
            records = [Record(decode_line(b), args.input if args.input != "-" else "stdin", now) for b in raw_lines]
            if records:
                emit(pipe.process_outputs(records, now))
            emit(pipe.tick_outputs(now))
    except KeyboardInterrupt:
        pass
    emit(pipe.close_outputs(time.time()))
    return 0
