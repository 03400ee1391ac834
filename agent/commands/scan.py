"""Score a log file in batch and report anomalies, grouped into incidents, with explanations.

The text output is a summary for people (colour on a terminal, none when piped); --format json
writes one event per line (see `logdetect schema`); --report writes a self-contained HTML page.

examples:
  logdetect scan --model model/ --input today.log
  logdetect scan --model model/ --input today.log --sensitivity high
  logdetect scan --model model/ --input today.log --format json > anomalies.jsonl
  logdetect scan --model model/ --input today.log --report report.html
  zcat old.log.gz | logdetect scan --model model/ --input -
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agent import events
from agent.durations import duration_arg
from agent.episodes import EPISODE_GAP_SECS
from agent.incidents import NEW_BEHAVIOUR_SECS
from agent.onnx_session import RuntimeOptions
from agent.parsing import ParserConfig
from agent.parsing.clock import year_is_known
from agent.pipeline import Pipeline, PipelineConfig
from agent.reader import TextCheck, check_inputs, input_name, iter_records
from agent.types import Anomaly, Incident, LineResult, Output, Sensitivity, SessionVerdict


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that serve a bundle (scan, watch)."""
    p.add_argument("--model", "-m", required=True, metavar="BUNDLE", help="model bundle written by `logdetect train`")
    p.add_argument("--sensitivity", choices=[s.value for s in Sensitivity], default="medium",
                   help="low = fewest alerts (only what training never saw; learned models explain), "
                        "medium = + the learned models that earned a vote, high = most; each set at training "
                        "(default: medium)")
    p.add_argument("--log-format", default=None, metavar="FORMAT",
                   help="read the lines in this format instead of the one the model was trained on "
                        "(auto, syslog, rfc5424, iso, hdfs, bgl, json, raw, ...; default: the model's)")
    p.add_argument("--entity", default=None, metavar="KEY",
                   help="key sessions and windows by this instead of what the model was trained with: "
                        "stream, component, 'regex:PATTERN' or 'field:NAME' (default: the model's)")
    p.add_argument("--models", default=None, metavar="LIST",
                   help="comma list of the model's detectors that may vote, e.g. isolation_forest,deeplog "
                        "(default: all in the model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where models run: auto uses an NVIDIA GPU when one is usable, else the CPU "
                        "(default: auto)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="CPU threads each model may use (default: 1)")
    p.add_argument("--dynamic-thresholds", action="store_true",
                   help="raise or lower thresholds by hour of day, as learned from the training logs "
                        "(default: off, one threshold all day)")
    p.add_argument("--episode-gap", type=duration_arg, default=EPISODE_GAP_SECS, metavar="DURATION",
                   help="one incident per episode of trouble: never-seen lines on one stream, or anomalies "
                        "on one entity or component, with no quiet gap longer than this between them "
                        "(90s, 30m, 1h, ...; default: 1h)")
    p.add_argument("--new-behaviour", type=duration_arg, default=NEW_BEHAVIOUR_SECS, metavar="DURATION",
                   help="a never-seen template (or a variant of it) that comes back within this long is an "
                        "update of the incident that first reported it, not a new incident (default: 365d)")


def pipeline_config(args: argparse.Namespace, **extra: object) -> PipelineConfig:
    """The pipeline settings from `scan`/`watch` options (parser overrides layered on the bundle's)."""
    parser = None
    if args.log_format is not None or args.entity is not None:
        from agent.bundle import load_bundle

        trained = ParserConfig(**load_bundle(args.model).manifest.get("parser", {}))
        import dataclasses

        parser = dataclasses.replace(
            trained,
            log_format=args.log_format or trained.log_format,
            entity=args.entity or trained.entity,
        )
    models = tuple(m.strip() for m in args.models.split(",")) if args.models else None
    return PipelineConfig(
        parser=parser,
        sensitivity=Sensitivity(args.sensitivity),
        runtime=RuntimeOptions(intra_op_threads=max(1, args.threads), device=args.device),
        models=models,
        dynamic_thresholds=args.dynamic_thresholds,
        episode_gap_secs=args.episode_gap,
        new_behaviour_secs=args.new_behaviour,
        **extra,  # type: ignore[arg-type]
    )


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect scan`: the bundle, the files, the output format and the HTML report."""
    add_model_options(p)
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="FILE",
                   help="log files to scan, in order; - reads standard input")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: a summary for people; json: one event per line (default: text)")
    p.add_argument("--report", metavar="HTML", help="also write a self-contained HTML report to this file "
                   "(default: none)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="colour the text output: auto = only on a terminal (default: auto)")


def run(args: argparse.Namespace) -> int:
    """Score the files through the pipeline, then print the summary or the JSON events."""
    paths = check_inputs(args.input, allow_empty=True, allow_stdin=True)
    pipe = Pipeline.from_bundle(args.model, pipeline_config(args))
    collector = None
    if args.report:
        from agent.report import ReportCollector

        sample = pipe.bundle.read_json("score_sample.json")["scores"] if "score_sample.json" in \
            pipe.bundle.manifest["files"] else []
        history = pipe.bundle.read_json("history.json") if "history.json" in pipe.bundle.manifest["files"] else None
        collector = ReportCollector(sample, history=history)
        report = collector

        def observe(r: LineResult) -> None:
            report.observe(r.line, r.score)

        pipe.observers.append(observe)
    anomalies: list[Anomaly] = []
    incidents: dict[str, Incident] = {}
    sessions: list[SessionVerdict] = []
    json_out = args.format == "json"
    out = sys.stdout.buffer
    now = time.time()

    def handle(outputs: list[Output]) -> None:
        if json_out:  # through the sinks' encoder: every field capped as the daemon's are
            for line in events.encode_all(outputs, now, pipe.provider):
                out.write(line + b"\n")
        for o in outputs:
            if isinstance(o, Anomaly):
                anomalies.append(o)
                if collector is not None:
                    collector.add_anomaly(o)
            elif isinstance(o, Incident):
                incidents[o.incident_id] = o
            elif isinstance(o, SessionVerdict):
                sessions.append(o)
                if collector is not None:
                    collector.add_session(o)

    batch = []
    for path in paths:
        check = TextCheck(input_name(path))
        for record in iter_records(path):
            check.add(record.line)
            batch.append(record)
            if len(batch) >= 4096:
                handle(pipe.process(batch, now))
                batch = []
        # A file's end ends its last record: held back by the stitcher (it waits for the next
        # line), it would otherwise be scored after the next file's lines.
        handle(pipe.process(batch, now))
        batch = []
        handle(pipe.flush_pending(now))
        problem = check.problem()
        if problem is not None:
            sys.stderr.write(f"logdetect: warning: {problem}; scores of such lines mean little\n")
    handle(pipe.process(batch, now))
    handle(pipe.close(now))
    # Known once the first lines were read (format auto-detection): whether dates have a year.
    year_known = year_is_known(pipe.parser.format, pipe.parser.config.assume_year)
    if collector is not None:
        collector.year_known = year_known
        for inc in incidents.values():
            collector.add_incident(inc)
        collector.write_html(Path(args.report), title=f"logdetect scan of {', '.join(input_name(p) for p in paths)}")
    if not json_out:
        from agent.render import render_sessions, render_summary

        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        text = render_summary(pipe.lines, anomalies, list(incidents.values()), color, year_known,
                              anomalous_lines=pipe.anomalies)
        text += render_sessions(sessions, year_known)
        sys.stdout.write(text)
    sys.stdout.flush()
    return 0
