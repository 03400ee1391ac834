"""The labels `train --labels` reads (trainer/labels.py), on the real Loghub files' own labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from agent.errors import UserError
from agent.feedback import Label, Labelled, write_labels
from agent.parsing import ParserConfig
from agent.parsing.records import parse_records
from agent.reader import iter_records
from agent.types import Record
from trainer.labels import is_anomaly, labels_from, only_in_anomalies, strip_label_column


def test_label_values() -> None:
    """Loghub's `-` and the usual spellings of normal are normal; alert tags and anything else are anomalies."""
    for normal in ("-", "0", "Normal", "FALSE", "no", " "):
        assert not is_anomaly(normal)
    for anomaly in ("KERNDTLB", "Anomaly", "1", "problem", "true"):
        assert is_anomaly(anomaly)


def test_the_bgl_label_column_is_stripped_and_read(data_dir: Path) -> None:
    """`--labels column`: every BGL alert line is flagged, and the lines parse as the agent sees them."""
    path = data_dir / "bgl" / "BGL_4k.log"
    raw = list(iter_records(path))
    records, labels = strip_label_column(raw)
    alerts = sum(1 for r in raw if not r.line.startswith("- "))
    assert labels.by_line and len(labels.lines) == alerts > 100
    assert all(not r.line.startswith(("- ", "KERN", "APP")) for r in records[:50])
    parsed, fmt = parse_records(records, ParserConfig(log_format="auto", multiline=False))
    assert fmt == "bgl"
    flags = labels.flags(parsed, [-1] * len(parsed), ())
    assert int(flags.sum()) == alerts
    assert all(flags[i] == (not raw[i].line.startswith("- ")) for i in range(len(raw)))


def test_an_entity_csv_labels_every_line_of_its_sessions(data_dir: Path) -> None:
    """HDFS's `BlockId,Label` file as it is: every line of an anomalous block is flagged, no other."""
    hdfs = data_dir / "hdfs"
    labels = labels_from(str(hdfs / "HDFS_v1_head20k_dev_block_labels.csv"))
    anomalous = {k for k, v in labels.entities.items() if v}
    assert anomalous and len(anomalous) < len(labels.entities)
    lines = (hdfs / "HDFS_v1_head20k_dev.log").read_text(errors="replace").splitlines()[:4000]
    parsed, _ = parse_records([Record(line, "hdfs") for line in lines],
                              ParserConfig(log_format="hdfs", entity=r"regex:(blk_-?\d+)"))
    flags = labels.flags(parsed, [-1] * len(parsed), ())
    block = re.compile(r"blk_-?\d+")
    expected = np.array([bool((m := block.search(line)) and m.group(0) in anomalous) for line in lines])
    assert flags.any() and (flags == expected).all()


def test_a_line_csv_and_a_feedback_dir(tmp_path: Path) -> None:
    """`line,label` numbers lines from 1; a state dir's problem templates flag their lines; bad files are refused."""
    csv = tmp_path / "labels.csv"
    csv.write_text("line,label\n1,-\n3,alert\n4,0\n")
    labels = labels_from(str(csv))
    assert labels.by_line and labels.lines == frozenset({2})
    state = tmp_path / "state"
    state.mkdir()
    write_labels(state, {7: Labelled(7, "disk <*> failed", "disk 3 failed", Label.PROBLEM, "template", 0.0)})
    fb = labels_from(str(state))
    assert fb.problem_templates
    assert list(fb.flags([None] * 4, [7, 1, 7, -1], [7])) == [True, False, True, False]  # type: ignore[list-item]
    assert only_in_anomalies([7, 1, 7, 1], np.array([True, False, True, True])) == frozenset({7})
    bad = tmp_path / "bad.csv"
    bad.write_text("host,label\na,1\n")
    with pytest.raises(UserError, match="entity"):
        labels_from(str(bad))
    with pytest.raises(UserError, match="no such file"):
        labels_from(str(tmp_path / "missing.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"feedback\.json"):
        labels_from(str(tmp_path / "empty"))
