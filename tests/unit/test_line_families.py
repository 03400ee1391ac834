"""A crash report's field dumps are one family (agent/line_families.py), checked on every line of
BGL_2k against its ground-truth events: the register and status fields of the kernel's crash
report are dumps, the kernel's and ciod's messages are not. So are the machine's corrected
errors, whatever unit reports them."""

from __future__ import annotations

import csv
from pathlib import Path

from agent.line_families import CORRECTED_ERRORS, FIELD_DUMP, family_of, is_corrected_error, is_field_dump, reason_head
from agent.types import Level, ParsedLine

# BGL_2k events whose lines are fields of the kernel's crash report, seen in the scanned half.
_DUMPS = {"E56", "E106", "E65", "E86", "E87", "E66", "E114", "E103"}
# Never-seen events of the scanned half that are messages, not fields.
_MESSAGES = {"E112", "E111", "E110", "E109", "E82", "E81", "E80", "E41", "E60", "E25", "E26", "E37", "E74"}


def test_field_dumps_are_told_from_messages_on_bgl(data_dir: Path) -> None:
    """The crash report's fields are dumps, the never-seen messages beside them are not, and every
    severe dump line is the kernel's at FATAL."""
    path = data_dir / "loghub_2k" / "BGL" / "BGL_2k.log_structured_corrected.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    dump_events = {r["EventId"] for r in rows if is_field_dump(r["Content"])}
    assert dump_events >= _DUMPS
    assert not _MESSAGES & dump_events
    # Every severe dump line is the kernel's, at FATAL: the crash report's.
    severe = {"FATAL", "FAILURE", "SEVERE", "ERROR"}
    assert {(r["Component"], r["Level"]) for r in rows
            if is_field_dump(r["Content"]) and r["Level"] in severe} == {("KERNEL", "FATAL")}


def test_the_family_is_the_facility_and_level_not_the_node() -> None:
    """Two nodes' crash reports are one family; a status line (INFO) and a message are none."""
    def line(message: str, node: str, level: Level = Level.FATAL) -> ParsedLine:
        return ParsedLine(raw=message, message=message, timestamp=0.0, level=level, entity="BGL_2k.log",
                          source="BGL_2k.log", component=node, fields=(("facility", "KERNEL"),))

    a = family_of(line("dbcr0=0x00000000 dbsr=0x00000000 ccr0=0x40002000", "R03-M1-NF-C:J07-U01"))
    b = family_of(line("Machine State Register: 0x0002f900", "R61-M0-N3-C:J11-U11"))
    assert a == b == (FIELD_DUMP, "KERNEL", Level.FATAL)
    assert family_of(line("Machine State Register: 0x0002f900", "R61", Level.INFO)) is None  # a status line
    assert family_of(line("rts: kernel terminated for reason 1004", "R63")) is None


def test_a_message_before_its_reason_is_its_head() -> None:
    """Templates of one message ending in different reasons share a head, however the miner wrote
    the value slots; a head of fewer than three content words is none."""
    assert reason_head("ciod: LOGIN chdir(<*>) failed: Input/output error") == reason_head(
        "ciod: LOGIN <*> failed: No such file or directory") == "ciod: LOGIN <*> failed"
    assert reason_head("ciod: Error loading <PATH>: program image too big, <NUM> > <NUM>") == "ciod: Error loading <*>"
    assert reason_head("kernel: usb <*>: new high-speed USB device") is None  # "kernel", "usb"
    assert reason_head("rts: kernel terminated for reason <NUM>") is None  # no reason after a colon


def test_corrected_errors_are_one_family_whatever_unit_reports_them(data_dir: Path) -> None:
    """On BGL_2k every "… error(s) … detected and corrected" line (ddr, L3 EDRAM, torus receiver
    input pipes, torus sender retransmissions) and "instruction cache parity error corrected" is
    a corrected-error report; the interrupt statistics that mention "a correctable ddr" (no
    error word), "data cache search parity error detected. attempting to correct" and the
    tree receiver's re-synch events are not. A failure that was not corrected is none either."""
    path = data_dir / "loghub_2k" / "BGL" / "BGL_2k.log_structured_corrected.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    corrected = {r["EventId"] for r in rows if is_corrected_error(r["Content"])}
    assert {"E1", "E119", "E5", "E6", "E8", "E9", "E11"} <= corrected
    assert all(is_corrected_error(r["Content"]) for r in rows if "detected and corrected" in r["Content"])
    assert not {"E7", "E51", "E13", "E14"} & corrected
    assert {(r["Component"], r["Level"]) for r in rows if is_corrected_error(r["Content"])} == {("KERNEL", "INFO")}
    for failure in ("2 uncorrectable ECC error(s) on rank 0", "1 ddr error(s) detected, could not be corrected",
                    "parity error not corrected", "uncorrected error on bus 3"):
        assert not is_corrected_error(failure), failure

    def line(message: str, node: str, level: Level = Level.INFO) -> ParsedLine:
        return ParsedLine(raw=message, message=message, timestamp=0.0, level=level, entity="BGL_2k.log",
                          source="BGL_2k.log", component=node, fields=(("facility", "KERNEL"),))

    ddr = family_of(line("1 ddr error(s) detected and corrected on rank 0, symbol 24 over 335 seconds",
                         "R06-M1-NF-C:J12-U01"))
    edram = family_of(line("3 L3 EDRAM error(s) (dcr 0x0157) detected and corrected", "R22-M1-N1-C:J17-U11"))
    assert ddr == edram == (CORRECTED_ERRORS, "KERNEL", Level.INFO)
    # A severe line is a failure whatever it says it corrected (and not a field dump here).
    assert family_of(line("3 L3 EDRAM error(s) (dcr 0x0157) detected and corrected", "R22", Level.FATAL)) is None
