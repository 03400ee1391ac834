"""`logdetect validate` on a `logdetect fleet` config: accepted without a model, and checked as the
fleet view reads it (its `[fleet]` settings, sources that hand over the agents' JSON events); and
on an agent config, the `nats` sink's duplicate window against the `nats` source's ack wait."""

from __future__ import annotations

from pathlib import Path

from agent.commands.validate import check, is_fleet_config

FLEET = """
state_dir = "{state}"

[fleet]
window_secs = {window}

[sources.agents]
type = "nats"
servers = ["nats://127.0.0.1:4222"]
stream = "EVENTS"
subject = "logdetect.events"
durable = "fleet"
message_field = {fields}

[sinks.incidents]
type = "file"
path = "{out}"
"""


def fleet_config(tmp_path: Path, window: str = "600", fields: str = '["body"]') -> Path:
    """A fleet config in `tmp_path` with these `[fleet] window_secs` and `message_field`."""
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET.format(state=tmp_path / "state", window=window, fields=fields, out=tmp_path / "o.jsonl"))
    return path


def test_a_fleet_config_without_a_model_is_valid(tmp_path: Path) -> None:
    """No `model`, a `[fleet]` table: recognised as a fleet config, and nothing is wrong with it."""
    path = fleet_config(tmp_path)
    assert is_fleet_config(path.read_text())
    assert check(path) == []
    assert check(path, fleet=True) == []
    assert any(p.startswith("model: required") for p in check(path, fleet=False))  # as an agent config


def test_a_fleet_config_is_checked_as_the_fleet_view_reads_it(tmp_path: Path) -> None:
    """Bad `[fleet]` settings and a source whose message field is not the events' `body` (every
    event would be dropped) are each named."""
    problems = check(fleet_config(tmp_path, window="-1", fields='["log"]'))
    assert any("window_secs" in p for p in problems), problems
    assert any(p.startswith("sources.agents.message_field") and '"body"' in p for p in problems), problems
    plain = tmp_path / "plain.toml"
    plain.write_text(f'[fleet]\n[sources.f]\ntype = "file"\npath = "{tmp_path / "x.jsonl"}"\nformat = "plain"\n'
                     f'message_field = ["body"]\n[sinks.o]\ntype = "stdout"\n')
    assert any(p.startswith("sources.f.format") for p in check(plain)), check(plain)


def test_a_duplicate_window_shorter_than_the_redelivery_is_a_problem(tmp_path: Path) -> None:
    """An agent with a `nats` source and a `nats` sink: the events stream's duplicate window must
    outlast the source's ack wait, or a redelivered line's events are stored twice."""
    text = """
model = "no-bundle-here"
[sources.s]
type = "nats"
ack_wait_secs = 60
[sinks.k]
type = "nats"
duplicate_window_secs = {window}
"""
    path = tmp_path / "agent.toml"
    for window, expected in ((30, 1), (120, 0)):
        path.write_text(text.format(window=window))
        found = [p for p in check(path) if p.startswith("sinks.k.duplicate_window_secs")]
        assert len(found) == expected, found
        assert all("(30) must exceed sources.s.ack_wait_secs (60)" in p for p in found)
