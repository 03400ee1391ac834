"""What the `nats` source and sink share: the server list, connecting with a bounded timeout,
and the JetStream stream both of them can create (`create_stream`).

`nats-py` is an optional dependency (the `fleet` extra): it is imported only when a NATS
component starts, so an agent without it loads and fails with one clear line only when its
config names a `nats` component.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_SERVER = "nats://127.0.0.1:4222"
SERVERS_DOC = "NATS server URLs (nats://HOST:PORT); the client fails over between them"


def nats_module() -> Any:
    """The `nats` package, or a ConnectionError (an OSError: the daemon's clean start failure)
    that says how to install it."""
    try:
        import nats
    except ImportError:
        raise ConnectionError("the nats-py package is not installed: pip install 'logdetect[fleet]'") from None
    return nats


class NatsConnectionOptions:
    """Mixin of the options every NATS component has (declared in each options dataclass)."""

    servers: list[str]
    connect_timeout_secs: float
    stream: str
    subject: str
    create_stream: bool

    def connection_problems(self) -> list[str]:
        """Invalid connection options, as messages naming them."""
        out: list[str] = []
        if not self.servers or not all(s.startswith(("nats://", "tls://")) for s in self.servers):
            out.append("servers must list at least one nats://HOST:PORT (or tls://) address")
        if self.connect_timeout_secs <= 0:
            out.append("connect_timeout_secs must be > 0")
        if not self.subject or " " in self.subject:
            out.append("subject must be a NATS subject without spaces (wildcards * and > allowed)")
        if self.stream and any(c in self.stream for c in " .*>"):
            out.append("stream must be a JetStream stream name (no spaces, dots or wildcards)")
        return out


async def connect(options: NatsConnectionOptions, name: str) -> Any:
    """A connected client; a server that cannot be reached within the timeout is a ConnectionError.

    Once connected the client reconnects by itself (forever, every 2 s): a NATS restart
    pauses intake and delivery instead of ending the agent."""
    nats = nats_module()

    async def error_cb(exc: Exception) -> None:
        log.warning("nats connection error", client=name, error=str(exc) or type(exc).__name__, throttle=True)

    try:
        # With endless reconnects nats-py would retry the first connect forever: bound it here.
        return await asyncio.wait_for(
            nats.connect(
                servers=list(options.servers),
                name=name,
                connect_timeout=options.connect_timeout_secs,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=2,
                error_cb=error_cb,
            ),
            options.connect_timeout_secs,
        )
    except TimeoutError:
        raise ConnectionError(
            f"cannot connect to NATS at {', '.join(options.servers)} within {options.connect_timeout_secs:g} s"
        ) from None
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise ConnectionError(f"cannot connect to NATS at {', '.join(options.servers)}: {reason}") from None


async def ensure_stream(
    js: Any, options: NatsConnectionOptions, work_queue: bool, duplicate_window: float | None = None
) -> None:
    """Create the stream (capturing `subject`) when `create_stream` is on and it does not exist.

    A source creates it with work-queue retention (a message is deleted once one agent acked it);
    a sink with limits retention and its `duplicate_window` (seconds; None: the server's default,
    2 minutes). An existing stream is used as it is."""
    if not options.create_stream or not options.stream:
        return
    from nats.js import api
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(options.stream)
        return
    except NotFoundError:
        pass
    retention = api.RetentionPolicy.WORK_QUEUE if work_queue else api.RetentionPolicy.LIMITS
    extra = {"duplicate_window": duplicate_window} if duplicate_window is not None else {}
    try:
        await js.add_stream(name=options.stream, subjects=[options.subject], retention=retention, **extra)
    except Exception:
        await js.stream_info(options.stream)  # another agent created it first: use it; else raise
