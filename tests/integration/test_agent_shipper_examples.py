"""The shipper examples in plugins/examples/: every file parses, and the two sides of each pair
agree on addresses, paths, formats and field names; sample shipper output goes through the
agent's own decoders configured from the example."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import orjson
import yaml
from conftest import REPO

from agent.config import AgentConfig, ComponentConfig, parse_config

EXAMPLES = REPO / "plugins" / "examples"


def agent_config(name: str) -> AgentConfig:
    """An example agent config, parsed; it must have no problems."""
    path = EXAMPLES / name
    config, problems = parse_config(path.read_text(), path)
    assert problems == [], problems
    assert config is not None
    return config


def only(items: tuple[ComponentConfig, ...], type_name: str) -> list[ComponentConfig]:
    """The components of one type."""
    return [c for c in items if c.type == type_name]


def load_yaml(name: str) -> dict[str, Any]:
    """A shipper example YAML file, parsed."""
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return data


def test_every_agent_example_is_valid_and_named_in_the_readme() -> None:
    """Every example agent config validates and the examples README names every file."""
    readme = (EXAMPLES / "README.md").read_text()
    tomls = sorted(p.name for p in EXAMPLES.glob("*.toml"))
    assert tomls == [
        "agent-exec.toml", "agent-forward.toml", "agent-nats.toml", "agent-stdin.toml", "agent-vector.toml"
    ]
    for name in tomls:
        agent_config(name)
        assert f"`{name}`" in readme
    for shipper in sorted(p.name for p in EXAMPLES.glob("*.yaml")):
        load_yaml(shipper)
        assert f"`{shipper}`" in readme


def test_fluent_bit_forward_output_matches_the_forward_sources() -> None:
    """Fluent Bit's forward outputs (TCP and Unix) point at the agent's forward sources."""
    fb = load_yaml("fluent-bit-forward.yaml")
    config = agent_config("agent-forward.toml")
    listens = {c.options.listen for c in only(config.sources, "forward")}
    outputs = [o for o in fb["pipeline"]["outputs"] if o["name"] == "forward"]
    tcp = [o for o in outputs if "port" in o]
    unix = [o for o in outputs if "unix_path" in o]
    assert tcp and unix
    for out in tcp:
        assert f"tcp:{out['host']}:{out['port']}" in listens
    for out in unix:
        assert f"unix:{out['unix_path']}" in listens
    for out in outputs:
        assert out["require_ack_response"] is True  # the agent acks after processing
    for source in only(config.sources, "forward"):
        assert "log" in source.options.message_field  # the tail input's record key


def test_fluent_bit_stdout_json_lines_into_the_stdin_source() -> None:
    """The stdout output's json_lines, with its date key, decode into records as configured."""
    fb = load_yaml("fluent-bit-stdout.yaml")
    (out,) = fb["pipeline"]["outputs"]
    assert out["name"] == "stdout" and out["format"] == "json_lines"
    config = agent_config("agent-stdin.toml")
    (source,) = only(config.sources, "stdin")
    assert source.options.format == "json"
    assert source.options.time_field == out["json_date_key"]
    # What Fluent Bit writes for a tail record with json_date_format iso8601:
    line = orjson.dumps({out["json_date_key"]: "2026-11-23T10:00:00.250Z", "log": "GET / 200"})
    record = source.options.line_decoder(source.id).decode(line, time.time())
    assert record.line == "GET / 200"
    assert record.time == 1_795_428_000.25


def test_fluent_bit_exec_input_runs_the_agent_that_writes_events_to_stdout() -> None:
    """Fluent Bit's exec input runs the stdout-sink agent and parses its output as JSON."""
    fb = load_yaml("fluent-bit-exec.yaml")
    (exec_in,) = [i for i in fb["pipeline"]["inputs"] if i["name"] == "exec"]
    argv = shlex.split(exec_in["command"])
    assert argv[:3] == ["logdetect", "agent", "--config"]
    assert Path(argv[3]).name == "agent-exec.toml"
    assert exec_in["oneshot"] is True and exec_in["threaded"] is True
    assert exec_in["parser"] in {p["name"] for p in fb["parsers"] if p["format"] == "json"}
    config = agent_config("agent-exec.toml")
    assert [s.type for s in config.sinks] == ["stdout"]  # events on stdout, logs on stderr
    (forward_out,) = [o for o in fb["pipeline"]["outputs"] if o["name"] == "forward"]
    (source,) = only(config.sources, "forward")
    assert source.options.listen == f"tcp:{forward_out['host']}:{forward_out['port']}"


