"""What every source and sink is, and the bounded queue between sources and the pipeline.

Sources are asyncio objects: `start(queue)` binds/opens and spawns their tasks, `stop()` stops
intake. They hand `Batch`es to a `BatchQueue` bounded in records; `put` waits while it is full,
which is the backpressure (forward stops reading and withholds acks, zmq stops receiving,
stdin/file stop reading). A batch's `done` future resolves once its records went through the
pipeline and the resulting events reached every sink — only then does forward ack.

Sinks are synchronous and run in the pipeline's worker thread, right after `process`, so
"written to the sinks" is a fact when `done` resolves.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from agent import metrics
from agent.delivery import Progress, SinkPosition
from agent.types import DataGap, Record


@dataclass(eq=False)
class Batch:
    """Records from one source read (one Forward request, one ZeroMQ message, some lines)."""

    source: str
    records: list[Record]
    # What the source itself found (ZeroMQ data gaps), rendered and written with the batch's events.
    events: list[DataGap] = field(default_factory=list)
    # Resolved with True when processed and written, False when dropped at shutdown.
    done: asyncio.Future[bool] | None = None
    on_done: Callable[[bool], None] | None = None
    # A source that can recognise the same data when it comes again (a Forward chunk id) sets
    # `key`; `skip` records of it were already emitted before a restart and are not in `records`.
    key: bytes | None = None
    skip: int = 0

    def finish(self, processed: bool) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(processed)
        if self.on_done is not None:
            callback, self.on_done = self.on_done, None
            callback(processed)

    @property
    def size(self) -> int:
        return len(self.records) + len(self.events)


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
    stopping, or the loop is gone."""
    future = asyncio.run_coroutine_threadsafe(queue.put(batch), loop)
    while not stopping.is_set():
        try:
            future.result(timeout=0.5)
            return True
        except TimeoutError:
            continue
        except Exception:
            return False
    future.cancel()
    return False


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
    return time.time()
