r"""Learn what normal looks like from log files and write a model bundle.

Train on logs from a period you consider normal (a few days is typical). The last
--val-fraction of the lines (in time order) is held back to set the thresholds, so that
about --target-fpr of normal lines would be flagged.

examples:
  logdetect train --input /var/log/app/*.log --output model/
  logdetect train --input hdfs.log --log-format hdfs --entity 'regex:(blk_-?\d+)' --output hdfs-model/
  logdetect train --input app.log --models isolation_forest --output quick-model/   # no torch needed
  logdetect train --input BGL_8k.log --labels column --output bgl-model/   # Loghub label column: supervised
  logdetect train --input hdfs.log --log-format hdfs --entity 'regex:(blk_-?\d+)' --labels anomaly_label.csv \
                  --output hdfs-model/                                    # entity,label CSV: supervised
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from agent.parsing import ParserConfig
from agent.reader import BINARY_REFUSE_SHARE, TextCheck, check_inputs, input_name, iter_records
from agent.types import Record
from agent.wording import plural
from trainer.train import ALL_MODELS, DEFAULT_MODELS, TrainOptions, TrainResult, train


def add_parser_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that reads raw logs."""
    p.add_argument("--log-format", default="auto", metavar="FORMAT",
                   help="auto (detect from the first lines), syslog, rfc5424, iso, hdfs, bgl, json, raw, ... "
                        "(default: auto)")
    p.add_argument("--entity", default="stream", metavar="KEY",
                   help="what a session/window is keyed by: stream, component, 'regex:PATTERN' "
                        "(first group), or 'field:NAME' for JSON lines (default: stream)")
    p.add_argument("--no-multiline", action="store_true",
                   help="do not join stack-trace lines to the line that started them (default: join them)")


