"""The component contract the agent owns: what every source and sink is, how they are
registered, and the bounded queue between sources and the pipeline.

Sources are asyncio objects: `start(queue)` binds/opens and spawns their tasks, `stop()` stops
intake. They hand `Batch`es to a `BatchQueue` bounded in records; `put` waits while it is full,
which is the backpressure (forward stops reading and withholds acks, zmq stops receiving,
stdin/file stop reading). A batch's `done` future resolves once its records went through the
pipeline and the resulting events reached every sink — only then does forward ack.

Sinks are synchronous and run in the pipeline's worker thread, right after `process`, so
"written to the sinks" is a fact when `done` resolves. They receive event lines that
`agent/events.py` rendered once for all of them.

Components live outside the agent (`plugins/` ships the built-in ones). A package makes its
components known with a `Registry` published under the entry-point group
`logdetect.components`; `installed_registry()` merges every such registry. The agent imports
no component module itself: the config is checked against the registry it is handed, and each
`ComponentConfig` carries its type, whose factory the daemon calls.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from agent import metrics
from agent.delivery import Progress, SinkPosition
from agent.errors import ConfigError
from agent.types import Batch

ENTRY_POINT_GROUP = "logdetect.components"


class BatchQueue:
    """FIFO of batches bounded by the number of records it holds.

    A batch larger than the whole capacity is still admitted when the queue is empty, so a big
    Forward chunk cannot wedge a connection forever.
    """

    def __init__(self, capacity_records: int = 10_000, stage: str = "input") -> None:
        self.capacity = max(1, capacity_records)
        self.stage = stage
        self._items: collections.deque[Batch] = collections.deque()
        self._records = 0
        self._changed = asyncio.Condition()

    @property
    def records(self) -> int:
        """Records currently held (the bound is on records, not batches)."""
        return self._records

    def __len__(self) -> int:
        return len(self._items)

    def _fits(self, batch: Batch) -> bool:
        return not self._items or self._records + batch.size <= self.capacity

    async def put(self, batch: Batch) -> None:
        """Enqueue, waiting while the queue is full."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._fits(batch))
            self._append(batch)

    def put_nowait(self, batch: Batch) -> bool:
        """Enqueue if there is room now; False otherwise (the caller counts the drop)."""
        if not self._fits(batch):
            return False
        self._append(batch)
        asyncio.get_running_loop().create_task(self._notify())
        return True

    def _append(self, batch: Batch) -> None:
        self._items.append(batch)
        self._records += batch.size
        metrics.queue_depth.labels(stage=self.stage).set(self._records)
        self._changed.notify_all()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def get_many(self, max_records: int, timeout: float) -> list[Batch]:
        """Up to `max_records` worth of batches (at least one when any arrives within `timeout`)."""
        async with self._changed:
            if not self._items:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(self._items)), timeout)
                except TimeoutError:
                    return []
            out: list[Batch] = []
            taken = 0
            while self._items and (not out or taken + self._items[0].size <= max_records):
                batch = self._items.popleft()
                taken += batch.size
                out.append(batch)
            self._records -= taken
            metrics.queue_depth.labels(stage=self.stage).set(self._records)
            self._changed.notify_all()
            return out

    def drain_nowait(self) -> list[Batch]:
        """Take every queued batch at once (shutdown), leaving the queue empty."""
        out = list(self._items)
        self._items.clear()
        self._records = 0
        metrics.queue_depth.labels(stage=self.stage).set(0)
        return out


def put_from_thread(
    loop: asyncio.AbstractEventLoop, queue: BatchQueue, batch: Batch, stopping: threading.Event
) -> bool:
    """Hand a batch from a reader thread to the event loop's queue, blocking while the queue is
    full (that wait is the backpressure: the thread stops reading). False when the source is
    stopping, or the loop is gone, and the batch was not queued: True means it is in the queue,
    even when the stop came while the put was finishing (so it is never counted twice)."""
    queued = threading.Event()
    settled = threading.Event()

    async def put() -> None:
        try:
            await queue.put(batch)
            queued.set()
        finally:
            settled.set()

    future = asyncio.run_coroutine_threadsafe(put(), loop)
    while not stopping.is_set():
        try:
            future.result(timeout=0.5)
            return True
        except TimeoutError:
            continue
        except Exception:
            return queued.is_set()
    future.cancel()
    # The put may have completed while the stop came; a put that never started never settles.
    settled.wait(timeout=1.0)
    return queued.is_set()


def count_drop(component: str, reason: str, n: int = 1) -> None:
    """Every record, frame or connection we give up on is counted here, by reason."""
    if n > 0:
        metrics.records_dropped.labels(component=component, reason=reason).inc(n)


