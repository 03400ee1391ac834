"""The agent's async runtime: sources → bounded queue → pipeline worker thread → sinks.

    sources (asyncio tasks / reader threads) ──Batch──► BatchQueue (bounded, in records)
        ──► main loop ──► ONE worker thread: pipeline.process(records) → typed outputs
        ──► events.encode_all (the one place events are rendered) → sink.write + flush
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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from agent import events
from agent.config import AgentConfig, ComponentConfig, load_config
from agent.errors import LogdetectError
from agent.types import Event, Output, Record
from plugins.base import Batch, BatchQueue, Sink, Source, count_drop
from plugins.registry import SINKS, SOURCES

log = structlog.get_logger(__name__)

T = TypeVar("T")


class PipelineLike(Protocol):
    """What the daemon needs of `agent.pipeline.Pipeline` (tests stand in their own)."""

    provider: str  # the ONNX Runtime provider, quoted in the events

    def process(self, records: Sequence[Record], now: float) -> Sequence[Output]: ...
    def tick(self, now: float) -> Sequence[Output]: ...
    def close(self, now: float) -> Sequence[Output]: ...
    def pending_records(self) -> int: ...
    def flush_pending(self, now: float) -> Sequence[Output]: ...


def build_pipeline(config: AgentConfig) -> PipelineLike:
    """Load and verify the bundle and build the pipeline (runs in the worker thread)."""
    from agent.pipeline import Pipeline

    pipeline: PipelineLike = Pipeline.from_bundle(config.model, config.pipeline_config())
    return pipeline


def build_sources(config: AgentConfig) -> list[Source]:
    return [SOURCES[c.type].build(c.id, c.options, config.state_dir) for c in config.sources]


def build_sinks(config: AgentConfig) -> list[Sink]:
    return [SINKS[c.type].build(c.id, c.options) for c in config.sinks]


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


@dataclass
class _Counts:
    batches: int = 0
    records: int = 0
    events: int = 0


class Daemon:
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

    # --- worker-thread helpers ---

    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _write(self, pipeline: PipelineLike, outputs: Sequence[Event], now: float) -> None:
        """Render the events once (the sink edge) and write them to every sink (worker thread).
        A failing sink never stops the others."""
        lines = events.encode_all(outputs, now, pipeline.provider)
        for sink in self.sinks:
            try:
                sink.write(lines)
                sink.flush()
            except Exception as exc:
                count_drop(sink.id, "sink_error", len(lines))
                log.error("sink failed", sink=sink.id, error=str(exc), throttle=True)

    def _process(self, pipeline: PipelineLike, batches: list[Batch]) -> int:
        records = [r for b in batches for r in b.records]
        outputs: list[Event] = [e for b in batches for e in b.events]
        now = time.time()
        try:
            outputs.extend(pipeline.process(records, now))
        except Exception as exc:
            # A bug must not wedge the agent (nor make a Forward client retry the same chunk
            # forever): count the records as dropped, log, and go on.
            for b in batches:
                count_drop(b.source, "pipeline_error", len(b.records))
            log.exception("pipeline failed on a batch", error=str(exc), records=len(records), throttle=True)
        self._write(pipeline, outputs, now)
        return len(outputs)

    def _pending(self, pipeline: PipelineLike) -> int:
        """Records the pipeline holds without an event yet (multi-line stitching)."""
        return pipeline.pending_records()

    def _flush(self, pipeline: PipelineLike) -> None:
        """Input went idle: make the pipeline release held records, write their events."""
        now = time.time()
        try:
            outputs = pipeline.flush_pending(now)
        except Exception as exc:
            log.exception("pipeline flush failed", error=str(exc), throttle=True)
            return
        self._write(pipeline, outputs, now)

    def _tick(self, pipeline: PipelineLike) -> None:
        now = time.time()
        try:
            outputs = pipeline.tick(now)
        except Exception as exc:
            log.exception("pipeline tick failed", error=str(exc), throttle=True)
            return
        self._write(pipeline, outputs, now)

    def _close_pipeline(self, pipeline: PipelineLike) -> None:
        now = time.time()
        try:
            outputs = pipeline.close(now)
        except Exception as exc:
            log.exception("pipeline close failed", error=str(exc))
            return
        self._write(pipeline, outputs, now)

    def _open_sinks(self) -> None:
        for sink in self.sinks:
            sink.open()

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.error("sink close failed", sink=sink.id, error=str(exc))

    # --- lifecycle ---

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload = True

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        cfg = self.config.agent
        self.queue = BatchQueue(cfg.queue_records)
        self._service.starting()
        started = time.monotonic()
        self.pipeline = await self._in_worker(self.pipeline_factory, self.config)
        log.info("model loaded", model=str(self.config.model), secs=round(time.monotonic() - started, 3))
        self.sinks = build_sinks(self.config)
        await self._in_worker(self._open_sinks)
        self.sources = build_sources(self.config)
        for source in self.sources:
            await source.start(self.queue)
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
                await self._in_worker(self._tick, pipeline)
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
        n_events = await self._in_worker(self._process, pipeline, batches)
        self.counts.batches += len(batches)
        self.counts.records += sum(len(b.records) for b in batches)
        self.counts.events += n_events
        self._unreleased.extend(batches)

    async def _release(self, pipeline: PipelineLike, force: bool = False) -> None:
        """Finish (ack) processed batches once the pipeline holds none of their records.

        A record still held by the pipeline has no event yet; acking it would break "every
        acked record was processed" on a crash. The stitcher holds at most the last logical
        record of each source, so every batch but the latest of its source is released at
        once; the latest ones when nothing is held any more, or when input has been idle for
        `multiline_flush_secs` and the pipeline was asked to release what it holds.
        """
        pending = await self._in_worker(self._pending, pipeline)
        idle = time.monotonic() - self._last_input >= self.config.agent.multiline_flush_secs
        if pending and (force or idle):
            await self._in_worker(self._flush, pipeline)
            pending = 0  # released (or the flush failed and was logged: do not wedge acks)
        if pending:
            latest = {b.source: b for b in self._unreleased}
            keep = [b for b in self._unreleased if latest[b.source] is b]
            done = [b for b in self._unreleased if latest[b.source] is not b]
        else:
            keep, done = [], self._unreleased
        self._unreleased = keep
        for batch in done:
            batch.finish(True)

    def _finish_unreleased(self) -> None:
        batches, self._unreleased = self._unreleased, []
        for batch in batches:
            batch.finish(True)

    async def _do_reload(self) -> None:
        self._service.reloading()
        log.info("reloading config and model", config=str(self.config.path))
        try:
            new_config = load_config(self.config.path)
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
            await self._in_worker(self._close_pipeline, old)  # close() releases held records
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
            await self._in_worker(self._close_pipeline, pipeline)
        await self._in_worker(self._close_sinks)
        self._finish_unreleased()
        # Acks of batches processed during the drain: give them a moment to reach the clients.
        for source in self.sources:
            with contextlib.suppress(Exception):
                await source.finish(max(0.05, min(1.0, deadline - time.monotonic())))
        self._worker.shutdown(wait=False)
        self._service.close()
        log.info("stopped", records=self.counts.records, events=self.counts.events)


def _components(items: Sequence[ComponentConfig]) -> list[tuple[str, str, Any]]:
    return [(c.id, c.type, c.options) for c in items]


def _with_components(new: AgentConfig, running: AgentConfig) -> AgentConfig:
    """The reloaded config, keeping the running sources/sinks (those need a restart)."""
    import dataclasses

    return dataclasses.replace(new, sources=running.sources, sinks=running.sinks, agent=running.agent)


def run_daemon(config: AgentConfig) -> int:
    return asyncio.run(Daemon(config).run())
