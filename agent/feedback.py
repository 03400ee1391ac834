"""Operator feedback: template signatures an operator marked as expected ("normal") or as a real problem.

An incident's signature is the set of template ids of the anomalous lines grouped into it. The
pipeline records each incident's signature (id, text and one sample message per template) in
`incidents.json` in the state dir, the last `MAX_INCIDENTS` incidents. `logdetect feedback`
reads it to turn `--incident ID` into template labels, and writes the labels to `feedback.json`
(plain JSON, atomically). The running pipeline stats that file on its tick and reloads it when
its mtime changes, so a label takes effect at once, and loads it at start, so it survives
restarts. A line of a template labelled normal is judged normal (counted as suppressed), and a
session verdict is dropped when, judged without the lines of labelled templates, the session is
not anomalous (its only reasons were expected; counted as suppressed_sessions); the next
`logdetect train --feedback DIR` matches each label's sample message against the new templates:
normal ones are never held back as suspect (and their samples join the training lines), problem
ones are kept out of normal training and check the new bundle's operating points.
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.atomic import write_atomic

FEEDBACK_STATE = "feedback.json"
INCIDENTS_STATE = "incidents.json"
MAX_INCIDENTS = 500
VERSION = 1


class Label(enum.Enum):
    """What an operator said about a template."""

    NORMAL = "normal"  # expected: never alert on it, learn it at the next train
    PROBLEM = "problem"  # a real problem: keep it out of normal training


@dataclass(frozen=True)
class Signature:
    """One template of an incident's signature: id, text and one message it matched."""

    template_id: int
    template: str
    sample: str


@dataclass(frozen=True)
class Labelled:
    """One template label as stored in feedback.json."""

    template_id: int
    template: str
    sample: str
    label: Label
    source: str  # "incident ID" or "template"
    at: float

    def to_json(self) -> dict[str, Any]:
        """As stored in feedback.json."""
        return {**asdict(self), "label": self.label.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Labelled:
        """From feedback.json."""
        return cls(int(d["template_id"]), str(d["template"]), str(d["sample"]), Label(d["label"]),
                   str(d["source"]), float(d["at"]))


def read_labels(state_dir: Path) -> dict[int, Labelled]:
    """The labels kept in `state_dir` by template id (none or unreadable: empty)."""
    path = state_dir / FEEDBACK_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return {int(k): Labelled.from_json(v) for k, v in state["labels"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_labels(state_dir: Path, labels: dict[int, Labelled]) -> None:
    """Replace feedback.json atomically."""
    data = {"version": VERSION, "labels": {str(k): v.to_json() for k, v in sorted(labels.items())}}
    write_atomic(state_dir / FEEDBACK_STATE, json.dumps(data, indent=1).encode("utf-8"))


def read_incidents(state_dir: Path) -> dict[str, list[Signature]]:
    """The incident signatures the pipeline recorded in `state_dir` (none or unreadable: empty)."""
    try:
        state = json.loads((state_dir / INCIDENTS_STATE).read_text(encoding="utf-8"))
        return {k: [Signature(**s) for s in v] for k, v in state["incidents"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def label_templates(state_dir: Path, signatures: list[Signature], label: Label, source: str) -> list[Labelled]:
    """Add (or replace) the labels of `signatures` in feedback.json; the labels written."""
    labels = read_labels(state_dir)
    now = time.time()
    added = [Labelled(s.template_id, s.template, s.sample, label, source, now) for s in signatures]
    labels.update({a.template_id: a for a in added})
    write_labels(state_dir, labels)
    return added


class Feedback:
    """The pipeline's side: which templates are expected, and each incident's signature."""

    def __init__(self, state_dir: Path | None) -> None:
        self.state_dir = state_dir
        self.expected: frozenset[int] = frozenset()
        self.suppressed = 0  # lines judged normal because of a label
        self.suppressed_sessions = 0  # session verdicts dropped: their only reasons were labelled normal
        self._mtime: int | None = None
        self.incidents: dict[str, dict[int, Signature]] = {}
        self._dirty = False
        self._saved_at = -float("inf")
        if state_dir is not None:
            self.incidents = {k: {s.template_id: s for s in v} for k, v in read_incidents(state_dir).items()}
        self.refresh()

    def refresh(self) -> bool:
        """Reload feedback.json when its mtime changed; True when it was reloaded."""
        if self.state_dir is None:
            return False
        try:
            mtime: int | None = os.stat(self.state_dir / FEEDBACK_STATE).st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        labels = read_labels(self.state_dir)
        self.expected = frozenset(t for t, v in labels.items() if v.label is Label.NORMAL)
        return True

    def is_expected(self, template_id: int) -> bool:
        """True when an operator marked the template as expected."""
        return template_id in self.expected

    def remember(self, incident_id: str, template_id: int, template: str, sample: str) -> None:
        """Note that an anomalous line of this template joined the incident."""
        sig = self.incidents.get(incident_id)
        if sig is None:
            sig = self.incidents[incident_id] = {}
            while len(self.incidents) > MAX_INCIDENTS:
                del self.incidents[next(iter(self.incidents))]
        if template_id not in sig:
            sig[template_id] = Signature(template_id, template[:1000], sample[:1000])
            self._dirty = True

    def maybe_save(self, now: float, every_secs: float = 1.0) -> None:
        """`save`, at most once every `every_secs` (the pipeline's tick)."""
        if self._dirty and now - self._saved_at >= every_secs:
            self._saved_at = now
            self.save()

    def save(self) -> None:
        """Write incidents.json when it changed (and a state dir is set)."""
        if self.state_dir is None or not self._dirty:
            return
        data = {"version": VERSION,
                "incidents": {k: [asdict(s) for s in v.values()] for k, v in self.incidents.items()}}
        write_atomic(self.state_dir / INCIDENTS_STATE, json.dumps(data).encode("utf-8"))
        self._dirty = False
