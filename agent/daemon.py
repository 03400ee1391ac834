"""The agent's async runtime: sources → bounded queue → pipeline worker thread → sinks.

    sources (asyncio tasks / reader threads) ──Batch──► BatchQueue (bounded, in records)
        ──► main loop ──► ONE worker thread: pipeline.process(records) → typed outputs
        ──► events.encode_all (the one place events are rendered) → sink.write_with_ids + flush
        ──► batch.done = True ──► forward acks, file offsets commit

The pipeline is synchronous and not thread-safe, so every call to it (process, tick, close,
construction) runs in one `ThreadPoolExecutor(max_workers=1)`; sinks run there too, right after
`process`, so a batch is "done" only once its events are written.

Signals: SIGTERM/SIGINT stop intake, drain the queue, `pipeline.close`, flush sinks and return 0
within `shutdown_budget_secs`; SIGHUP re-reads the config and bundle, builds the new pipeline
(a bundle that fails verification is refused, logged, and the old pipeline keeps serving),
then closes the old one and swaps between two batches — queued input stays queued.
Service notifications (systemd READY/WATCHDOG/RELOADING/STOPPING) all go through `_Service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from agent import events
from agent.components import BatchQueue, Sink, Source, count_drop
from agent.config import AgentConfig, ComponentConfig, load_config
from agent.dead_letter import DEAD_LETTER_FILE, DeadLetters, Rejected, cause_of, rejected
from agent.delivery import JOURNAL_FILE, DeliveryJournal, Progress
from agent.errors import LogdetectError, UserError
from agent.types import Batch, Event, Output, Record

log = structlog.get_logger(__name__)

T = TypeVar("T")


class PipelineLike(Protocol):
    """What the daemon needs of `agent.pipeline.Pipeline` (tests stand in their own)."""

    provider: str  # the ONNX Runtime provider, quoted in the events

    def process(self, records: Sequence[Record], now: float) -> Sequence[Output]:
        """Score a batch of records."""

    def tick(self, now: float) -> Sequence[Output]:
        """Run the timers: idle sessions, quiet incidents, state snapshots."""

    def close(self, now: float) -> Sequence[Output]:
        """End every session and incident (shutdown or reload)."""

    def pending_records(self) -> int:
        """Records held by the multi-line stitcher, waiting for their next line."""

    def flush_pending(self, now: float) -> Sequence[Output]:
        """Score the records the stitcher holds (input has paused)."""

    def take_rejected(self) -> list[Rejected]:
        """Records dropped since the last call (counted, logged and dead-lettered by the daemon)."""

    def held_by_source(self) -> dict[str, int]:
        """Physical lines held back per source; a batch is acked only once none are."""

    # Optional: `checkpoint()`, called once a batch's events are written and before its acks go
    # out (the fleet view saves its open incidents there); an OSError withholds the acks.


def build_pipeline(config: AgentConfig) -> PipelineLike:
    """Load and verify the bundle and build the pipeline (runs in the worker thread)."""
    from agent.pipeline import Pipeline

    pipeline: PipelineLike = Pipeline.from_bundle(config.model, config.pipeline_config())
    return pipeline


def build_sources(config: AgentConfig) -> list[Source]:
    """Each configured source, built by its registered type's factory."""
    return [c.spec.build(c.id, c.options, config.state_dir) for c in config.sources]


def build_sinks(config: AgentConfig) -> list[Sink]:
    """Each configured sink, built by its registered type's factory."""
    return [c.spec.build(c.id, c.options) for c in config.sinks]


class _Service:
    """The one place the daemon talks to its supervisor (systemd notify, /readyz)."""

    def __init__(self, metrics_listen: str, allow_remote: bool = False) -> None:
        from agent.service import ServiceNotifier

        self.notifier = ServiceNotifier.from_env()
        self.is_ready = False
        self.status_server: Any = None
        if metrics_listen:
            from agent.http_status import StatusServer

            self.status_server = StatusServer(metrics_listen, ready=lambda: self.is_ready, allow_remote=allow_remote)

    def starting(self) -> None:
        if self.status_server is not None:
            self.status_server.start()
            log.info("status endpoint listening", url=self.status_server.url)

    def ready(self, status: str) -> None:
        self.is_ready = True
        self.notifier.ready(status)

    def watchdog(self) -> None:
        self.notifier.watchdog()

    def status(self, text: str) -> None:
        self.notifier.status(text)

    def reloading(self) -> None:
        self.notifier.reloading()

    def stopping(self) -> None:
        self.is_ready = False
        self.notifier.stopping()

    def close(self) -> None:
        if self.status_server is not None:
            self.status_server.stop()
        self.notifier.close()


