"""The component contract, river-style: every check runs over every source and sink type in the
installed registry (the `logdetect.components` entry points), so registering a type is what puts
it under test.

Every type: its options are documented and defaulted, the defaults (with the values its
`print-config` example sets) are valid, and its contract instance is self-contained (127.0.0.1:0
or a temp path). Sources: start and stop within a bound; records fed by a real client arrive;
a record that cannot be read is dropped and counted by reason; a full queue holds no more than
its bound and nothing is lost; every event a source emits validates against `logdetect schema`.
Sinks: every event kind arrives intact at a real peer and validates against the schema; what a
sink cannot deliver (no peer, a closed stream, a full disk) is counted as dropped by a reason, or
the sink raises so the daemon counts it (`sink_error`) and withholds the ack; no call blocks
beyond its bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from conftest import need

from agent import events, metrics
from agent.commands.print_config import example as print_config_example
from agent.components import (
    BatchQueue,
    ComponentType,
    SinkType,
    SourceType,
    installed_registry,
    option_default,
    option_doc,
)
from agent.config import build_dataclass, parse_config
from agent.types import Batch, Record
from contract.harness import (
    BAD,
    BAD_REASON,
    FEEDERS,
    FULL_DISK,
    READERS,
    STEP_SECS,
    Feeder,
    good,
    prepared,
    run,
    sample_lines,
)

REGISTRY = installed_registry()
SOURCES = sorted(REGISTRY.sources)
SINKS = sorted(REGISTRY.sinks)
ALL = [("sources", name) for name in SOURCES] + [("sinks", name) for name in SINKS]
VALIDATOR = jsonschema.Draft202012Validator(events.json_schema())


def spec_of(kind: str, name: str) -> ComponentType:
    """The registered source or sink type of this name."""
    return REGISTRY.sources[name] if kind == "sources" else REGISTRY.sinks[name]


def counter(name: str, component: str, **labels: str) -> float:
    """A metric sample of one component (0 when never set)."""
    return metrics.REGISTRY.get_sample_value(name, {"component": component, **labels}) or 0.0


def dropped(component: str) -> dict[str, float]:
    """Every drop counted for `component`, by reason."""
    out: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "logdetect_records_dropped_total" and sample.labels.get("component") == component:
                out[sample.labels["reason"]] = sample.value
    return out


def unique(name: str) -> str:
    """A component id unique to this test, so metric labels do not mix."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


# --- every type ----------------------------------------------------------------------------------


def test_every_registered_type_is_driven() -> None:
    """A source needs a feeder and a sink a reader in the harness, or the checks below cannot run it."""
    assert SOURCES and SINKS
    assert [s for s in SOURCES if s not in FEEDERS] == [], "register a Feeder in tests/contract/harness.py"
    assert [s for s in SINKS if s not in READERS] == [], "register a Reader in tests/contract/harness.py"


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_options_are_documented_and_defaulted(kind: str, name: str) -> None:
    """Every option is a frozen dataclass field with a default and help text; the example is valid."""
    spec = spec_of(kind, name)
    assert dataclasses.is_dataclass(spec.options) and spec.options.__dataclass_params__.frozen  # type: ignore[attr-defined]
    for f in dataclasses.fields(spec.options):
        assert option_doc(f), f"{kind}.{name}.{f.name} has no help text (declare it with agent.components.option)"
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name
    assert spec.summary and spec.example_id
    assert set(spec.example) <= {f.name for f in dataclasses.fields(spec.options)}


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_defaults_are_valid(kind: str, name: str, short_tmp: Path) -> None:
    """The defaults, with only the values the print-config example sets (a path, an address),
    pass the config's own checks; so do the options of the contract instance, which binds only
    to 127.0.0.1 port 0 or to paths under a temp dir."""
    spec = spec_of(kind, name)
    table = {f.name: option_default(f) for f in dataclasses.fields(spec.options)} | dict(spec.example)
    problems: list[str] = []
    assert build_dataclass(spec.options, table, f"{kind}.{name}", problems) is not None
    assert problems == []
    contract = spec.contract_options(short_tmp)
    assert isinstance(contract, spec.options)
    assert contract.problems() == []
    for attr in ("listen", "connect", "address", "path"):
        value = str(getattr(contract, attr, "") or "")
        assert not value or "127.0.0.1:0" in value or str(short_tmp) in value, f"{attr} = {value!r}"


