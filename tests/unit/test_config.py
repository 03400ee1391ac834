"""The agent's TOML config: every problem listed, unknown keys named with the valid ones, and the
`print-config` example accepted as written."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from agent.commands.print_config import example
from agent.config import load_config, parse_config
from agent.errors import ConfigError
from agent.types import Sensitivity
from plugins.registry import SINKS, SOURCES


def parse(text: str, tmp_path: Path) -> tuple[object, list[str]]:
    """Parse config text as if read from agent.toml in `tmp_path`."""
    return parse_config(text, tmp_path / "agent.toml")


MINIMAL = """
model = "model"
[sources.in]
type = "stdin"
[sinks.out]
type = "stdout"
"""


def test_minimal_config_and_relative_paths(tmp_path: Path) -> None:
    """Relative `model`, `state_dir` and `path` options are relative to the config's directory."""
    text = 'state_dir = "st"\n' + MINIMAL + '[sinks.f]\ntype = "file"\npath = "ev/events.jsonl"\n'
    config, problems = parse(text, tmp_path)
    assert problems == []
    assert config is not None
    assert config.model == tmp_path / "model"  # type: ignore[attr-defined]
    assert config.state_dir == tmp_path / "st"  # type: ignore[attr-defined]
    sinks = {s.id: s for s in config.sinks}  # type: ignore[attr-defined]
    assert sinks["f"].options.path == str(tmp_path / "ev/events.jsonl")
    assert config.pipeline.sensitivity is Sensitivity.MEDIUM  # type: ignore[attr-defined]


def test_unknown_keys_are_named_with_the_valid_ones(tmp_path: Path) -> None:
    """Each unknown key is reported with the keys valid at that place."""
    text = """
model = "m"
modle = "typo"
[pipeline]
sensitivty = "high"
[sources.fw]
type = "forward"
lisen = "tcp:127.0.0.1:24224"
[sinks.out]
type = "stdout"
"""
    config, problems = parse(text, tmp_path)
    assert config is None
    joined = "\n".join(problems)
    assert "unknown top-level key 'modle'" in joined
    assert re.search(r"pipeline: unknown key 'sensitivty' \(valid keys: sensitivity, emit_all", joined)
    assert re.search(r"sources\.fw: unknown key 'lisen' \(valid keys: listen, message_field", joined)
    assert len(problems) == 3


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    """Wrong types, bad enum values, a bad address, an unknown type and no sinks: all reported."""
    text = """
[pipeline]
sensitivity = "extreme"
max_entities = "many"
emit_all = 1
[agent]
queue_records = 0
[sources.fw]
type = "forward"
listen = "udp:1.2.3.4:5"
max_frame_bytes = 1.5
[sources.z]
type = "zmq"
listen = "not-an-endpoint"
socket_type = "router"
[sources.what]
type = "kafka"
"""
    config, problems = parse(text, tmp_path)
    assert config is None
    expected = [
        "model: required",
        "pipeline.max_entities: expected an integer",
        "pipeline.emit_all: expected true/false",
        "agent: queue_records and batch_records must be >= 1",
        "sources.fw.max_frame_bytes: expected an integer",
        "sources.z: socket_type = 'router'",
        "sources.z: endpoint 'not-an-endpoint' is not a ZeroMQ endpoint",
        "sources.what.type: 'kafka' is not one of forward, zmq, stdin, file, socket",
        "no [sinks.<id>] table",
    ]
    joined = "\n".join(problems)
    for fragment in expected:
        assert fragment in joined, fragment
    # The forward source had a type error, so its address was not checked separately; fix the type
    # and the address problem shows.
    _, problems2 = parse(text.replace("max_frame_bytes = 1.5", ""), tmp_path)
    assert any("unknown scheme 'udp'" in p for p in problems2)