def parser_config(args: argparse.Namespace) -> ParserConfig:
    """The parser settings from `--log-format`, `--entity` and `--no-multiline`."""
    return ParserConfig(log_format=args.log_format, entity=args.entity, multiline=not args.no_multiline)


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect train`: input files, bundle directory, parser, models and budgets."""
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="FILE",
                   help="log files of normal operation, oldest first; - reads standard input")
    p.add_argument("--output", "-o", required=True, metavar="BUNDLE", help="directory to write the model bundle to")
    add_parser_options(p)
    p.add_argument("--target-fpr", type=float, default=0.001, metavar="SHARE",
                   help="share of normal lines each model may flag at medium sensitivity; low is 10x "
                        "stricter, high 10x looser (default: 0.001)")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="SHARE",
                   help="last share of lines held back for thresholds (default: 0.2)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), metavar="LIST",
                   help=f"comma list of models to train, of {','.join(ALL_MODELS)} "
                        f"(default: {','.join(DEFAULT_MODELS)})")
    p.add_argument("--epochs", type=int, default=10, metavar="N",
                   help="at most this many passes over the training data for deeplog, lstm_ae and logbert; "
                        "each stops earlier when it no longer improves (default: 10)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where deeplog, lstm_ae and logbert train: auto uses an NVIDIA GPU when torch can, "
                        "else the CPU (default: auto)")
    p.add_argument("--seed", type=int, default=42,
                   help="random seed of the models (default: 42)")
    p.add_argument("--force", action="store_true",
                   help="train even when most lines do not look like text (default: refuse)")
    p.add_argument("--feedback", metavar="STATE_DIR",
                   help="use the operator's labels kept in the agent's state dir (`logdetect feedback`): "
                        "templates labelled normal are learned and never held back as suspect; those "
                        "labelled a problem are kept out of normal training and listed (default: no labels)")
    p.add_argument("--labels", metavar="SOURCE",
                   help="which training lines were anomalies; adds the supervised classifier supervised_lstm "
                        "and keeps the anomalies out of normal training. SOURCE is `column` (the logs carry "
                        "Loghub's label column: `-` normal, else an alert tag), a CSV with a header "
                        "`entity,label` (or HDFS's `BlockId,Label`) or `line,label` (1-based line numbers "
                        "over the inputs), or an agent state dir (the operator's problem labels from "
                        "`logdetect feedback`). Labels -, 0, normal, false, no are normal; anything else an "
                        "anomaly (default: no labels)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output on stderr (default: progress)")
    p.add_argument("--dask", metavar="SCHEDULER",
                   help="run the data half (reading, parsing, template mining, matching, per-entity sequences) on "
                        "Dask: local:N "
                        "starts N local worker processes, or give a scheduler address (tcp://HOST:8786); "
                        "--input may then be fsspec URLs (s3://…); needs logdetect[fleet] (default: one process)")
    p.add_argument("--dask-blocksize", type=int, default=64 * 1024 * 1024, metavar="BYTES",
                   help="bytes of input per Dask task, cut at line ends (default: 67108864)")


def run(args: argparse.Namespace) -> int:
    """Check the options, train on the input files and write the bundle."""
    from agent.errors import UserError
    from agent.feedback import Labelled, read_labels
    from trainer.labels import COLUMN, labels_from, strip_label_column

    if not 0 < args.target_fpr < 0.5:
        raise UserError("--target-fpr must be between 0 and 0.5")
    if not 0 <= args.val_fraction < 0.9:
        raise UserError("--val-fraction must be between 0 and 0.9")
    feedback: tuple[Labelled, ...] = ()
    if args.feedback is not None:
        if not Path(args.feedback).is_dir():
            raise UserError(f"--feedback {args.feedback}: no such state directory")
        feedback = tuple(read_labels(Path(args.feedback)).values())
    labels = None
    if args.labels is not None and args.dask:
        raise UserError("--labels reads the labelled lines in one process: it cannot be combined with --dask")
    if args.labels is not None and args.labels != COLUMN:
        labels = labels_from(args.labels)
        if labels.problem_templates and not feedback:  # the state dir's labels serve both purposes
            feedback = tuple(read_labels(Path(args.labels)).values())
    options = TrainOptions(
        output=Path(args.output),
        parser=parser_config(args),
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        target_fpr=args.target_fpr,
        val_fraction=args.val_fraction,
        epochs=args.epochs,
        device=args.device,
        seed=args.seed,
        progress=not args.quiet,
        feedback=feedback,
        labels=labels,
    )
    if args.dask:
        result = _train_on_dask(args, options)
    else:
        records = _read(args)
        if args.labels == COLUMN:  # the label column is stripped before anything reads the lines
            records, column = strip_label_column(records)
            options = dataclasses.replace(options, labels=column)
        result = train(records, options)
    sys.stdout.write(
        f"Trained on {plural(result.train_lines, 'line')} ({result.log_format} format, "
        f"{plural(result.templates, 'template')}), "
        f"thresholds set on {plural(result.held_back_lines, 'held-back line')} "
        f"(alert rate there {result.held_back_alert_rate:.2%}).\n"
        f"Models: {', '.join(result.models)}. Bundle: {result.bundle} ({result.seconds:.0f}s)\n"
    )
    for note in result.notes:
        sys.stdout.write(f"note: {note}\n")
    return 0


def _train_on_dask(args: argparse.Namespace, options: TrainOptions) -> TrainResult:
    """The data half on a Dask cluster, then the rest of training here."""
    from agent.errors import UserError
    from trainer.distributed import connect, prepare
    from trainer.train import assemble_on_cluster, check_models, fit

    if "-" in args.input:
        raise UserError("--dask reads files (local paths or fsspec URLs), not standard input")
    local = [p for p in args.input if "://" not in p]
    check_inputs(local)  # local files must exist; remote ones are checked by fsspec
    check_models(options)
    started = time.monotonic()
    client = connect(args.dask)
    try:
        data = prepare(args.input, options.parser, options.miner, options.val_fraction, client, args.dask_blocksize)
        assembled = assemble_on_cluster(data, options)
    finally:  # the models are fitted here: the cluster's workers are let go first
        client.close()
        cluster = getattr(client, "cluster", None)
        if cluster is not None:
            cluster.close()
    return fit(assembled, options, started)


def _read(args: argparse.Namespace) -> list[Record]:
    """The input files' lines, refusing (or warning about) binary input."""
    from agent.errors import UserError

    paths = check_inputs(args.input, allow_stdin=True)
    records = []
    for path in paths:
        check = TextCheck(input_name(path))
        for record in iter_records(path):
            check.add(record.line)
            records.append(record)
        problem = check.problem()
        if problem is not None and check.share > BINARY_REFUSE_SHARE and not args.force:
            raise UserError(f"{problem}: refusing to learn normal behaviour from it (--force trains anyway)")
        if problem is not None:
            sys.stderr.write(f"logdetect: warning: {problem}\n")
    return records