@dataclass(frozen=True)
class _Delivered:
    """Batches whose records were all emitted and written (ack them), and batches whose events a
    sink did not take (do not ack: the client resends)."""

    done: list[Batch]
    failed: list[Batch]


def _finish(delivered: _Delivered) -> None:
    for batch in delivered.done:
        batch.finish(True)
    for batch in delivered.failed:
        batch.finish(False)


def _emitted(batch: Batch, held: dict[str, int], kept: bool) -> int:
    """Records of `batch` emitted so far: all, or all but the lines the stitcher holds."""
    return max(0, len(batch.records) - held.get(batch.source, 0)) if kept else len(batch.records)


@dataclass
class _Counts:
    batches: int = 0
    records: int = 0
    events: int = 0


class Daemon:
    """The async runtime of `logdetect agent`: sources → bounded queue → pipeline thread → sinks."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        pipeline_factory: Callable[[AgentConfig], PipelineLike] = build_pipeline,
    ) -> None:
        self.config = config
        self.pipeline_factory = pipeline_factory
        self.queue: BatchQueue | None = None
        self.sources: list[Source] = []
        self.sinks: list[Sink] = []
        self.pipeline: PipelineLike | None = None
        self.counts = _Counts()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline")
        self._stop = asyncio.Event()
        self._reload = False
        self._service = _Service(config.agent.metrics_listen, config.agent.metrics_allow_remote)
        # Batches processed but possibly still held inside the pipeline (a multi-line record
        # waits for the next line to know it is complete): acked only once released.
        self._unreleased: list[Batch] = []
        self._last_input = time.monotonic()
        state_dir = config.state_dir
        self._dead_letters = DeadLetters(state_dir / DEAD_LETTER_FILE if state_dir is not None else None)
        self._journal = DeliveryJournal(state_dir / JOURNAL_FILE) if state_dir is not None else None

    # --- worker-thread helpers ---

    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _write(self, pipeline: PipelineLike, outputs: Sequence[Event], now: float) -> bool:
        """Render the events once (the sink edge) and write them to every sink (worker thread).
        An output that cannot be rendered is dropped alone; a failing sink never stops the
        others. False when a sink failed (its batches must not be acked: the client resends)."""
        lines, ids = self._render(pipeline, outputs, now)
        ok = True
        for sink in self.sinks:
            try:
                sink.write_with_ids(lines, ids)
                sink.flush()
            except Exception as exc:
                ok = False
                count_drop(sink.id, "sink_error", len(lines))
                log.error("sink failed", sink=sink.id, error=str(exc), cause=cause_of(exc), throttle=sink.id)
        return ok

    def _resource(self, pipeline: PipelineLike) -> dict[str, str]:
        """What every event says about where it comes from: this host and the bundle serving."""
        resource = {"host.name": self.config.agent.host_name or socket.gethostname()}
        bundle_id = getattr(pipeline, "bundle_id", "")
        if bundle_id:
            resource["logdetect.bundle.id"] = str(bundle_id)
        return resource

    def _render(
        self, pipeline: PipelineLike, outputs: Sequence[Event], now: float
    ) -> tuple[list[bytes], list[str | None]]:
        """The event lines and, aligned, their identities (`events.event_id`)."""
        resource = self._resource(pipeline)
        try:
            return events.encode_all(outputs, now, pipeline.provider, resource), [events.event_id(o) for o in outputs]
        except Exception:
            pass
        lines: list[bytes] = []
        ids: list[str | None] = []
        for output in outputs:
            try:
                lines.extend(events.encode_all([output], now, pipeline.provider, resource))
                ids.append(events.event_id(output))
            except Exception as exc:
                line = getattr(getattr(output, "line", None), "line", None)
                source, raw = (line.source, line.raw) if line is not None else ("pipeline", "")
                self._rejected([rejected(source, raw, "render", exc)], now)
        return lines, ids

    def _process(self, pipeline: PipelineLike, batches: list[Batch]) -> _Delivered:
        """Process a set of batches and deliver the events (worker thread).

        The pipeline drops a record a stage raises on by itself (`take_rejected`). Should an
        exception still escape for the whole batch, the batch is run again record by record
        and only the records that fail alone are dropped: one record can only hurt itself.
        """
        records = [r for b in batches for r in b.records]
        outputs: list[Event] = [e for b in batches for e in b.events]
        now = time.time()
        try:
            outputs.extend(pipeline.process(records, now))
        except Exception as exc:
            log.error("pipeline failed on a batch; retrying record by record", records=len(records),
                      cause=cause_of(exc), exc_info=exc, throttle=cause_of(exc))
            pipeline.take_rejected()  # the records are judged again, one by one
            for record in records:
                try:
                    outputs.extend(pipeline.process([record], now))
                except Exception as one:
                    pipeline.take_rejected()  # the whole record goes to the dead letters below
                    self._rejected([rejected(record.source, record.line, "pipeline", one)], now)
        self._unreleased.extend(batches)
        return self._deliver(pipeline, outputs, now)

    def _rejected(self, items: list[Rejected], now: float) -> None:
        """Count, log (at least once per distinct cause) and keep records the pipeline dropped."""
        if not items:
            return
        for r in items:
            count_drop(r.source, f"pipeline_error_{r.stage}")
            log.error("record dropped: the pipeline failed on it", source=r.source, stage=r.stage,
                      cause=r.cause, error=r.error, throttle=r.cause)
        self._dead_letters.add(items, now)

    def _deliver(self, pipeline: PipelineLike, outputs: Sequence[Event], now: float) -> _Delivered:
        """Write `outputs` and say which processed batches are now done (worker thread).

        A batch is done when the pipeline holds none of its records: a record still held (multi-
        line stitching waits for the next line) has no event yet, and acking it would break
        "every acked record was processed" on a crash. The stitcher holds at most the last
        logical record of each source, so only the latest batch of a source can be kept back.
        For keyed batches (Forward chunks) the write is journaled (`agent.delivery`): an intent
        before, the emitted count per key after, so a resend after a crash is emitted once.
        """
        self._rejected(pipeline.take_rejected(), now)
        self.counts.events += len(outputs)
        held = pipeline.held_by_source() if pipeline.pending_records() else {}
        latest = {b.source: b for b in self._unreleased}
        keep = [b for b in self._unreleased if b.source in held and latest[b.source] is b]
        kept = {id(b) for b in keep}
        done = [b for b in self._unreleased if id(b) not in kept]
        progress = [
            (b.source, b.key, Progress(b.skip + _emitted(b, held, id(b) in kept), b.skip + len(b.records)))
            for b in self._unreleased
            if b.key is not None
        ]
        journal = self._journal if progress else None
        try:
            if journal is not None and outputs:
                journal.intent({s.id: p for s in self.sinks if (p := s.position()) is not None})
            written = self._write(pipeline, outputs, now)
            if written and journal is not None:
                journal.commit(progress)
            checkpoint = getattr(pipeline, "checkpoint", None)  # state that must be saved before acks
            if written and checkpoint is not None:
                checkpoint()
        except OSError as exc:
            log.error("delivery journal or state write failed", error=str(exc), throttle=True)
            written = False
        if not written:
            # A sink or the journal did not take the events: no ack, the client resends.
            failed, self._unreleased = self._unreleased, []
            return _Delivered([], failed)
        self._unreleased = keep
        return _Delivered(done, [])

    def _flush(self, pipeline: PipelineLike) -> _Delivered:
        """Input went idle: make the pipeline release held records, write their events."""
        now = time.time()
        try:
            outputs = pipeline.flush_pending(now)
        except Exception as exc:
            log.error("pipeline flush failed", cause=cause_of(exc), exc_info=exc, throttle=cause_of(exc))
            done, self._unreleased = self._unreleased, []  # do not wedge acks on a bug
            return _Delivered(done, [])
        return self._deliver(pipeline, outputs, now)

    def _tick(self, pipeline: PipelineLike) -> _Delivered:
        now = time.time()
        try:
            outputs = pipeline.tick(now)
        except Exception as exc:
            log.error("pipeline tick failed", cause=cause_of(exc), exc_info=exc, throttle=cause_of(exc))
            return _Delivered([], [])
        return self._deliver(pipeline, outputs, now)

    def _close_pipeline(self, pipeline: PipelineLike) -> _Delivered:
        now = time.time()
        try:
            outputs = pipeline.close(now)
        except Exception as exc:
            log.exception("pipeline close failed", error=str(exc))
            return _Delivered([], [])
        return self._deliver(pipeline, outputs, now)

    def _recover(self) -> dict[str, dict[bytes, Progress]]:
        """Before the sinks open: cut back a write a crash cut short; what was delivered."""
        if self._journal is None:
            return {}
        recovered = self._journal.recover()
        for sink in self.sinks:
            position = recovered.unfinished.get(sink.id)
            if position is not None:
                sink.recover(position)
        self._journal.start()
        return recovered.delivered

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.error("sink close failed", sink=sink.id, error=str(exc))

    # --- lifecycle ---

    def request_stop(self) -> None:
        """Ask the run loop to drain and stop (SIGTERM, SIGINT)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Ask the run loop to reload the bundle between batches (SIGHUP)."""
        self._reload = True

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        cfg = self.config.agent
        self.queue = BatchQueue(cfg.queue_records)
        try:
            await self._start(self.queue)
        except BaseException:
            await self._abort_start()
            raise
        for sig, handler in (
            (signal.SIGTERM, self.request_stop),
            (signal.SIGINT, self.request_stop),
            (signal.SIGHUP, self.request_reload),
        ):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, handler)
        self._service.ready(f"serving {len(self.sources)} source(s)")
        log.info("agent ready", sources=[s.id for s in self.sources], sinks=[s.id for s in self.sinks])
        try:
            await self._loop()
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
        return 0

    async def _start(self, queue: BatchQueue) -> None:
        """Everything before READY. A failure the user can fix (a busy port, a sink path that
        cannot be written) raises one `StartupError` line: exit code 2, no traceback."""
        cfg = self.config.agent
        try:
            self._service.starting()
        except OSError as exc:
            raise StartupError(f"metrics_listen = {cfg.metrics_listen!r}: cannot listen: {_reason(exc)}") from None
        started = time.monotonic()
        self.pipeline = await self._in_worker(self.pipeline_factory, self.config)
        log.info("model loaded", model=str(self.config.model), secs=round(time.monotonic() - started, 3))
        self.sinks = build_sinks(self.config)
        try:
            delivered = await self._in_worker(self._recover)
        except OSError as exc:
            raise StartupError(f"state_dir {self.config.state_dir}: {_reason(exc)}") from None
        for sink in self.sinks:
            try:
                await self._in_worker(sink.open)
            except OSError as exc:
                raise StartupError(f"{_describe(sink)}: cannot open: {_reason(exc)}") from None
        self.sources = build_sources(self.config)
        for source in self.sources:
            source.restore_delivered(delivered.get(source.id, {}))
        for source in self.sources:
            try:
                await source.start(queue)
            except OSError as exc:
                raise StartupError(f"{source.describe()}: cannot start: {_reason(exc)}") from None
            except zmq_error() as exc:
                raise StartupError(f"{source.describe()}: cannot start: {exc}") from None

    async def _abort_start(self) -> None:
        """Undo a start that failed half way (sources listening, the status endpoint)."""
        for source in self.sources:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(source.stop(), 2.0)
        with contextlib.suppress(Exception):
            await self._in_worker(self._close_sinks)
        self._service.close()
        self._worker.shutdown(wait=False)

    def _all_finite_done(self) -> bool:
        finite = [s for s in self.sources if not s.endless]
        return bool(finite) and len(finite) == len(self.sources) and all(s.finished.is_set() for s in finite)

    async def _loop(self) -> None:
        if self.queue is None:
            return
        cfg = self.config.agent
        next_tick = time.monotonic() + cfg.tick_interval_secs
        while not self._stop.is_set():
            wait = min(next_tick - time.monotonic(), 0.25)
            if self._unreleased:  # wake up when held records are due to be released
                wait = min(wait, self._last_input + cfg.multiline_flush_secs - time.monotonic())
            wait = max(0.0, wait)
            batches = await self.queue.get_many(cfg.batch_records, wait)
            pipeline = self.pipeline
            if batches and pipeline is not None:
                self._last_input = time.monotonic()
                await self._run_batches(pipeline, batches)
            if self._unreleased and pipeline is not None:
                await self._release(pipeline)
            if time.monotonic() >= next_tick and pipeline is not None:
                _finish(await self._in_worker(self._tick, pipeline))
                next_tick = time.monotonic() + cfg.tick_interval_secs
                self._service.status(
                    f"{self.counts.records} records, {self.counts.events} events, queue {self.queue.records}"
                )
            self._service.watchdog()
            if self._reload:
                self._reload = False
                await self._do_reload()
            if not batches and self._all_finite_done() and not len(self.queue):
                log.info("all sources finished")
                break

    async def _run_batches(self, pipeline: PipelineLike, batches: list[Batch]) -> None:
        self.counts.batches += len(batches)
        self.counts.records += sum(len(b.records) for b in batches)
        _finish(await self._in_worker(self._process, pipeline, batches))

    async def _release(self, pipeline: PipelineLike, force: bool = False) -> None:
        """Release held records once input has been idle for `multiline_flush_secs` (or when
        forced): their events are written and their batches finished (acked)."""
        idle = time.monotonic() - self._last_input >= self.config.agent.multiline_flush_secs
        if force or idle:
            _finish(await self._in_worker(self._flush, pipeline))

    def _finish_unreleased(self) -> None:
        batches, self._unreleased = self._unreleased, []
        for batch in batches:
            batch.finish(True)

    async def _do_reload(self) -> None:
        self._service.reloading()
        log.info("reloading config and model", config=str(self.config.path))
        try:
            new_config = load_config(self.config.path, self.config.registry)
            new_pipeline = await self._in_worker(self.pipeline_factory, new_config)
        except (LogdetectError, OSError) as exc:
            log.error("reload refused; the running model keeps serving", error=str(exc))
            self._service.ready("reload refused; previous model serving")
            return
        except Exception as exc:
            log.exception("reload failed; the running model keeps serving", error=str(exc))
            self._service.ready("reload failed; previous model serving")
            return
        if _components(new_config.sources) != _components(self.config.sources) or _components(
            new_config.sinks
        ) != _components(self.config.sinks):
            log.warning("sources/sinks changed in the config: restart the agent to apply those changes")
        old = self.pipeline
        if old is not None:
            _finish(await self._in_worker(self._close_pipeline, old))  # close() releases held records
            self._finish_unreleased()
        self.pipeline = new_pipeline
        self.config = _with_components(new_config, self.config)
        log.info("reloaded", model=str(new_config.model))
        self._service.ready("reloaded")

    async def _shutdown(self) -> None:
        budget = self.config.agent.shutdown_budget_secs
        deadline = time.monotonic() + budget
        self._service.stopping()
        log.info("shutting down", queued_records=self.queue.records if self.queue else 0)
        for source in self.sources:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(source.stop(), max(0.1, deadline - time.monotonic()))
        pipeline = self.pipeline
        if self.queue is not None and pipeline is not None:
            # Drain what the sources already handed over (and may be waiting to ack).
            while len(self.queue) and time.monotonic() < deadline - 0.5:
                batches = await self.queue.get_many(self.config.agent.batch_records, 0.0)
                if batches:
                    await self._run_batches(pipeline, batches)
            for batch in self.queue.drain_nowait():
                count_drop(batch.source, "shutdown", len(batch.records))
                batch.finish(False)
        if pipeline is not None:
            _finish(await self._in_worker(self._close_pipeline, pipeline))
        await self._in_worker(self._close_sinks)
        if self._journal is not None:
            self._journal.close()
        self._finish_unreleased()
        # Acks of batches processed during the drain: give them a moment to reach the clients.
        for source in self.sources:
            with contextlib.suppress(Exception):
                await source.finish(max(0.05, min(1.0, deadline - time.monotonic())))
        self._worker.shutdown(wait=False)
        self._service.close()
        log.info("stopped", records=self.counts.records, events=self.counts.events)


class StartupError(UserError):
    """The agent cannot start with this config on this host (a busy port, an unwritable path)."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _describe(sink: Sink) -> str:
    path = getattr(sink, "path", None)
    return f"{sink.type_name} sink {sink.id!r}" + (f" ({path})" if path is not None else "")


def zmq_error() -> type[Exception]:
    """pyzmq's error class when pyzmq is importable (a bind to a busy port raises it)."""
    try:
        import zmq
    except ImportError:
        return OSError
    return zmq.ZMQError


def _components(items: Sequence[ComponentConfig[Any]]) -> list[tuple[str, str, Any]]:
    return [(c.id, c.type, c.options) for c in items]


def _with_components(new: AgentConfig, running: AgentConfig) -> AgentConfig:
    """The reloaded config, keeping the running sources/sinks (those need a restart)."""
    import dataclasses

    return dataclasses.replace(new, sources=running.sources, sinks=running.sinks, agent=running.agent)


def run_daemon(config: AgentConfig) -> int:
    """Run a daemon for this config in a fresh event loop; return its exit code."""
    return asyncio.run(Daemon(config).run())