def test_conflicting_addresses_and_two_stdins(tmp_path: Path) -> None:
    """Two sources on one address, or two stdin sources, are config problems."""
    text = """
model = "m"
[sources.a]
type = "forward"
listen = "unix:/tmp/x.sock"
[sources.b]
type = "socket"
listen = "unix:/tmp/x.sock"
[sources.c]
type = "stdin"
[sources.d]
type = "stdin"
[sinks.out]
type = "stdout"
"""
    _, problems = parse(text, tmp_path)
    assert "b: listen 'unix:/tmp/x.sock' is also used by a" in problems
    assert "only one stdin source can exist" in problems


def test_load_config_raises_config_error_listing_problems(tmp_path: Path) -> None:
    """load_config raises one ConfigError listing every problem, or saying the file is missing."""
    path = tmp_path / "agent.toml"
    path.write_text('model = 5\n[sources.x]\ntype = "stdin"\n[sinks.y]\ntype = "nope"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "2 problem(s)" in message and "model: required" in message and "'nope'" in message
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_single_string_for_a_list_option(tmp_path: Path) -> None:
    """A single string is accepted where a list of strings is expected."""
    text = MINIMAL.replace('type = "stdin"', 'type = "stdin"\nmessage_field = "msg"')
    config, problems = parse(text, tmp_path)
    assert problems == [] and config is not None
    assert config.sources[0].options.message_field == ["msg"]  # type: ignore[attr-defined]


def test_print_config_example_is_accepted_and_documents_every_option(tmp_path: Path) -> None:
    """The example parses without problems, and uncommenting every section still parses:
    every option of every source and sink type appears in it, spelled as the config expects."""
    text = example(str(tmp_path / "model"), str(tmp_path / "state"))
    config, problems = parse(text, tmp_path)
    assert problems == []
    assert config is not None
    # Uncomment every commented `[sources.x]` / `[sinks.x]` block and its keys.
    uncommented = re.sub(r"^# (\[(?:sources|sinks)\.\w+\])", r"\1", text, flags=re.M)
    uncommented = re.sub(r"^# ([a-z_]+ = )", r"\1", uncommented, flags=re.M)
    documented = uncommented
    # The zmq sink example shows connect and listen; only one may be set.
    uncommented = re.sub(r'^listen = "" .*\n', "", uncommented, flags=re.M)
    full, problems = parse(uncommented, tmp_path)
    assert problems == [], problems
    assert full is not None
    types_seen = {c.type for c in full.sources} | {f"sink:{c.type}" for c in full.sinks}  # type: ignore[attr-defined]
    assert types_seen == set(SOURCES) | {f"sink:{t}" for t in SINKS}
    for kind, registry in (("sources", SOURCES), ("sinks", SINKS)):
        for type_name, spec in registry.items():
            block = _block_of_type(documented, kind, type_name)
            for f in dataclasses.fields(spec.options):
                assert re.search(rf"^{f.name} = ", block, flags=re.M), (
                    f"{kind} {type_name}: {f.name} undocumented"
                )


def _block_of_type(text: str, kind: str, type_name: str) -> str:
    blocks = re.split(r"^(?=\[)", text, flags=re.M)
    for block in blocks:
        if block.startswith(f"[{kind}.") and re.search(rf'^type = "{type_name}"', block, flags=re.M):
            return block
    raise AssertionError(f"no {kind} block of type {type_name}")


def test_incident_grouping_options_reach_the_pipeline(tmp_path: Path) -> None:
    """`[pipeline]` episode_gap_secs, incident_gap_secs and new_behaviour_days become the incident
    grouper's settings; zero or less is named as a problem."""
    text = MINIMAL + "[pipeline]\nepisode_gap_secs = 1800\nincident_gap_secs = 120\nnew_behaviour_days = 30\n"
    config, problems = parse(text, tmp_path)
    assert problems == [] and config is not None
    pipeline = config.pipeline_config()  # type: ignore[attr-defined]
    assert (pipeline.episode_gap_secs, pipeline.incident_gap_secs, pipeline.new_behaviour_secs) == (
        1800.0, 120.0, 30 * 86400.0)
    _, problems = parse(MINIMAL + "[pipeline]\nepisode_gap_secs = 0\n", tmp_path)
    assert any("episode_gap_secs" in p for p in problems)