def test_vector_socket_sink_and_exec_source_match_the_agent() -> None:
    """Vector's socket sink and exec source match the agent's socket source and stdout sink."""
    vector = load_yaml("vector.yaml")
    config = agent_config("agent-vector.toml")
    sink = vector["sinks"]["logdetect"]
    (source,) = only(config.sources, "socket")
    assert sink["type"] == "socket" and sink["mode"] == "tcp"
    assert source.options.listen == f"tcp:{sink['address']}"
    assert sink["encoding"]["codec"] == source.options.format == "json"
    assert sink["framing"]["method"] == "newline_delimited"
    # A Vector log event as the json codec writes it decodes with the example's options.
    event = orjson.dumps({"message": "db timeout", "timestamp": "2026-11-23T10:00:01Z", "host": "h1"})
    record = source.options.line_decoder(source.id).decode(event, time.time())
    assert record.line == "db timeout" and record.time == 1_795_428_001.0
    exec_src = vector["sources"]["anomalies"]
    assert exec_src["type"] == "exec" and exec_src["mode"] == "streaming"
    assert exec_src["command"][:3] == ["logdetect", "agent", "--config"]
    assert Path(exec_src["command"][3]).name == "agent-vector.toml"
    assert exec_src["include_stderr"] is False
    assert exec_src["decoding"]["codec"] == "json"
    assert [s.type for s in config.sinks] == ["stdout"]


def test_fluent_bit_and_vector_nats_outputs_feed_the_nats_source() -> None:
    """Fluent Bit's `nats` output and Vector's `nats` sink publish inside the source's subject,
    on its server, in payloads the source decodes with the example's options."""
    from plugins.nats_source import NatsSource

    config = agent_config("agent-nats.toml")
    (source,) = only(config.sources, "nats")
    servers = set(source.options.servers)
    prefix = source.options.subject.removesuffix(">")
    (fb_out,) = load_yaml("fluent-bit-nats.yaml")["pipeline"]["outputs"]
    (fb_in,) = load_yaml("fluent-bit-nats.yaml")["pipeline"]["inputs"]
    assert fb_out["name"] == "nats" and f"nats://{fb_out['host']}:{fb_out['port']}" in servers
    assert fb_in["tag"].startswith(prefix)
    vector = load_yaml("vector-nats.yaml")["sinks"]["logdetect"]
    assert vector["type"] == "nats" and vector["url"] in servers
    assert vector["subject"].startswith(prefix) and vector["encoding"]["codec"] == "json"
    assert vector["jetstream"] is True  # Vector waits for the stream's ack (plain NATS would not)
    decoder = NatsSource(source.id, source.options)
    # A Fluent Bit flush (tail records) and a Vector JSON event, as they arrive:
    flush = orjson.dumps([[1_795_428_000.5, {"log": "GET / 200"}], [1_795_428_001.0, {"log": "GET /a 404"}]])
    records = decoder._decode(flush, time.time())
    assert [r.line for r in records] == ["GET / 200", "GET /a 404"] and records[0].time == 1_795_428_000.5
    event = orjson.dumps({"message": "db timeout", "timestamp": "2026-11-23T10:00:01Z", "host": "h1"})
    (record,) = decoder._decode(event, time.time())
    assert record.line == "db timeout" and record.time == 1_795_428_001.0 and record.field("entity") == "h1"
    (sink,) = only(config.sinks, "nats")
    assert set(sink.options.servers) == servers and sink.options.jetstream