def test_the_print_config_example_holds_every_registered_type(tmp_path: Path) -> None:
    """print-config is generated from the registry: each type appears, with every option."""
    text = print_config_example(str(tmp_path / "model"), str(tmp_path / "state"), REGISTRY)
    config, problems = parse_config(text, tmp_path / "agent.toml", REGISTRY)
    assert problems == [] and config is not None
    for kind, name in ALL:
        spec = spec_of(kind, name)
        assert f"[{kind}.{spec.example_id}]" in text
        for f in dataclasses.fields(spec.options):
            assert f"{f.name} = " in text


# --- sources -------------------------------------------------------------------------------------


async def started(name: str, tmp: Path, capacity: int = 10_000) -> tuple[Any, BatchQueue]:
    """A started source of this type with its contract options, and its queue."""
    spec: SourceType = REGISTRY.sources[name]
    source = spec.build(unique(name), prepared("sources", name, spec.contract_options(tmp)), tmp / "state")
    queue = BatchQueue(capacity)
    await asyncio.wait_for(source.start(queue), STEP_SECS)
    return source, queue


async def stopped(source: Any) -> None:
    """Stop a source and let it finish, bounded in time."""
    await asyncio.wait_for(source.stop(), STEP_SECS)
    await asyncio.wait_for(source.finish(0.5), STEP_SECS)


async def collect(queue: BatchQueue, records: int) -> list[Batch]:
    """Batches until `records` records arrived (finished as the daemon would), bounded in time."""
    out: list[Batch] = []
    deadline = time.monotonic() + STEP_SECS
    while sum(len(b.records) for b in out) < records:
        assert time.monotonic() < deadline, f"{sum(len(b.records) for b in out)} of {records} records arrived"
        for batch in await queue.get_many(10_000, 0.05):
            batch.finish(True)
            out.append(batch)
    return out


async def feeding(name: str, source: Any, tmp: Path) -> Feeder:
    """A feeder that sends lines to this source the way its real clients do."""
    return await asyncio.to_thread(FEEDERS[name], source, tmp)


@pytest.mark.usefixtures("stdin_pipe")
@pytest.mark.parametrize("name", SOURCES)
def test_source_starts_and_stops(name: str, short_tmp: Path) -> None:
    """Every source starts on 127.0.0.1:0 (or a temp path) and stops cleanly."""
    async def scenario() -> None:
        source, _queue = await started(name, short_tmp)
        await stopped(source)

    run(scenario())


@pytest.mark.usefixtures("stdin_pipe")
@pytest.mark.parametrize("name", SOURCES)
def test_source_delivers_counts_drops_by_reason_and_emits_valid_events(name: str, short_tmp: Path) -> None:
    """A source delivers good lines, counts a bad one by reason, and its events validate."""
    async def scenario() -> tuple[str, list[Record], list[Any]]:
        source, queue = await started(name, short_tmp)
        feeder = await feeding(name, source, short_tmp)
        await asyncio.to_thread(feeder.send, good(10, "first"))
        await asyncio.to_thread(feeder.send, [BAD, *good(10, "second")])
        batches = await collect(queue, 20)
        await asyncio.to_thread(feeder.close)
        await stopped(source)
        return source.id, [r for b in batches for r in b.records], [e for b in batches for e in b.events]

    sid, records, emitted = run(scenario())
    assert [r.line for r in records] == [f"first {i}" for i in range(10)] + [f"second {i}" for i in range(10)]
    assert records[0].field("level") == "info" and records[0].source == sid
    assert dropped(sid) == {BAD_REASON: 1.0}
    assert counter("logdetect_records_in_total", sid) == 20
    for event in emitted:
        VALIDATOR.validate(events.render(event, time.time(), "none"))
    if name == "zmq":  # its feeder skips a sequence number: the gap is reported, as a valid event
        assert len(emitted) == 1