class Source(abc.ABC):
    """An input. `finished` is set when it has no more input (stdin at EOF)."""

    type_name: ClassVar[str]

    def __init__(self, source_id: str) -> None:
        self.id = source_id
        self.finished = asyncio.Event()
        # False for sources that end on their own (stdin): the daemon exits when all such end.
        self.endless = True

    @abc.abstractmethod
    async def start(self, queue: BatchQueue) -> None:
        """Open/bind and start reading; return once the source accepts input."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop accepting input and release sockets/files. In-flight batches stay queued."""

    async def finish(self, timeout: float) -> None:  # noqa: B027 - optional hook
        """After the daemon drained the queue: deliver what is owed (acks), release the rest."""

    def restore_delivered(self, delivered: dict[bytes, Progress]) -> None:  # noqa: B027 - optional hook
        """Before `start`: the keyed batches delivered before a restart (`agent.delivery`)."""

    def describe(self) -> str:
        """How log messages name this source: its type and id."""
        return f"{self.type_name} source {self.id!r}"


class Sink(abc.ABC):
    """An output of event JSON lines. Called from the pipeline worker thread only."""

    type_name: ClassVar[str]

    def __init__(self, sink_id: str) -> None:
        self.id = sink_id

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire files/sockets; called once before the first write."""

    @abc.abstractmethod
    def write(self, events: Sequence[bytes]) -> None:
        """Write event lines (without newline). Must not raise for a single bad event."""

    def write_with_ids(self, events: Sequence[bytes], ids: Sequence[str | None]) -> None:
        """Write event lines with their identities (`events.event_id`, None for an event without
        one), aligned. A sink that can have a repeated identity dropped overrides it (the `nats`
        sink's `Nats-Msg-Id`); the others write the lines (the id is also the `event.id` field)."""
        self.write(events)

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make what was written durable/visible (called after every batch)."""

    def position(self) -> SinkPosition | None:
        """Where the durable output ends now (file sinks: inode, size); None: not resumable."""
        return None

    def recover(self, position: SinkPosition) -> None:  # noqa: B027 - optional hook
        """Before `open`, after a crash: drop what a write cut short left after `position`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release."""


def now() -> float:
    """Wall-clock time in epoch seconds; the one clock sources stamp records with."""
    return time.time()


# --- options and the registry -------------------------------------------------------------


def option(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A documented config key: an options dataclass field with its default and one line of help
    (`print-config` and `validate` quote it). Lists take `factory`."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def option_doc(f: dataclasses.Field[Any]) -> str:
    """The help text of an options field ("" when it has none)."""
    return str(f.metadata.get("doc", ""))


def option_default(f: dataclasses.Field[Any]) -> Any:
    """The default of an options field (every option has one)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


@dataclass(frozen=True, kw_only=True)
class ComponentType:
    """One registered type of source or sink.

    `options` is a frozen dataclass whose fields (each declared with `option`) are exactly the
    config keys; its `problems()` lists semantic errors. `example` holds the values
    `print-config` shows besides the defaults (a path, say), and `enabled` whether its example
    is active rather than commented out; `singleton` types (stdin) may be configured once.
    `contract_options(tmp_dir)` gives the options of a self-contained instance (listening on
    127.0.0.1:0, files under `tmp_dir`): the contract suite (`tests/contract/`) runs every
    registered type with them.
    """

    options: type[Any]
    summary: str
    example_id: str
    contract_options: Callable[[Path], Any]
    example: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    enabled: bool = False
    singleton: bool = False


@dataclass(frozen=True, kw_only=True)
class SourceType(ComponentType):
    """A registered source type: its options, help, and how to build one."""

    build: Callable[[str, Any, Path | None], Source]  # (id, options, state_dir) -> the source


@dataclass(frozen=True, kw_only=True)
class SinkType(ComponentType):
    """A registered sink type: its options, help, and how to build one."""

    build: Callable[[str, Any], Sink]  # (id, options) -> the sink


@dataclass(frozen=True)
class Registry:
    """Config `type` → source/sink type. The agent is handed one (see `installed_registry`)."""

    sources: Mapping[str, SourceType]
    sinks: Mapping[str, SinkType]

    def merged(self, other: Registry) -> Registry:
        """Both registries in one; a type registered in both is a ConfigError."""
        for kind, mine, theirs in (("source", self.sources, other.sources), ("sink", self.sinks, other.sinks)):
            clash = sorted(set(mine) & set(theirs))
            if clash:
                raise ConfigError(f"{kind} type(s) {', '.join(clash)} registered twice")
        return Registry({**self.sources, **other.sources}, {**self.sinks, **other.sinks})


def installed_registry() -> Registry:
    """Every source and sink type published under the `logdetect.components` entry points."""
    registry = Registry({}, {})
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        found = ep.load()
        if not isinstance(found, Registry):
            raise ConfigError(f"entry point {ep.name} = {ep.value} is not an agent.components.Registry")
        registry = registry.merged(found)
    if not registry.sources or not registry.sinks:
        raise ConfigError(
            f"no source/sink components are installed (entry points {ENTRY_POINT_GROUP!r}): "
            "install logdetect (pip install logdetect, or pip install -e . in a checkout)"
        )
    return registry
