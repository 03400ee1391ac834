"""Labels for supervised training (`logdetect train --labels`): which training lines were anomalies.

`--labels` takes one of three sources; each becomes one flag per training line:

- `column`: the log files carry Loghub's label column (BGL): a line's first token is `-` for a
  normal line and an alert tag (`KERNDTLB`, `APPREAD`, …) for an anomaly. The column is stripped
  before anything else reads the line, so the bundle learns the lines as the agent will see them.
- a CSV file with a header row; the first column names what is labelled, the second is the label:
  - `entity` (also `session`, `BlockId`: HDFS's `anomaly_label.csv` works as it is): every line
    of that entity (`--entity`) takes its session's label;
  - `line`: the 1-based number of a line over the input files in order.
- a state directory of the agent (`logdetect feedback`): the lines of templates an operator
  labelled a problem are anomalies.

A label is normal when it is `-`, `0`, `normal`, `false`, `no` or empty (any case); any other
value (`1`, `Anomaly`, an alert tag) marks an anomaly. Lines no label names are normal. The
anomalous lines are kept out of what the unsupervised models learn as normal, templates seen
only in anomalous lines are kept out of the vocabulary (the novelty rule flags them, as it does
an operator's problem templates), and the supervised classifier (`supervised_lstm`) learns from
every line with its label.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.errors import InputError, UserError
from agent.parsing import strip_bgl_label
from agent.types import ParsedLine, Record

COLUMN = "column"
NORMAL_VALUES = frozenset({"-", "0", "normal", "false", "no", ""})
ENTITY_KEYS = frozenset({"entity", "session", "blockid", "block_id", "block"})
LINE_KEYS = frozenset({"line", "line_no", "lineno", "line_number"})


def is_anomaly(value: str) -> bool:
    """Whether a label value marks an anomaly (see the module docstring)."""
    return value.strip().lower() not in NORMAL_VALUES


@dataclass(frozen=True)
class Labels:
    """What the user labelled: anomalous line numbers, entities' labels, or the operator's problems."""

    source: str  # what --labels named, for messages and the manifest
    lines: frozenset[int] = frozenset()  # 0-based indexes of anomalous input lines (`column`, `line`)
    by_line: bool = False  # the labels are per input line (one record per line: no multi-line joining)
    entities: Mapping[str, bool] = field(default_factory=dict)  # entity -> anomaly
    problem_templates: bool = False  # the operator's problem templates (feedback) mark anomalies

    def flags(self, parsed: Sequence[ParsedLine], template_ids: Sequence[int], problem: Iterable[int]) -> np.ndarray:
        """One flag per parsed training line: True = labelled an anomaly."""
        if self.by_line and len(parsed) != len(template_ids):
            raise InputError("labels: internal mismatch of lines and templates")
        out = np.zeros(len(parsed), dtype=bool)
        if self.by_line:
            out[[i for i in self.lines if i < len(parsed)]] = True
        if self.entities:
            out |= np.array([self.entities.get(p.entity, False) for p in parsed], dtype=bool)
        if self.problem_templates:
            bad = set(problem)
            out |= np.array([t in bad for t in template_ids], dtype=bool)
        return out

    def to_json(self) -> dict[str, object]:
        """What the manifest records about the labels."""
        kind = "lines" if self.by_line else "entities" if self.entities else "feedback"
        return {"source": self.source, "kind": kind, "anomalous_lines_named": len(self.lines),
                "entities": len(self.entities),
                "anomalous_entities": sum(1 for v in self.entities.values() if v)}


def strip_label_column(records: Sequence[Record], source: str = COLUMN) -> tuple[list[Record], Labels]:
    """Records with Loghub's label column stripped, and the labels it carried."""
    out: list[Record] = []
    anomalous: set[int] = set()
    for i, r in enumerate(records):
        label, rest = strip_bgl_label(r.line)
        if is_anomaly(label):
            anomalous.add(i)
        out.append(dataclasses.replace(r, line=rest))
    return out, Labels(source, frozenset(anomalous), by_line=True)


def read_labels_csv(path: Path) -> Labels:
    """Labels from a CSV file whose header names `entity` (`session`, `BlockId`) or `line`."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise UserError(f"--labels {path}: {exc.strerror or exc}") from None
    if not rows or len(rows[0]) < 2:
        raise UserError(f"--labels {path}: expected a header row `entity,label` or `line,label`")
    key = rows[0][0].strip().lower()
    body = [r for r in rows[1:] if len(r) >= 2]
    if key in ENTITY_KEYS:
        return Labels(str(path), entities={r[0].strip(): is_anomaly(r[1]) for r in body})
    if key in LINE_KEYS:
        lines: set[int] = set()
        for k, r in enumerate(body, start=2):
            try:
                number = int(r[0])
            except ValueError:
                raise UserError(f"--labels {path}:{k}: {r[0]!r} is not a line number") from None
            if number < 1:
                raise UserError(f"--labels {path}:{k}: line numbers start at 1")
            if is_anomaly(r[1]):
                lines.add(number - 1)
        return Labels(str(path), frozenset(lines), by_line=True)
    raise UserError(f"--labels {path}: the first header column is {rows[0][0]!r}; "
                    f"expected entity (or session, BlockId) or line")


def labels_from(spec: str) -> Labels:
    """The labels `--labels SPEC` names (`column` is resolved by the caller, which strips the column)."""
    path = Path(spec)
    if path.is_dir():
        from agent.feedback import FEEDBACK_STATE

        if not (path / FEEDBACK_STATE).is_file():
            raise UserError(f"--labels {spec}: the directory holds no {FEEDBACK_STATE} (`logdetect feedback`)")
        return Labels(spec, problem_templates=True)
    if not path.is_file():
        raise UserError(f"--labels {spec}: no such file or state directory (or `column`)")
    return read_labels_csv(path)


def only_in_anomalies(template_ids: Sequence[int], flags: np.ndarray) -> frozenset[int]:
    """Templates every line of which is a labelled anomaly (kept out of the vocabulary)."""
    seen_normal = {t for t, f in zip(template_ids, flags, strict=True) if not f}
    return frozenset(t for t, f in zip(template_ids, flags, strict=True) if f and t >= 0 and t not in seen_normal)


def label_lines(labels: Labels, flags: np.ndarray, alert_only: frozenset[int]) -> list[str]:
    """What `train` prints about the labels."""
    return [f"labels ({labels.source}): {int(flags.sum()):,} of {len(flags):,} lines are anomalies; "
            f"{len(alert_only)} template(s) seen only in anomalies are kept out of normal (the novelty rule "
            f"flags them)"]