@pytest.mark.usefixtures("stdin_pipe")
@pytest.mark.parametrize("name", SOURCES)
def test_full_queue_stops_intake_without_loss(name: str, short_tmp: Path) -> None:
    """Nobody takes from a queue of 5 records while 10 units of 20 records are sent: the queue
    holds at most its bound (or one batch larger than it), and once drained every record arrives."""
    capacity, units, per_unit = 5, 10, 20

    async def scenario() -> tuple[int, int, int]:
        source, queue = await started(name, short_tmp, capacity)
        feeder = await feeding(name, source, short_tmp)
        for u in range(units):
            await asyncio.to_thread(feeder.send, good(per_unit, f"u{u}"))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        held_records, held_batches = queue.records, len(queue)
        batches = await collect(queue, units * per_unit)
        await asyncio.to_thread(feeder.close)
        await stopped(source)
        return held_records, held_batches, sum(len(b.records) for b in batches)

    held_records, held_batches, arrived = run(scenario())
    assert held_records <= capacity or held_batches == 1, (held_records, held_batches)
    assert held_records < units * per_unit
    assert arrived == units * per_unit


# --- sinks ---------------------------------------------------------------------------------------


def bounded(fn: Callable[[], Any]) -> BaseException | None:
    """Call a (blocking) sink method in a thread: it must return within STEP_SECS; what it
    raised, if anything, is returned."""
    failure: list[BaseException] = []

    def call() -> None:
        try:
            fn()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(STEP_SECS)
    assert not thread.is_alive(), f"{fn} did not return within {STEP_SECS}s"
    return failure[0] if failure else None


def steps(sink: Any, lines: list[bytes]) -> list[BaseException]:
    """The daemon's calls on a sink (open; write and flush a batch; close), each bounded."""
    done = [bounded(sink.open), bounded(lambda: sink.write(lines)), bounded(sink.flush), bounded(sink.close)]
    return [e for e in done if e is not None]


@pytest.mark.parametrize("name", SINKS)
def test_sink_delivers_every_event_kind_valid(name: str, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sink delivers every event kind intact, and each validates against the schema."""
    spec: SinkType = REGISTRY.sinks[name]
    options = prepared("sinks", name, spec.contract_options(short_tmp))
    reader = READERS[name](options, monkeypatch)
    reader.peer()
    sink = spec.build(unique(name), options)
    lines = sample_lines()
    try:
        assert steps(sink, lines) == []
        got = reader.lines(len(lines))
    finally:
        reader.close()
    assert [orjson.loads(x) for x in got] == [orjson.loads(x) for x in lines]
    for line in got:
        VALIDATOR.validate(orjson.loads(line))
    assert counter("logdetect_records_out_total", sink.id) == len(lines)
    assert dropped(sink.id) == {}


@pytest.mark.parametrize("name", SINKS)
def test_sink_counts_what_it_cannot_deliver(name: str, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No peer (network sinks), a closed stream, a full disk: no call blocks beyond its bound, and
    either every event is counted, written or dropped by a reason, or the sink raised (the daemon
    then counts the batch as `sink_error` and does not ack it, so the client resends)."""
    need(Path(FULL_DISK).exists(), f"{FULL_DISK} is missing")
    spec: SinkType = REGISTRY.sinks[name]
    reader = READERS[name](prepared("sinks", name, spec.contract_options(short_tmp)), monkeypatch)
    sink = spec.build(unique(name), reader.broken())
    lines = sample_lines()
    errors = steps(sink, lines)
    drops = dropped(sink.id)
    if errors:
        assert all(isinstance(e, Exception) for e in errors), errors
        return
    assert drops and all(reason for reason in drops)
    assert sum(drops.values()) + counter("logdetect_records_out_total", sink.id) == len(lines)
