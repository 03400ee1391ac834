"""`logdetect templates` on real logs: the table, one row per line in csv and json, header parsing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from agent.cli import main as cli_main


def _log(data_dir: Path, system: str) -> Path:
    return data_dir / "loghub_2k" / system / f"{system}_2k.log"


def test_csv_has_one_row_per_line_in_order(data_dir: Path, tmp_path: Path) -> None:
    """csv: line_no,template_id,template for every input line; the header is not in the template."""
    out = tmp_path / "groups.csv"
    log = _log(data_dir, "OpenSSH")
    assert cli_main(["templates", "--input", str(log), "--format", "csv", "--no-multiline", "-o", str(out)]) == 0
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lines = log.read_text(encoding="utf-8").splitlines()
    assert [int(r["line_no"]) for r in rows] == list(range(1, len(lines) + 1))
    assert all(int(r["template_id"]) > 0 for r in rows)
    assert not any("LabSZ" in r["template"] or "sshd[" in r["template"] for r in rows)  # syslog header parsed
    by_id: dict[str, set[str]] = {}
    for r in rows:
        by_id.setdefault(r["template_id"], set()).add(r["template"])
    assert all(len(texts) == 1 for texts in by_id.values())  # one text per id
    assert len(by_id) < 40  # 26 true templates


def test_json_rows_and_text_table(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """json: the same rows as objects; text: templates by count with an example line each."""
    log = _log(data_dir, "Zookeeper")
    assert cli_main(["templates", "--input", str(log), "--format", "json", "--no-multiline"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2000 and set(rows[0]) == {"line_no", "template_id", "template"}
    assert cli_main(["templates", "--input", str(log)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("2,000 lines (iso format)")
    assert "e.g. 2015-07-29" in text  # an example raw line under each template


def test_missing_input_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing input file exits with code 2 and says it does not exist."""
    assert cli_main(["templates", "--input", str(tmp_path / "nope.log")]) == 2
    assert "does not exist" in capsys.readouterr().err
