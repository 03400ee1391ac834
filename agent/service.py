"""systemd service protocol: `sd_notify` over `$NOTIFY_SOCKET`, without a dependency.

The protocol is one datagram per message on an `AF_UNIX`/`SOCK_DGRAM` socket whose path is in
`$NOTIFY_SOCKET` (a leading `@` means the abstract namespace). When the variable is unset (not
under systemd, or `Type=simple`) every method is a cheap no-op, so the daemon calls them
unconditionally. Notification failures never stop the agent: systemd may be restarting, and
losing a STATUS line is better than losing log records.

Lifecycle the daemon follows (systemd.service(5), Debian 12 = systemd 252):
  ready()      after the bundle is loaded and every source listens
  watchdog()   from the pipeline loop (not a timer thread: a wedged pipeline must miss it)
  reloading()  on SIGHUP, then ready() once the new config/bundle serves
  stopping()   on SIGTERM, before draining
  status(text) a short rate summary now and then
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

# Never send STATUS more often than this; `systemctl status` readers do not need more.
_STATUS_MIN_INTERVAL_S = 1.0


def _socket_address(raw: str) -> str | bytes:
    """`$NOTIFY_SOCKET` value -> address for `socket.connect` (abstract names start with NUL)."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


class ServiceNotifier:
    """Sends sd_notify messages; a no-op when `$NOTIFY_SOCKET` is not set."""

    def __init__(
        self,
        address: str | None = None,
        watchdog_usec: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        # systemd's convention: ping at half the timeout so one late loop turn is not fatal.
        self.watchdog_interval_s = watchdog_usec / 2e6 if watchdog_usec > 0 else 0.0
        self._clock = clock
        self._last_watchdog = float("-inf")
        self._last_status = float("-inf")
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServiceNotifier:
        """A notifier for the systemd socket and watchdog in the environment (disabled without)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_usec = 0
        raw_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process meant to ping; a child that inherited the env must not.
        if raw_usec.isdigit() and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            watchdog_usec = int(raw_usec)
        return cls(address, watchdog_usec)

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given (running under systemd Type=notify)."""
        return self.address is not None

    @property
    def watchdog_enabled(self) -> bool:
        """Whether systemd expects watchdog pings from this process."""
        return self.enabled and self.watchdog_interval_s > 0

    def ready(self, status: str = "") -> None:
        """Tell systemd start-up is complete, with an optional status line."""
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def reloading(self) -> None:
        """Tell systemd a reload has begun (Type=notify-reload needs the monotonic time)."""
        # MONOTONIC_USEC is required by Type=notify-reload (systemd >= 253) and harmless before.
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def watchdog(self) -> None:
        """Ping the watchdog, at most every WATCHDOG_USEC/2; cheap enough to call per batch."""
        if not self.watchdog_enabled:
            return
        now = self._clock()
        if now - self._last_watchdog < self.watchdog_interval_s:
            return
        self._last_watchdog = now
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """Free-text line for `systemctl status`; rate-limited to one per second."""
        if not self.enabled:
            return
        now = self._clock()
        if now - self._last_status < _STATUS_MIN_INTERVAL_S:
            return
        self._last_status = now
        self._send(f"STATUS={text}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for more start/stop time (a large bundle loading past TimeoutStartSec)."""
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def stopping(self) -> None:
        """Tell systemd the service is shutting down."""
        self._send("STOPPING=1")

    def close(self) -> None:
        """Close the notify socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: str) -> None:
        if self.address is None:
            return
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.connect(_socket_address(self.address))
                self._sock = sock
            self._sock.sendall(message.encode())
        except OSError as exc:
            self.close()  # reconnect next time: systemd may have been re-executed
            if not self._warned:
                self._warned = True
                log.warning("sd_notify_failed", socket=self.address, error=str(exc))
